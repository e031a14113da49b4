"""Progress across stops: what a sink finished is recorded, what it raised is raised once.

A stop (runtime shutdown, a sink removed) lets the attempt in flight finish and starts nothing
else; a batch records each event as the sink reports it; events a sink raises while handling
an event get ids derived from (parent, sink, emit index), so a re-run after a crash raises
nothing twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from knot import (
    DeliveryFailed,
    DeliveryResult,
    Event,
    RecordingSink,
    Runtime,
    SinkOrigin,
    SinkSpec,
    parse_patterns,
)
from knot._config import Config, DeliverySettings
from knot._events import child_event_id

from .conftest import recording

pytestmark = pytest.mark.anyio


def config(**delivery: object) -> Config:
    settings = {"backoff": (0.001, 0.002), "queue_size": 1000, **delivery}
    return Config(delivery=DeliverySettings(**settings))  # type: ignore[arg-type]


class SteppedBatches(RecordingSink):
    """A batching sink that reports each event as it goes and waits at chosen events."""

    max_batch = 16

    def __init__(self, *, fail_once: Iterable[int] = (), hold: Iterable[int] = ()) -> None:
        super().__init__(
            SinkSpec("stepped", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
        )
        self.fail_once = set(fail_once)
        self.arrived = {i: asyncio.Event() for i in hold}  # it is waiting after event i
        self.go = {i: asyncio.Event() for i in hold}

    async def deliver(self, event: Event) -> DeliveryResult | None:
        i = event.data["i"]
        if i in self.fail_once:
            self.fail_once.discard(i)
            raise DeliveryFailed(f"event {i} fails once")
        self.events.append(event)
        if i in self.go:
            self.arrived[i].set()
            await self.go[i].wait()
        return None


async def _fill(rt: Runtime, sink: RecordingSink, n: int) -> list[Event]:
    """Add the sink and emit `n` events `{"i": 0..n-1}`; the journaled events."""
    await rt.add_sink(sink)
    ids = [await rt.emit("x", {"i": i}) for i in range(n)]
    await rt.flush()
    events = [await rt.get_event(i) for i in ids]
    return [e for e in events if e is not None]


async def test_a_batch_records_each_event_as_the_sink_reports_it(project: Path) -> None:
    async with Runtime(project, config=config()) as rt:
        # Event 0 goes alone and waits, so 1..11 queue up and go as one batch.
        sink = SteppedBatches(hold=(0, 6))
        events = await _fill(rt, sink, 12)
        await sink.arrived[0].wait()
        sink.go[0].set()
        await sink.arrived[6].wait()  # in the batch 1..11: 1..5 done, 6 not finished yet
        worker = rt.delivery.workers["stepped"]
        assert worker.cursor == events[6].seq - 1, "events 1..5 of the batch are recorded"
        sink.go[6].set()
        await rt.wait_idle()
        assert worker.cursor >= events[-1].seq


async def test_the_cursor_stays_before_a_batch_event_waiting_for_its_retry(project: Path) -> None:
    async with Runtime(project, config=config(backoff=(0.5,))) as rt:
        sink = SteppedBatches(fail_once={4}, hold=(0,))
        events = await _fill(rt, sink, 10)
        await sink.arrived[0].wait()
        sink.go[0].set()
        async with asyncio.timeout(5):
            while sink.fail_once:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # event 4 failed in the batch and waits 0.5 s for its retry
        # It used to move to just before event 5 (the front of the queue), past event 4.
        assert rt.delivery.workers["stepped"].cursor == events[4].seq - 1
        await rt.wait_idle()
        assert [e.data["i"] for e in sink.events] == list(range(10))


async def test_a_stop_lets_the_attempt_in_flight_finish_and_records_it(project: Path) -> None:
    rt = Runtime(project, config=config())
    await rt.start()
    sink = recording("slow", delay=0.3)
    await rt.add_sink(sink)
    first = await rt.emit("x", {"i": 0})
    await rt.emit("x", {"i": 1})
    await asyncio.sleep(0.05)  # the first is in flight, the second queued
    await rt.stop()
    assert [e.id for e in sink.events] == [first]  # finished, not cancelled; nothing new begun
    async with Runtime(project, config=config()) as again:
        sink = recording("slow")
        await again.add_sink(sink)
        await again.wait_idle()
        assert [e.data["i"] for e in sink.events] == [1]  # only what had not run


async def test_a_stop_does_not_wait_for_a_backoff(project: Path) -> None:
    async with Runtime(project, config=config(backoff=(30.0,))) as rt:
        await rt.add_sink(recording("flaky", fail_attempts=1))
        await rt.emit("x", {})
        await asyncio.sleep(0.1)  # attempt 1 failed; the retry is 30 s away
        started = time.monotonic()
    assert time.monotonic() - started < 2.0


async def test_a_stop_gives_up_waiting_after_stop_grace(project: Path) -> None:
    async with Runtime(project, config=config(stop_grace=0.2)) as rt:
        sink = recording("stuck", delay=60)
        await rt.add_sink(sink)
        await rt.emit("x", {})
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await rt.remove_sink("stuck")
        assert time.monotonic() - started < 2.0
        await rt.flush()
        (entry,) = await rt.audit_entries(sink="stuck")
        assert "that attempt was stopped after 0.2 s (delivery.stop_grace)" in entry.message
        assert "may or may not have arrived" in entry.message


def test_child_ids_are_derived_uuid7s() -> None:
    parent = Event("01a23543-2df8-76f6-959a-7a822acaf30e", "custom.x", {}, "2026-12-02T05:00:00Z")
    first = child_event_id(parent, "relay", 0)
    assert first == child_event_id(parent, "relay", 0)
    assert len({first, child_event_id(parent, "relay", 1), child_event_id(parent, "b", 0)}) == 3
    parsed = uuid.UUID(first)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert first[:13] == parent.id[:13]  # the parent's millisecond: children sort by time
    other = parent._replace(id=str(uuid.uuid4()))  # a client's own (v4) id: the ts is used
    assert uuid.UUID(child_event_id(other, "relay", 0)).version == 7


async def test_a_repeated_emit_of_a_handling_is_journaled_once(project: Path) -> None:
    async with Runtime(project, config=config()) as rt:
        sink = recording("rec", events="custom.child")
        await rt.add_sink(sink)
        parent_id = await rt.emit("parent", {})
        await rt.flush()
        parent = await rt.get_event(parent_id)
        assert parent is not None
        ids = [
            await rt.emit_child(parent, "child", {"n": n}, sink="relay", index=0) for n in (1, 2)
        ]
        other = await rt.emit_child(parent, "child", {"n": 3}, sink="relay", index=1)
        await rt.wait_idle()
        assert ids[0] == ids[1] != other
        assert [(e.id, e.data) for e in sink.events] == [(ids[0], {"n": 1}), (other, {"n": 3})]
        assert [e.id for e in await rt.events("custom.child")] == [ids[0], other]
