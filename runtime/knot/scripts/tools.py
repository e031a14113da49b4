"""`check_paths` and `dry_run`: the Python API behind `knot check` and `knot run`.

Both work without a runtime. `check_paths` only compiles (nothing runs); `dry_run` runs one
script on one synthesized event in a real sandbox worker, with the same limits as the runtime,
and captures what it would do: its output, the events it would emit (validated, not
journaled) and its directives. Nothing is delivered anywhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .._config import Config, ScriptSettings
from .._events import (
    LOCAL_ACTOR,
    Event,
    Space,
    as_custom_type,
    check_type,
    encode_payload,
    new_event_id,
    now_rfc3339,
)
from .._exceptions import EventError
from .._json import JSONObject
from .loader import ScriptLoad, ScriptProblem, load_method_script, load_script

__all__ = ["CheckReport", "DryRun", "EmittedEvent", "check_paths", "dry_run", "dry_run_async"]

_SKIP_DIRS = {"__pycache__"}
METHODS_FOLDER = "methods"  # scripts in a folder of this name are method scripts


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The result of checking scripts: one load per file, in the order found."""

    loads: tuple[ScriptLoad, ...]
    missing: tuple[str, ...] = ()  # paths given that do not exist

    @property
    def ok(self) -> bool:
        return not self.missing and all(load.ok for load in self.loads)

    @property
    def problems(self) -> tuple[ScriptProblem, ...]:
        return tuple(p for load in self.loads for p in load.problems)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for load in self.loads for w in load.warnings)

    def summary(self) -> str:
        files = len(self.loads)
        bad = sum(1 for load in self.loads if not load.ok)
        noun = "script" if files == 1 else "scripts"
        if bad:
            count = len(self.problems)
            problems = "1 problem" if count == 1 else f"{count} problems"
            return f"{bad} of {files} {noun} broke the sandbox rules ({problems})."
        if files == 1:
            return "1 script checked: it follows the sandbox rules."
        return f"{files} {noun} checked: all follow the sandbox rules."


def _script_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found: list[Path] = []
    for candidate in sorted(path.rglob("*.py")):
        relative = candidate.relative_to(path).parts[:-1]
        if any(part in _SKIP_DIRS or part.startswith(".") for part in relative):
            continue
        found.append(candidate)
    return found


def check_paths(paths: Iterable[str | Path]) -> CheckReport:
    """Check scripts (files, or folders searched for `*.py`); nothing runs.

    A script in a folder named `methods/` is a method script (no header, `knot.methods`);
    any other is a sink script.
    """
    loads: list[ScriptLoad] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            if not path.exists():
                missing.append(str(raw))
                continue
            files = _script_files(path)
        except OSError:  # a name too long for the file system, ...: load_script says why
            files = [path]
        loads.extend(
            load_method_script(file) if file.parent.name == METHODS_FOLDER else load_script(file)
            for file in files
        )
    return CheckReport(tuple(loads), tuple(missing))


@dataclass(frozen=True, slots=True)
class EmittedEvent:
    type: str
    payload: JSONObject
    id: str

    def to_dict(self) -> JSONObject:
        return {"id": self.id, "type": self.type, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a script did with one event: nothing of it was delivered or journaled."""

    path: str
    event: JSONObject
    output: tuple[str, ...] = ()
    emitted: tuple[EmittedEvent, ...] = ()
    directives: tuple[JSONObject, ...] = ()
    error: str = ""  # the script failed (an exception or a limit)
    problems: tuple[ScriptProblem, ...] = ()  # the script was refused before running
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.error and not self.problems

    def to_dict(self) -> JSONObject:
        return {
            "path": self.path,
            "event": self.event,
            "output": list(self.output),
            "emitted": [e.to_dict() for e in self.emitted],
            "directives": list(self.directives),
            "error": self.error,
            "problems": [str(p) for p in self.problems],
            "notes": list(self.notes),
        }


def _dry_event(
    event_type: str, data: JSONObject | None, space: str | None, settings_zone: str = "local"
) -> Event:
    problem = check_type(event_type)
    if problem is not None:
        raise EventError(problem, event_type=event_type)
    payload, data_json = encode_payload(data or {}, event_type=event_type)
    return Event(
        id=new_event_id(),
        type=event_type,
        data=payload,
        ts=now_rfc3339(),
        zone=settings_zone,
        actor=LOCAL_ACTOR,
        space=Space(id=f"dry-run-{space}", name=space) if space else None,
        data_json=data_json,
    )


async def dry_run_async(
    script: str | Path,
    event_type: str,
    data: JSONObject | None = None,
    *,
    space: str | None = None,
    settings: ScriptSettings | None = None,
    max_payload_bytes: int = 1024 * 1024,
) -> DryRun:
    """Run `script` once on a synthesized event in a sandbox worker; see `dry_run`."""
    from ..sandbox.pool import WorkerPool
    from ..sinks.script import ScriptSink
    from ..sinks.webhook import new_secret
    from ..sinks.webhook_http import WebhookClients

    config = Config(scripts=settings or ScriptSettings())
    load = load_script(Path(script))
    event = _dry_event(event_type, data, space)
    shown = str(script)
    if load.spec is None:
        return DryRun(shown, event.to_dict(), problems=load.problems)
    notes = list(load.warnings)
    if not any(p.matches(event.type) for p in load.spec.events):
        notes.append(
            f"The script's events ({load.spec.events_text}) do not match {event.type}: "
            "the runtime would not send it this event."
        )
    emitted: list[EmittedEvent] = []

    class DryRunHost:
        """A SinkHost of its own: one worker process, nothing journaled or delivered."""

        def __init__(self) -> None:
            self.config = config
            self.script_pool = WorkerPool(size=1, memory_mb=config.scripts.memory_mb)
            self.webhook_clients = WebhookClients(limit=4)

        async def sink_secret(self, sink: str) -> str:
            return new_secret()

        async def emit_child(self, parent: Event, event_type: str, payload: JSONObject) -> str:
            full_type = as_custom_type(event_type)
            encode_payload(payload, max_bytes=max_payload_bytes, event_type=full_type)
            event_id = new_event_id()
            emitted.append(EmittedEvent(full_type, payload, event_id))
            return event_id

        def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None:
            return None

        def record_audit(self, entry: object) -> None:
            return None

    host = DryRunHost()
    sink = ScriptSink(load.spec)
    await sink.start(host)
    try:
        results, failed_at, error = (await sink.deliver_batch([event]))[:3]
    finally:
        await sink.close()
        await host.script_pool.close()
        await host.webhook_clients.close()
    output = tuple(sink.recent)
    directives: tuple[JSONObject, ...] = ()
    if failed_at is None and results and results[0] is not None:
        directives = tuple(
            {"name": d.name, "options": dict(d.options)} for d in results[0].directives
        )
    return DryRun(
        shown,
        event.to_dict(),
        output=output,
        emitted=tuple(emitted),
        directives=directives,
        error=error if failed_at is not None else "",
        notes=tuple(notes),
    )


def dry_run(
    script: str | Path,
    event_type: str,
    data: JSONObject | None = None,
    *,
    space: str | None = None,
    settings: ScriptSettings | None = None,
) -> DryRun:
    """Run a sink script on one event without a runtime: output, emits and directives.

    The event type is taken as given (so `space.started` handlers can be tried); emitted
    types get the `custom.` prefix as they would in the runtime. Raises InvalidInput for a bad
    event type or payload; a script that breaks the rules or fails is reported in the result.
    """

    def run() -> DryRun:
        return asyncio.run(dry_run_async(script, event_type, data, space=space, settings=settings))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # Called from inside an event loop (a notebook): run on a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()
