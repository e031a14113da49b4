"""Method scripts' limits in real workers: memory_mb held by every call thread, emits capped,
and a call held up by another call's stuck C operation reported as such."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from knot import MethodFailed, Runtime

from .conftest import write_config

pytestmark = pytest.mark.anyio

HUNGRY = """\
import knot.methods
import time

@knot.methods.method(mode="concurrent")
def hog(params):
    held = []
    while True:
        held.append("x" * (1024 * 1024 - 64) + str(len(held)))

@knot.methods.method
def hog_serially(params):
    held = []
    while True:
        held.append("x" * (1024 * 1024 - 64) + str(len(held)))

@knot.methods.method(mode="concurrent")
def hello(params):
    return "hello"
"""


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def methods_project(project: Path, settings: str, source: str) -> None:
    write_config(project, settings)
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "sl.py").write_text(source, encoding="utf-8")


async def test_memory_mb_holds_for_every_call_thread_serial_and_concurrent(
    project: Path,
) -> None:
    # Each call thread used to have a 64 MB malloc arena reserved before RLIMIT_AS applied:
    # eight concurrent calls held ~545 MB at memory_mb = 64.
    methods_project(project, "[methods]\nmemory_mb = 64\nthreads = 8\ntimeout = 20\n", HUNGRY)
    async with Runtime(project) as rt:
        pid = rt.methods.worker_pid("sl")
        assert pid is not None
        baseline = peak_rss_kb(pid)
        with pytest.raises(MethodFailed) as serial:
            await rt.methods.call("sl", "hog_serially")
        assert str(serial.value) == (
            "The method sl.hog_serially ran out of memory (scripts/methods/sl.py:14; "
            "methods.memory_mb)."
        )
        calls = [rt.methods.call("sl", "hog") for _ in range(8)]
        failures = await asyncio.gather(*calls, return_exceptions=True)
        for failure in failures:
            assert isinstance(failure, MethodFailed)
            assert "The method sl.hog ran out of memory" in str(failure)
            assert "methods.memory_mb" in str(failure)
        assert rt.methods.worker_pid("sl") == pid  # a MemoryError fails the call, not the worker
        assert await rt.methods.call("sl", "hello") == "hello"
        # Everything the calls held together stayed within the limit (plus what the interpreter
        # had mapped but not touched when the limit was set).
        assert peak_rss_kb(pid) - baseline < (64 + 24) * 1024


STUCK = """\
import knot.methods

@knot.methods.method(mode="concurrent")
def stuck(params):
    return 7 ** (10 ** 8)

@knot.methods.method(mode="concurrent")
def hello(params):
    return "hello"
"""


async def test_a_call_held_up_by_a_stuck_one_is_not_blamed_for_its_timeout(
    project: Path,
) -> None:
    methods_project(project, "[methods]\ntimeout = 1\nrestart_backoff = [0.05]\n", STUCK)
    async with Runtime(project) as rt:
        pid = rt.methods.worker_pid("sl")
        with pytest.raises(MethodFailed) as stuck:
            await rt.methods.call("sl", "stuck")
        assert stuck.value.data == {"reason": "timeout", "timeout": 1.0}
        await asyncio.sleep(0.5)  # the stuck call holds the worker until its grace runs out
        with pytest.raises(MethodFailed) as held:
            await rt.methods.call("sl", "hello")
        how = "another call ran past its time and holds the worker in one long operation"
        assert str(held.value) == (
            f"The call to sl.hello could not finish: the worker of method script sl is blocked "
            f"({how}); it is being restarted."
        )
        assert held.value.code == -32603
        assert held.value.data == {"reason": "worker_stopped", "how": how}
        # The grace ran out: the worker is replaced, and calls work again.
        async with asyncio.timeout(10):
            while rt.methods.worker_pid("sl") in (None, pid):
                await asyncio.sleep(0.05)
        assert await rt.methods.call("sl", "hello") == "hello"


EMITTER = """\
import knot.methods
import knot.event

@knot.methods.method(mode="concurrent")
def flood(params):
    while True:
        knot.event.emit("flood.x", {})

@knot.methods.method(mode="concurrent")
def sly(params):
    for n in range(50):
        try:
            knot.event.emit("flood.x", {"n": n})
        except Exception as e:
            last = str(e)
    return last

@knot.methods.method(mode="concurrent")
def some(params):
    for n in range(params["n"]):
        knot.event.emit("ok.x", {"n": n})
    return params["n"]
"""


async def test_a_call_may_emit_at_most_max_emits_events(project: Path) -> None:
    methods_project(project, "[methods]\nmax_emits = 20\n", EMITTER)
    async with Runtime(project) as rt:
        with pytest.raises(MethodFailed) as flood:
            await rt.methods.call("sl", "flood")
        assert str(flood.value) == (
            "The method sl.flood tried to emit more than 20 events in one call "
            "(methods.max_emits = 20)."
        )
        assert flood.value.code == -32000
        assert flood.value.data == {"reason": "max_emits", "max_emits": 20}
        # Catching the error does not make the call a success.
        with pytest.raises(MethodFailed, match="tried to emit more than 20 events"):
            await rt.methods.call("sl", "sly")
        await rt.wait_idle()
        assert len(await rt.events("custom.flood.x")) == 40
        assert await rt.methods.call("sl", "some", {"n": 20}) == 20
        assert await rt.methods.call("sl", "some", {"n": 20}) == 20  # the limit is per call
