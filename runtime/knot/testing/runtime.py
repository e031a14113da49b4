"""An embedded runtime for tests: a temporary project, blocking calls, a fake clock, helpers.

`RuntimeHarness` is a `knot.SyncRuntime` (the runtime runs on a thread of its own, every call
blocks), so a plain `def test_...` drives it; it adds a FakeClock for delivery backoff, a
recording sink in one call, and saving scripts with the reloader's verdict. `assert_delivered`
waits for a recording sink to have received what a test expects.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from .._config import CONFIG_FILE, load_config
from .._events import Event
from .._exceptions import InvalidInput, SinkError
from .._patterns import parse_patterns
from .._sinkspec import SinkOrigin, SinkSpec
from .._sync import SyncRuntime
from ..scripts.reload import Reload
from ..scripts.save import ScriptKind, save_script
from ..sinks.base import Sink
from ..sinks.recording import RecordingSink
from .clock import FakeClock

__all__ = ["RuntimeHarness", "assert_delivered", "copy_project", "wait_delivered"]

_SKIP = shutil.ignore_patterns("__pycache__", ".knot", "*.pyc")


def copy_project(source: str | Path, target: str | Path) -> Path:
    """Copy what a runtime reads of a project (knot.toml and its scripts folder) to `target`.

    Nothing else is copied: not the store (`.knot/`), not a virtual environment or the tests
    next to it. A scripts folder given as an absolute path stays where it is.
    """
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise InvalidInput(
            f"The project {source} to test is not a folder (knot_project marker or "
            "copy_project); give the folder that holds knot.toml and scripts/."
        )
    target.mkdir(parents=True, exist_ok=True)
    if (source / CONFIG_FILE).is_file():
        shutil.copy2(source / CONFIG_FILE, target / CONFIG_FILE)
    scripts = Path(load_config(source).raise_for_errors().scripts.dir)
    if not scripts.is_absolute() and (source / scripts).is_dir():
        shutil.copytree(source / scripts, target / scripts, ignore=_SKIP, dirs_exist_ok=True)
    return target


class RuntimeHarness(SyncRuntime):
    """An embedded runtime on `project`, blocking, with delivery backoff on a FakeClock.

    `with RuntimeHarness(folder) as rt: rt.emit(...)`; the `knot_runtime` fixture makes one on
    a temporary project. Everything of SyncRuntime works (`emit`, `emit_and_wait`, `events`,
    `sinks`, `audit_entries`, `call_method`, `wait_idle`, `run(coroutine)`).
    """

    def __init__(
        self, project: str | Path, *, clock: FakeClock | None = None, **options: Any
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        super().__init__(project, clock=self.clock, **options)

    @property
    def project(self) -> Path:
        return self.runtime.project

    def start(self) -> RuntimeHarness:
        super().start()
        return self

    def __enter__(self) -> RuntimeHarness:
        return self.start()

    def recording_sink(
        self, name: str = "recorded", events: str = "*", **options: Any
    ) -> RecordingSink:
        """Add a recording sink (options: `fail_attempts`, `delay`, `limit`, `path`); it keeps
        what it receives in `.events`, for `assert_delivered`."""
        spec = SinkSpec(
            name,
            RecordingSink.type,
            parse_patterns(events),
            options=options,
            origin=SinkOrigin.BUILTIN,
        )
        problems = RecordingSink.validate(spec)
        if problems:
            raise SinkError(f"The recording sink {name!r} is not valid: " + " ".join(problems))
        sink = RecordingSink(spec)
        self.add_sink(sink)
        return sink

    def sink(self, name: str) -> Sink:
        """The running sink `name` (a project's `type = "recording"` sink is a RecordingSink,
        for `assert_delivered`); NotFound when there is none."""

        async def find() -> Sink:  # read on the loop that changes the registry
            return self.runtime.sink(name)

        return self.run(find())

    def write_sink(self, name: str, source: str, *, timeout: float = 10.0) -> Reload | None:
        """Save `scripts/sinks/NAME.py` and wait for the runtime to load it, or refuse it:
        the Reload says which (`.ok`, `.message`, `.problems`); None when unchanged."""
        return self._save("sinks", name, source, timeout)

    def write_method(self, name: str, source: str, *, timeout: float = 10.0) -> Reload | None:
        """Save `scripts/methods/NAME.py` and wait until its worker runs it (or it is refused)."""
        return self._save("methods", name, source, timeout)

    def _save(self, kind: ScriptKind, name: str, source: str, timeout: float) -> Reload | None:
        return self.run(save_script(self.runtime, kind, name, source, timeout=timeout))


def _failure(sink: RecordingSink, count: int, timeout: float) -> AssertionError:
    got = list(sink.events)
    shown = "".join(f"\n  {e.type} {e.id} {e.data}" for e in got[-10:])
    more = f" (the last {len(got[-10:])} shown)" if len(got) > 10 else ""
    hint = "" if sink.received else " (see the runtime's audit_entries() for failed deliveries)"
    return AssertionError(
        f"The sink {sink.name} received {sink.received} event(s) within {timeout} s, expected "
        f"{count}{hint}{':' if got else '.'}{shown}{more}"
    )


def _recording(sink: Sink) -> RecordingSink:
    if not isinstance(sink, RecordingSink):
        raise InvalidInput(
            f"assert_delivered counts what a recording sink received; {sink.name} is a "
            f"{sink.type} sink (add one with knot_runtime.recording_sink(name, events))."
        )
    return sink


def assert_delivered(sink: Sink, count: int, *, timeout: float = 5.0) -> list[Event]:
    """Wait until the recording `sink` has received `count` events and no more; return them.

    Fails (AssertionError, listing what did arrive) when fewer arrive within `timeout`
    seconds, or more have arrived by then. For a runtime on a thread of its own (knot_runtime,
    SyncRuntime), from sync and async tests alike; for one on the calling thread's loop
    (`async with knot.Runtime(...)`), `await wait_delivered(...)`.
    """
    sink = _recording(sink)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is sink.loop:
        # Blocking here would stop the very loop that delivers to the sink.
        raise InvalidInput(
            "assert_delivered blocks, and the sink's runtime runs on this thread's event "
            "loop; use `await knot.testing.wait_delivered(sink, count)` there."
        )
    deadline = time.monotonic() + timeout
    while sink.received < count and time.monotonic() < deadline:
        time.sleep(0.002)
    if sink.received != count:
        raise _failure(sink, count, timeout)
    return list(sink.events)


async def wait_delivered(sink: Sink, count: int, *, timeout: float = 5.0) -> list[Event]:
    """`assert_delivered` for a runtime on the test's own event loop (`knot.Runtime`)."""
    sink = _recording(sink)
    try:
        await sink.wait_for(count, timeout=timeout)
    except TimeoutError:
        raise _failure(sink, count, timeout) from None
    if sink.received != count:
        raise _failure(sink, count, timeout)
    return list(sink.events)
