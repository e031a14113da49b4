"""`run_sink`: one sink script on one event, in the production sandbox, as test data.

It is `knot run` as a function (`knot.scripts.dry_run`): a real sandbox worker with the
runtime's rules and limits runs the script once; what it printed, the events it would emit
(validated, never journaled) and its directives come back as a `DryRun`. Nothing is delivered.
`SinkRunner` does the same with workers kept between runs, which is what the `run_sink`
fixture uses: like a sink in the runtime, each script keeps its worker process from one run to
the next (each run still starts from a fresh namespace), so only its first run waits for one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .._config import ScriptSettings, load_config
from .._events import Actor, Space
from .._exceptions import ScriptFailed
from .._json import JSONObject
from ..sandbox.pool import WorkerPool
from ..scripts.loader import load_script
from ..scripts.tools import DryRun, dry_run, dry_run_async

__all__ = ["SinkRun", "SinkRunFailed", "SinkRunner", "run_sink"]

T = TypeVar("T")

SinkRun = DryRun  # what a run gave: .output, .emitted (.type, .data), .directives, .error
SPARE_HOLDER = "knot-testing"  # not a sink name: keeps a spare worker warm between runs


class SinkRunFailed(ScriptFailed):
    """The script was refused, failed, or was handed an event the runtime would never send it.

    `run` is the whole result (output up to the failure included).
    """

    def __init__(self, reason: str, *, run: DryRun) -> None:
        super().__init__(reason, script=run.path)
        self.run = run


def _settings(project: str | Path | None, settings: ScriptSettings | None) -> ScriptSettings:
    if settings is not None:
        return settings
    if project is None:
        return ScriptSettings()
    return load_config(project).raise_for_errors().scripts


def check_run(run: DryRun, event_type: str) -> DryRun:
    """The run, or SinkRunFailed saying what went wrong (the `check=True` of `run_sink`)."""
    if run.problems:
        raise SinkRunFailed(
            "The sandbox refused the script:\n" + "\n".join(str(p) for p in run.problems), run=run
        )
    if not run.matched:
        spec = load_script(Path(run.path)).spec
        hint = ""
        if spec is not None and any(p.matches(f"custom.{event_type}") for p in spec.events):
            hint = (
                " Events raised from outside the runtime are custom ones: did you mean "
                f"custom.{event_type}?"
            )
        raise SinkRunFailed(
            f"{run.notes[-1]}{hint} Pass check=False to run it on this event anyway.", run=run
        )
    if run.error:
        shown = "".join(f"\n  {line}" for line in run.output)
        printed = f"\nIt printed:{shown}" if run.output else ""
        raise SinkRunFailed(f"{run.error}{printed}", run=run)
    return run


def run_sink(
    script: str | Path,
    event_type: str,
    data: JSONObject | None = None,
    *,
    space: str | Space | None = None,
    actor: Actor | None = None,
    owner: str = "",
    project: str | Path | None = None,
    settings: ScriptSettings | None = None,
    check: bool = True,
) -> DryRun:
    """Run a sink script once on an event of `event_type` (taken as given) with `data`.

    `space` is a name (the rest is made up) or a `knot.Space`; `actor` and `owner` default
    to the local user and a global event. Limits are the defaults, `project`'s knot.toml
    `[scripts]` or `settings`. With `check` (the default) a refused or failing script, or an
    event its `# events:` header does not match, raises SinkRunFailed; with `check=False` the
    result says so (`.ok`, `.error`, `.problems`, `.notes`).
    """
    run = dry_run(
        script,
        event_type,
        data,
        space=space,
        actor=actor,
        owner=owner,
        settings=_settings(project, settings),
    )
    return check_run(run, event_type) if check else run


class SinkRunner:
    """`run_sink` with workers kept: a loop thread and a sandbox pool that live between runs.

    A script keeps its worker from run to run, as a sink does in the runtime (measured: ~10 ms
    a run, against ~150 ms when each run starts an interpreter), and a spare is kept started
    for the next script. Scripts are told apart by file name, as sinks are by name.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: WorkerPool | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="knot-testing-sandbox", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread

                async def make_pool() -> WorkerPool:
                    defaults = ScriptSettings()
                    pool = WorkerPool(size=2, memory_mb=defaults.memory_mb)
                    pool.hold(SPARE_HOLDER)
                    return pool

                self._pool = asyncio.run_coroutine_threadsafe(make_pool(), loop).result()
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._start()).result()

    def __call__(
        self,
        script: str | Path,
        event_type: str,
        data: JSONObject | None = None,
        *,
        space: str | Space | None = None,
        actor: Actor | None = None,
        owner: str = "",
        project: str | Path | None = None,
        settings: ScriptSettings | None = None,
        check: bool = True,
    ) -> DryRun:
        """The same as `knot.testing.run_sink`."""
        chosen = _settings(project, settings)
        self._start()
        pool = self._pool
        assert pool is not None
        name = Path(script).stem

        async def run_once() -> DryRun:
            if name not in self._held:
                # One hold of our own outlives the run's: the script's worker stays bound.
                pool.hold(name)
                self._held.add(name)
            return await dry_run_async(
                script,
                event_type,
                data,
                space=space,
                actor=actor,
                owner=owner,
                settings=chosen,
                pool=pool,
            )

        run = self._run(run_once())
        return check_run(run, event_type) if check else run

    def close(self) -> None:
        loop, thread, pool = self._loop, self._thread, self._pool
        self._loop = self._thread = self._pool = None
        if loop is None:
            return
        if pool is not None:
            asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
