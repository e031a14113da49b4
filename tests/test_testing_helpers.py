"""knot.testing's helpers used directly, without its fixtures: the FakeClock, assert_delivered
and wait_delivered, copy_project, and a runtime on the test's own loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from knot import Config, Event, InvalidInput, Runtime
from knot._config import DeliverySettings
from knot.testing import (
    FakeClock,
    RuntimeHarness,
    assert_delivered,
    copy_project,
    run_sink,
    wait_delivered,
)

from .conftest import recording


def test_an_auto_clock_returns_at_once_and_counts_the_time() -> None:
    clock = FakeClock(start=100.0)

    async def retries() -> None:
        await clock.sleep(5)
        await clock.sleep(15)

    asyncio.run(retries())
    assert clock.sleeps == [5, 15]
    assert clock.now == 120.0


def test_a_manual_clock_releases_sleeps_as_time_passes_from_another_thread() -> None:
    clock = FakeClock(auto=False)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(seconds)

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(s)) for s in (1.0, 3.0)]
        await asyncio.gather(*tasks)

    loop_thread = threading.Thread(target=asyncio.run, args=(main(),))
    loop_thread.start()
    clock.wait_for_sleepers(2)
    assert clock.pending == [1.0, 3.0]
    clock.advance(2)
    for _ in range(200):
        if woke:
            break
        threading.Event().wait(0.005)
    assert woke == [1.0]
    clock.auto = True  # lets the rest go, as if their time had passed
    loop_thread.join(5)
    assert woke == [1.0, 3.0]
    assert clock.now == 3.0
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(AssertionError, match="0 backoff sleep"):
        FakeClock(auto=False).wait_for_sleepers(1, timeout=0.05)


def test_a_cancelled_sleep_is_forgotten() -> None:
    clock = FakeClock(auto=False)

    async def main() -> None:
        task = asyncio.create_task(clock.sleep(10))
        await asyncio.sleep(0)
        assert clock.pending == [10]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.pending == []

    asyncio.run(main())


def test_assert_delivered_wants_a_recording_sink_and_a_thread_without_a_loop(
    tmp_path: Path,
) -> None:
    with RuntimeHarness(tmp_path) as rt:
        reload = rt.write_sink("noisy", "# events: *\nprint('hi')\n")
        assert reload is not None
        assert reload.ok
        with pytest.raises(InvalidInput, match="noisy is a script sink"):
            assert_delivered(rt.sink("noisy"), 1)
        rec = rt.recording_sink("rec")

        async def an_async_test() -> list[Event]:
            # The runtime runs on its own thread: blocking this loop a moment is harmless.
            rt.emit("x")
            return assert_delivered(rec, 1)

        assert [e.type for e in asyncio.run(an_async_test())] == ["custom.x"]
        with pytest.raises(InvalidInput, match="option fail_attempts must be an integer"):
            rt.recording_sink("bad", fail_attempts=-1)


@pytest.mark.anyio
async def test_wait_delivered_on_the_test_s_own_loop(tmp_path: Path) -> None:
    """A runtime on the test's loop: `await wait_delivered`; assert_delivered says to."""
    clock = FakeClock()
    config = Config(delivery=DeliverySettings(attempts=3, backoff=(60.0,)))
    async with Runtime(tmp_path, config=config, clock=clock) as rt:
        flaky = recording("flaky", fail_attempts=2)
        await rt.add_sink(flaky)
        await rt.emit("x", {"n": 1})
        (event,) = await wait_delivered(flaky, 1, timeout=5)
        assert event.data == {"n": 1}
        assert clock.sleeps == [60.0, 60.0]
        with pytest.raises(AssertionError, match="received 1 event"):
            await wait_delivered(flaky, 2, timeout=0.05)
        with pytest.raises(InvalidInput, match=r"await knot\.testing\.wait_delivered"):
            assert_delivered(flaky, 1)


def test_copy_project_copies_the_settings_and_scripts_only(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "handlers" / "sinks").mkdir(parents=True)
    (source / "handlers" / "sinks" / "a.py").write_text("# events: *\n")
    (source / "handlers" / "sinks" / "__pycache__").mkdir()
    (source / ".knot").mkdir()
    (source / ".knot" / "knot.db").write_text("")
    (source / "notes.txt").write_text("")
    (source / "knot.toml").write_text('[scripts]\ndir = "handlers"\n')
    target = copy_project(source, tmp_path / "copy")
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    assert found == ["handlers", "handlers/sinks", "handlers/sinks/a.py", "knot.toml"]
    with pytest.raises(InvalidInput, match="is not a folder"):
        copy_project(tmp_path / "missing", tmp_path / "x")


def test_run_sink_without_pytest_fixtures(tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("# events: custom.hi\nprint('hi')\n")
    assert run_sink(script, "custom.hi").output == ("hi",)
