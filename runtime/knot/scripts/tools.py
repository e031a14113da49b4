"""`check_paths` and `dry_run`: the Python API behind `knot check` and `knot run`.

Both work without a runtime. `check_paths` only compiles (nothing runs); `dry_run` runs one
script on one synthesized event in a real sandbox worker, with the same limits as the runtime,
and captures what it would do: its output, the events it would emit (validated, not
journaled), its directives, the HTTP requests it would make (checked against `http_allow`
as in the runtime, sent only with `live=True`) and the `knot.kv` keys it would change (in a
scratch copy of its namespace: the store is never written). Nothing is delivered anywhere,
and every secret's value is redacted from all of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import CONFIG_FILE, Config, ScriptSettings, load_config
from .._events import (
    LOCAL_ACTOR,
    Actor,
    Event,
    Space,
    as_custom_type,
    check_type,
    encode_payload,
    new_event_id,
    now_rfc3339,
)
from .._exceptions import EventError, StoreError
from .._json import JSONObject
from ..engine.kvstore import read_scope
from ..engine.storage import ExpiringKv, KvItem
from ..scriptlib.scratch import ScratchKv
from ..scriptlib.service import DryRunLog, RecordedRequest, ScriptLibraries, ScriptRef
from .loader import ScriptLoad, ScriptProblem, load_method_script, load_script

if TYPE_CHECKING:
    from ..sandbox.pool import WorkerPool

__all__ = [
    "CheckReport",
    "DryRun",
    "EmittedEvent",
    "check_paths",
    "dry_run",
    "dry_run_async",
    "kv_lines",
    "request_lines",
]

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
    if (path / CONFIG_FILE).is_file():
        # A project folder: the scripts its runtime loads, not its tests or tools beside them.
        loaded = load_config(path).config
        path = path / (loaded.scripts.dir if loaded is not None else ScriptSettings.dir)
        if not path.is_dir():
            return []
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
    any other is a sink script. A project folder (one holding knot.toml) stands for its
    scripts folder (`scripts.dir`).
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

    @property
    def data(self) -> JSONObject:
        """The payload, by the name an Event gives it (`event.data`)."""
        return self.payload

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
    requests: tuple[RecordedRequest, ...] = ()  # HTTP requests, in order (sent only if live)
    kv: JSONObject = field(default_factory=dict)  # keys it set (their values) or deleted (None)
    matched: bool = True  # the script's `# events:` header matches the event's type

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
            "requests": [r.to_dict() for r in self.requests],
            "kv": dict(self.kv),
            "matched": self.matched,
        }


def request_lines(request: JSONObject) -> list[str]:
    """A dry run's request as text: the request line and its outcome, then headers and body."""
    if request["error"]:
        outcome = f"refused: {request['error']}"
    elif request["sent"]:
        outcome = f"sent, answered {request['status']}"
    else:
        outcome = "not sent"
    lines = [f"{request['method']} {request['url']} ({outcome})"]
    lines += [f"    {name}: {value}" for name, value in request["headers"]]
    if request["body"]:
        lines += [f"    {line}" for line in str(request["body"]).splitlines()]
    return lines


def kv_lines(changes: JSONObject) -> list[str]:
    """A dry run's knot.kv changes as text: `key = value`, or `key (deleted)`."""
    return [
        f"{key} (deleted)" if value is None else f"{key} = {json.dumps(value)}"
        for key, value in changes.items()
    ]


def _dry_event(
    event_type: str,
    data: JSONObject | None,
    space: str | Space | None,
    *,
    actor: Actor | None = None,
    owner: str = "",
    settings_zone: str = "local",
) -> Event:
    problem = check_type(event_type)
    if problem is not None:
        raise EventError(problem, event_type=event_type)
    payload, data_json = encode_payload(data or {}, event_type=event_type)
    if isinstance(space, str):  # a name is enough to try a handler: make up the rest
        space = Space(id=f"dry-run-{space}", name=space) if space else None
    return Event(
        id=new_event_id(),
        type=event_type,
        data=payload,
        ts=now_rfc3339(),
        zone=settings_zone,
        owner=owner,
        actor=actor or LOCAL_ACTOR,
        space=space,
        data_json=data_json,
    )


async def dry_run_async(
    script: str | Path,
    event_type: str,
    data: JSONObject | None = None,
    *,
    space: str | Space | None = None,
    actor: Actor | None = None,
    owner: str = "",
    settings: ScriptSettings | None = None,
    max_payload_bytes: int = 1024 * 1024,
    config: Config | None = None,
    project: str | Path = ".",
    live: bool = False,
    pool: WorkerPool | None = None,
) -> DryRun:
    """Run `script` once on a synthesized event in a sandbox worker; see `dry_run`.

    `pool` lends the worker (knot.testing keeps one warm across runs); without it the run
    starts a pool of its own and stops it afterwards.
    """
    from ..sandbox.pool import WorkerPool
    from ..sinks.script import ScriptSink
    from ..sinks.webhook import new_secret
    from ..sinks.webhook_http import WebhookClients

    base = config or Config()
    chosen = base if settings is None else replace(base, scripts=settings)
    folder = Path(project)  # relative paths resolve against the working folder, as given
    load = load_script(Path(script))
    event = _dry_event(event_type, data, space, actor=actor, owner=owner)
    shown = str(script)
    if load.spec is None:
        return DryRun(shown, event.to_dict(), problems=load.problems)
    notes = list(load.warnings)
    matched = any(p.matches(event.type) for p in load.spec.events)
    if not matched:
        notes.append(
            f"The script's events ({load.spec.events_text}) do not match {event.type}: "
            "the runtime would not send it this event."
        )
    emitted: list[EmittedEvent] = []
    # Every line the run printed. The sink's own `recent` keeps only the last few (for its
    # status), and a dry run promises the whole output, up to scripts.max_output_bytes.
    output: list[str] = []
    ref = ScriptRef("sinks", load.spec.name, str(script))
    seed, seed_note = _seed(chosen, folder, ref.namespace)
    if seed_note:
        notes.append(seed_note)
    scratch = ScratchKv({ref.namespace: seed})

    async def on_scratch(operation: Any) -> Any:
        return operation(scratch)

    log = DryRunLog(live=live)
    libraries = ScriptLibraries(
        config=lambda: chosen,
        project=folder,
        kv=on_scratch,
        audit=lambda entry: None,
        dry_run=log,
    )

    class DryRunHost:
        """A SinkHost of its own: one worker process, nothing journaled or delivered."""

        def __init__(self) -> None:
            self.config = chosen
            self.script_libraries = libraries
            self.script_pool = pool or WorkerPool(
                size=1, memory_mb=chosen.scripts.memory_mb, redact=libraries.secrets.redact_message
            )
            self.webhook_clients = WebhookClients(limit=4)

        async def sink_secret(self, sink: str) -> str:
            return new_secret()

        async def emit_child(
            self,
            parent: Event,
            event_type: str,
            payload: JSONObject,
            *,
            sink: str = "",
            index: int | None = None,
        ) -> str:
            full_type = as_custom_type(event_type)
            encode_payload(payload, max_bytes=max_payload_bytes, event_type=full_type)
            event_id = new_event_id()
            emitted.append(EmittedEvent(full_type, payload, event_id))
            return event_id

        def delivery_trace(self, event: Event, sink: str) -> str:
            return event.trace

        def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None:
            output.extend(lines)

        def record_audit(self, entry: object) -> None:
            return None

    host = DryRunHost()
    sink = ScriptSink(load.spec)
    await sink.start(host)
    try:
        results, failed_at, error = (await sink.deliver_batch([event]))[:3]
    finally:
        await sink.close()
        if pool is None:
            await host.script_pool.close()
        await host.webhook_clients.close()
        await libraries.close()
    if log.requests and not live:
        notes.append(
            f"{len(log.requests)} HTTP request(s) checked against http_allow but not sent "
            "(--live sends them)."
        )
    directives: tuple[JSONObject, ...] = ()
    if failed_at is None and results and results[0] is not None:
        directives = tuple(
            {"name": d.name, "options": dict(d.options)} for d in results[0].directives
        )
    return DryRun(
        shown,
        event.to_dict(),
        output=tuple(output),
        emitted=tuple(emitted),
        directives=directives,
        error=error if failed_at is not None else "",
        notes=tuple(notes),
        requests=tuple(log.requests),
        kv=libraries.secrets.redactor.value(_changes(seed, scratch, ref.namespace)),
        matched=matched,
    )


def _seed(config: Config, project: Path, scope: str) -> tuple[dict[str, KvItem], str]:
    """The script's live keys in the project's store (read-only), and a note if unreadable."""
    path = Path(config.store.path)
    path = path if path.is_absolute() else project / path
    try:
        return read_scope(path, scope, now=time.time(), limit=config.scripts.kv_max_keys), ""
    except StoreError as exc:
        return {}, f"knot.kv starts empty: {exc}"


def _changes(seed: dict[str, KvItem], scratch: ExpiringKv, scope: str) -> JSONObject:
    """What the run changed in its scratch namespace: set keys and their values, deleted
    keys as None."""
    now = time.time()
    after = {key: scratch.kv_get(scope, key, now=now) for key in scratch.kv_keys(scope, now=now)}
    changes: JSONObject = {
        key: item.value
        for key, item in after.items()
        if item is not None and (key not in seed or seed[key] != item)
    }
    changes.update({key: None for key in seed if key not in after})
    return changes


def dry_run(
    script: str | Path,
    event_type: str,
    data: JSONObject | None = None,
    *,
    space: str | Space | None = None,
    actor: Actor | None = None,
    owner: str = "",
    settings: ScriptSettings | None = None,
    config: Config | None = None,
    project: str | Path = ".",
    live: bool = False,
) -> DryRun:
    """Run a sink script on one event without a runtime: output, emits, directives, HTTP
    requests and knot.kv changes.

    `config` is the project's settings (limits, `http_allow`, `[secrets]`; `settings` replaces
    its `[scripts]`), `project` the folder its relative paths start from (the store whose keys
    the scratch namespace copies, secret files). Requests are sent only when `live`. The event
    type is taken as given (so `space.started` handlers can be tried); emitted types get the
    `custom.` prefix as they would in the runtime. `space` is a name (the rest is made up) or
    a Space; `actor` and `owner` default to the local user and global. Raises InvalidInput for
    a bad event type or payload; a script that breaks the rules or fails is reported in the
    result.
    """

    def run() -> DryRun:
        return asyncio.run(
            dry_run_async(
                script,
                event_type,
                data,
                space=space,
                actor=actor,
                owner=owner,
                settings=settings,
                config=config,
                project=project,
                live=live,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # Called from inside an event loop (a notebook): run on a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()
