"""Method scripts' lifecycle: reload with calls in flight, broken saves, crashes, timeouts, delete.

Real files saved into a running runtime's `scripts/methods/`, real watchfiles, real workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from knot import AuditKind, DeliveryStatus, MethodFailed, NotFound, Runtime
from knot.scripts.reload import Reloader, ReloadStatus

from .conftest import write_config
from .reloading import Reloads, atomic_save

pytestmark = pytest.mark.anyio

SETTINGS = """
[delivery]
attempts = 1

[methods]
timeout = 5
restart_backoff = [0.05, 0.2]
"""


def version(tag: str, *, events: str = "custom.app.*") -> str:
    return (
        "import knot.methods\n"
        "import time\n"
        "calls = []\n"
        f"@knot.methods.method(events={events!r})\n"
        "def handle(params):\n"
        "    calls.append(params)\n"
        f"    return '{tag}'\n"
        "@knot.methods.method(mode='concurrent')\n"
        "def slow(params):\n"
        "    time.sleep(params['seconds'])\n"
        f"    return '{tag}'\n"
        "@knot.methods.method\n"
        "def count(params):\n"
        "    return len(calls)\n"
        "@knot.methods.method(mode='concurrent')\n"
        "def busy(params):\n"
        "    end = time.monotonic() + params['seconds']\n"
        "    while time.monotonic() < end:\n"
        "        pass\n"
        f"    return '{tag}'\n"
    )


@dataclass
class Live:
    rt: Runtime
    reloads: Reloads
    path: Path

    async def save(self, text: str) -> None:
        atomic_save(self.path, text)
        await self.reloads.named("counter", timeout=10)


@pytest.fixture
async def live(project: Path) -> AsyncIterator[Live]:
    write_config(project, SETTINGS)
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    path = folder / "counter.py"
    path.write_text(version("v1"), encoding="utf-8")
    async with Runtime(project) as rt:
        (reloader,) = [p for p in rt.parts if isinstance(p, Reloader)]
        yield Live(rt, Reloads(reloader), path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie no one reaped yet counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_new_version_takes_new_calls_while_the_old_finishes_its_own(live: Live) -> None:
    rt = live.rt
    old_pid = rt.methods.worker_pid("counter")
    assert old_pid is not None
    in_flight = asyncio.create_task(rt.methods.call("counter", "slow", {"seconds": 1.0}))
    await asyncio.sleep(0.2)
    atomic_save(live.path, version("v2"))
    reload = await live.reloads.named("counter", timeout=10)
    assert reload.status is ReloadStatus.RELOADED
    assert reload.message == (
        "reloaded method script counter (scripts/methods/counter.py): handle, slow, count, busy"
    )
    new_pid = rt.methods.worker_pid("counter")
    assert new_pid not in (None, old_pid)
    assert await rt.methods.call("counter", "slow", {"seconds": 0}) == "v2"
    assert not in_flight.done()  # still running on the old worker
    assert pid_alive(old_pid)
    assert await in_flight == "v1"
    await wait_for(lambda: not pid_alive(old_pid))  # stopped once its call was done


async def test_a_broken_save_keeps_the_old_worker_and_says_where(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    rt = live.rt
    await rt.methods.call("counter", "handle", {"n": 1})
    pid = rt.methods.worker_pid("counter")
    caplog.set_level(logging.ERROR, logger="knot.methods")
    atomic_save(live.path, version("v2") + "import os\n")
    reload = await live.reloads.named("counter", timeout=10)
    assert reload.status is ReloadStatus.KEPT
    problem = "scripts/methods/counter.py:21:8: import of 'os' is not allowed"
    assert reload.problems == (problem,)
    assert rt.methods.worker_pid("counter") == pid
    assert await rt.methods.call("counter", "count") == 1  # old code, old state
    (status,) = rt.methods.statuses()
    assert status["problem"] == problem
    assert status["state"] == "running"
    assert "kept the last good version of method script counter" in caplog.text
    await rt.flush()
    (entry,) = [e for e in await rt.audit_entries() if e.kind is AuditKind.METHOD_REJECTED]
    assert problem in entry.message
    # A top level that raises is broken too, with its line.
    atomic_save(live.path, version("v3") + "\n\nraise ValueError('nope')\n")
    reload = await live.reloads.named("counter", timeout=10)
    assert reload.problems == (
        "scripts/methods/counter.py:23:1: loading the script raised ValueError: nope",
    )
    # Fixed: the new version runs and the problem is gone.
    await live.save(version("v4"))
    assert await rt.methods.call("counter", "slow", {"seconds": 0}) == "v4"
    assert rt.methods.statuses()[0]["problem"] == ""


async def test_a_script_broken_from_the_start_is_listed_with_its_problem(project: Path) -> None:
    write_config(project, SETTINGS)
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "bad.py").write_text("import knot.methods\nx = [\n", encoding="utf-8")
    async with Runtime(project) as rt:
        (status,) = rt.methods.statuses()
        assert status["state"] == "broken"
        assert status["pid"] is None
        assert status["problem"].startswith("scripts/methods/bad.py:2:5: syntax error:")
        assert rt.methods.all() == []


async def test_a_top_level_that_never_ends_is_stopped_and_refused(project: Path) -> None:
    write_config(project, SETTINGS.replace("timeout = 5", "timeout = 0.5"))
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "stuck.py").write_text("import knot.methods\nwhile True:\n    pass\n")
    async with Runtime(project) as rt:
        (status,) = rt.methods.statuses()
        assert status["state"] == "broken"
        assert status["problem"] == (
            "scripts/methods/stuck.py:1:1: its top level ran longer than 0.5 s (methods.timeout)"
        )


async def test_a_crashed_worker_fails_its_calls_and_restarts_with_an_audit_entry(
    live: Live,
) -> None:
    rt = live.rt
    await rt.methods.call("counter", "handle", {})
    assert await rt.methods.call("counter", "count") == 1
    pid = rt.methods.worker_pid("counter")
    assert pid is not None
    in_flight = asyncio.create_task(rt.methods.call("counter", "busy", {"seconds": 4}))
    await asyncio.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(MethodFailed) as failed:
        await in_flight
    assert failed.value.code == -32603
    assert str(failed.value) == (
        "The worker of method script counter stopped during the call to counter.busy (it was "
        "killed by SIGKILL); it is being restarted."
    )
    assert failed.value.data == {"reason": "worker_stopped", "how": "it was killed by SIGKILL"}
    # A call made while it restarts waits for the new worker, which has fresh state.
    assert await rt.methods.call("counter", "count") == 0
    new_pid = rt.methods.worker_pid("counter")
    assert new_pid not in (None, pid)
    (status,) = rt.methods.statuses()
    assert status["restarts"] == 1
    await rt.flush()
    (entry,) = [e for e in await rt.audit_entries() if e.kind is AuditKind.WORKER_RESTARTED]
    assert entry.sink == "counter"
    assert entry.message == (
        "The worker of method script counter (scripts/methods/counter.py) stopped: it was "
        "killed by SIGKILL. Calls in flight on it failed; a new worker starts in 0.05 s, with "
        "fresh module state."
    )


async def test_repeated_crashes_back_off(live: Live) -> None:
    rt = live.rt
    for expected_delay in ("0.05", "0.2", "0.2"):
        pid = rt.methods.worker_pid("counter")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda pid=pid: rt.methods.worker_pid("counter") not in (None, pid))
        await rt.flush()
        entries = [e for e in await rt.audit_entries() if e.kind is AuditKind.WORKER_RESTARTED]
        assert f"starts in {expected_delay} s" in entries[-1].message
    assert rt.methods.statuses()[0]["restarts"] == 3


async def test_a_call_past_the_timeout_fails_and_the_worker_keeps_its_state(
    project: Path,
) -> None:
    write_config(project, SETTINGS.replace("timeout = 5", "timeout = 0.3"))
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "counter.py").write_text(version("v1"), encoding="utf-8")
    async with Runtime(project) as rt:
        await rt.methods.call("counter", "handle", {})
        pid = rt.methods.worker_pid("counter")
        with pytest.raises(MethodFailed) as failed:
            await rt.methods.call("counter", "busy", {"seconds": 3})
        assert failed.value.code == -32603
        assert str(failed.value) == (
            "The method counter.busy ran longer than 0.3 s (methods.timeout) and was stopped."
        )
        assert await rt.methods.call("counter", "count") == 1
        assert rt.methods.worker_pid("counter") == pid
        # Sleeping past the limit is refused at once, naming the setting.
        with pytest.raises(MethodFailed, match=r"time limit \(methods.timeout\)"):
            await rt.methods.call("counter", "slow", {"seconds": 1})


async def test_deleting_the_script_stops_its_worker_and_its_subscriptions(live: Live) -> None:
    rt = live.rt
    pid = rt.methods.worker_pid("counter")
    assert pid is not None
    assert "counter.handle" in rt.registry
    report = await rt.emit_and_wait("app.x", {}, timeout=10)
    assert report.outcomes["counter.handle"].status is DeliveryStatus.DELIVERED
    in_flight = asyncio.create_task(rt.methods.call("counter", "busy", {"seconds": 4}))
    await asyncio.sleep(0.2)
    live.path.unlink()
    reload = await live.reloads.named("counter", timeout=10)
    assert reload.status is ReloadStatus.REMOVED
    with pytest.raises(MethodFailed) as stopped:
        await in_flight
    assert str(stopped.value) == (
        "The worker of method script counter stopped during the call to counter.busy (the "
        "runtime stopped it)."
    )
    assert "counter.handle" not in rt.registry
    assert rt.methods.scripts() == []
    await wait_for(lambda: not pid_alive(pid))
    with pytest.raises(NotFound):
        await rt.methods.call_name("counter.count")
    report = await rt.emit_and_wait("app.y", {}, timeout=2)
    assert report.outcomes == {}


async def test_a_reload_that_changes_subscriptions_re_routes(live: Live) -> None:
    rt = live.rt
    await live.save(version("v2", events="custom.other.*"))
    assert rt.registry.spec("counter.handle").events_text == "custom.other.*"
    assert "counter.handle" in (await rt.emit_and_wait("other.x", {}, timeout=10)).outcomes
    assert "counter.handle" not in (await rt.emit_and_wait("app.x", {}, timeout=10)).outcomes
    await live.save(version("v3", events=""))  # no events: no longer a sink
    assert "counter.handle" not in rt.registry
