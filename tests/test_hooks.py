"""Listeners are observers: one that raises is logged once and stops nothing.

A listener used to be called bare inside a sink's worker task (`on_outcome`) and inside the
dispatcher (`on_event`): one that raised ended that sink's deliveries, its queue filled, and
events were dropped for it. These run a real runtime with real (recording) sinks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from knot import Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings

from .conftest import recording

pytestmark = pytest.mark.anyio


async def test_a_raising_listener_leaves_every_sink_delivering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(delivery=DeliverySettings(queue_size=10, attempts=1, backoff=(0.01,)))
    seen: list[str] = []

    def broken_outcome(event: Any, outcome: Any) -> None:
        raise RuntimeError("outcome listener bug")

    def broken_event(event: Any, sinks: tuple[str, ...]) -> None:
        raise ValueError("event listener bug")

    async with Runtime(tmp_path, config=config) as rt:
        first, second = recording("first"), recording("second")
        await rt.add_sink(first)
        await rt.add_sink(second)
        rt.on_outcome(broken_outcome)
        rt.on_event(broken_event)
        rt.on_outcome(lambda event, outcome: seen.append(outcome.sink))  # after the broken one
        with caplog.at_level(logging.ERROR):
            for n in range(100):  # ten times the queue: a stopped sink would drop most
                report = await rt.emit_and_wait("tick", {"n": n}, timeout=10)
                assert {o.status for o in report.outcomes.values()} == {DeliveryStatus.DELIVERED}
            await rt.wait_idle()
        assert [e.data["n"] for e in first.events] == list(range(100))
        assert [e.data["n"] for e in second.events] == list(range(100))
        assert seen.count("first") == seen.count("second") == 100  # later listeners still run
        failures = [r for r in caplog.records if "listener" in r.getMessage()]
        assert len(failures) == 2  # once per broken listener, not once per call
        assert {r.exc_info[1].args[0] for r in failures if r.exc_info and r.exc_info[1]} == {
            "outcome listener bug",
            "event listener bug",
        }
