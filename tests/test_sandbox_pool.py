"""The shared sandbox pool grows when every worker is held by a stuck script, then shrinks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from knot import Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings, ScriptSettings
from knot.scripts import load_script

pytestmark = pytest.mark.anyio

TIMEOUT = 4.0


async def add_script(rt: Runtime, folder: Path, name: str, events: str, body: str) -> None:
    load = load_script(write(folder, name, events, body))
    assert load.spec is not None, load.problems
    await rt.add_sink(load.spec)


def write(folder: Path, name: str, events: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"# events: {events}\n{body}", encoding="utf-8")
    return path


async def test_stuck_scripts_on_every_worker_do_not_hold_up_other_sinks(tmp_path: Path) -> None:
    config = Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.01,)),
        scripts=ScriptSettings(timeout=TIMEOUT, memory_mb=64, workers=2),
    )
    async with Runtime(tmp_path, config=config) as rt:
        folder = tmp_path / "s"
        for name in ("spin_a", "spin_b", "spin_c"):
            await add_script(rt, folder, name, "custom.spin", "while True:\n    pass\n")
        await add_script(rt, folder, "quick", "custom.other", "print('quick')\n")
        pool = rt.script_pool
        assert pool is not None
        finished: list[tuple[str, str]] = []
        rt.on_outcome(lambda event, outcome: finished.append((outcome.sink, outcome.error)))
        # Both workers go to two spinners; the third spinner and the unrelated sink wait, and
        # both get a worker the pool adds (the second added once the first has started).
        await rt.emit("spin", {})
        other = await rt.emit_and_wait("other", {}, timeout=30)
        assert other.outcomes["quick"].status is DeliveryStatus.DELIVERED
        # It ran while every spinner was still spinning (they run until scripts.timeout).
        assert finished == [("quick", "")]
        # One per spinner; the unrelated sink's extra stops once it is done (on a loaded
        # machine the third spinner's worker may still be starting when "quick" finished).
        async with asyncio.timeout(3):
            while pool.workers != 3:
                await asyncio.sleep(0.01)
        assert len(finished) == 1  # and every spinner still spinning
        async with asyncio.timeout(30):
            while len(finished) < 4:
                await asyncio.sleep(0.05)
        assert sorted(sink for sink, _ in finished[1:]) == ["spin_a", "spin_b", "spin_c"]
        for _, error in finished[1:]:
            assert "ran longer than 4.0 s (scripts.timeout)" in error
        # Back to its size once the extra workers are done.
        await rt.wait_idle()
        async with asyncio.timeout(10):
            while pool.workers > 2:
                await asyncio.sleep(0.05)
        assert len(pool.pids()) <= 2
