"""The runtime's periodic chores run by themselves: retention prunes the journal while it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from knot import Config, Runtime
from knot._config import StoreSettings
from knot.engine import housekeeping

from .conftest import recording

pytestmark = pytest.mark.anyio


async def test_retention_prunes_delivered_events_while_running(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "INTERVAL", 0.01)
    monkeypatch.setattr(housekeeping, "PRUNE_EVERY", 2)
    config = Config(store=StoreSettings(retention_events=50, retention_audit=50))
    async with Runtime(project, config=config) as rt:
        sink = recording("all")
        await rt.add_sink(sink)
        for i in range(200):
            await rt.emit("x", {"i": i})
        await rt.wait_idle()
        for _ in range(500):  # up to 5 s
            kept = await rt.events(limit=1000)
            if len(kept) <= 50:
                break
            await asyncio.sleep(0.01)
    assert len(sink.events) == 200
    assert [e.data["i"] for e in kept] == list(range(150, 200))
