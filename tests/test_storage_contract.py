"""The engine's contract with its storage, run against every backend.

Each test drives a real runtime over one backend and checks what the engine promises whatever
stores its data: order, bounds, retries and give-ups, recovery after a restart, dedup by id,
retention, and the records kept beside the journal. A new backend (the NATS JetStream one of
the cluster) joins BACKENDS and inherits the whole suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from knot import AuditKind, Config, DeliveryStatus, Event, Runtime, SinkOrigin, SinkSpec
from knot._config import DeliverySettings, StoreSettings
from knot._patterns import parse_patterns
from knot.engine.storage import Storage
from knot.sinks import RecordingSink, Sink
from knot.sinks.base import DeliveryResult

from .natshelpers import NatsServer, unique_prefix

pytestmark = pytest.mark.anyio

BACKENDS = ["sqlite", "nats"]


@dataclass
class Backend:
    """Runtimes over one backend, sharing one project (so a restart finds the same data)."""

    name: str
    project: Path
    config: Config

    @asynccontextmanager
    async def runtime(self, **delivery: Any) -> AsyncIterator[Runtime]:
        config = replace(self.config, delivery=replace(self.config.delivery, **delivery))
        async with Runtime(self.project, config=config) as rt:
            yield rt


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name = str(request.param)
    store = StoreSettings(path=str(tmp_path / ".knot" / "knot.db"))
    if name == "nats":  # a real nats-server; streams of this test's own
        server: NatsServer = request.getfixturevalue("nats_server")
        store = replace(store, url=server.url, stream_prefix=unique_prefix())
    delivery = DeliverySettings(attempts=3, backoff=(0.01, 0.01), queue_size=100)
    return Backend(name, tmp_path, Config(store=store, delivery=delivery))


def spec(name: str) -> SinkSpec:
    return SinkSpec(name, "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)


def recording(name: str) -> RecordingSink:
    return RecordingSink(spec(name))


class GatedSink(Sink):
    """Delivers only once its gate opens (or fails every attempt, when told to)."""

    type = "recording"

    def __init__(self, name: str, *, fail: bool = False) -> None:
        super().__init__(spec(name))
        self.gate = asyncio.Event()
        self.fail = fail
        self.attempts = 0
        self.delivered: list[str] = []

    async def deliver(self, event: Event) -> DeliveryResult | None:
        self.attempts += 1
        if self.fail:
            raise RuntimeError("the receiver is down")
        await self.gate.wait()
        self.delivered.append(event.id)
        return None


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_the_journal_keeps_order_and_reads_back_what_it_took(backend: Backend) -> None:
    async with backend.runtime() as rt:
        ids = [await rt.emit("tick", {"n": n}) for n in range(200)]
        await rt.flush()
        events = await rt.events(limit=1000)
        assert [e.id for e in events] == ids
        assert [e.data["n"] for e in events] == list(range(200))
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))
        found = await rt.get_event(ids[7])
        assert found is not None
        assert (found.type, found.data) == ("custom.tick", {"n": 7})
        assert await rt.get_event("01a00000-0000-7000-8000-000000000000") is None
    async with backend.runtime() as rt:  # and after a restart, new events follow the old
        later = await rt.emit("tick", {"n": 200})
        await rt.flush()
        events = await rt.events(limit=1000)
        assert [e.id for e in events] == [*ids, later]
        assert events[-1].seq > events[-2].seq


async def test_each_sink_gets_its_events_once_in_order_across_restarts(backend: Backend) -> None:
    first = recording("rec")
    async with backend.runtime() as rt:
        await rt.add_sink(first)
        for n in range(100):
            await rt.emit("tick", {"n": n})
        await rt.wait_idle()
    second = recording("rec")
    async with backend.runtime() as rt:
        await rt.add_sink(second)  # resumes right after its stored cursor
        for n in range(100, 150):
            await rt.emit("tick", {"n": n})
        await rt.wait_idle()
    assert [e.data["n"] for e in first.events] == list(range(100))
    assert [e.data["n"] for e in second.events] == list(range(100, 150))


async def test_undelivered_events_resume_after_a_restart(backend: Backend) -> None:
    stuck = GatedSink("slow")
    async with backend.runtime() as rt:
        await rt.add_sink(stuck)
        ids = [await rt.emit("tick", {"n": n}) for n in range(10)]
        await until(lambda: stuck.attempts == 1)  # the first is in flight, the rest queued
    assert stuck.delivered == []
    again = recording("slow")
    async with backend.runtime() as rt:
        await rt.add_sink(again)
        await rt.wait_idle()
    assert [e.id for e in again.events] == ids


async def test_a_full_queue_drops_audits_and_does_not_come_back(backend: Backend) -> None:
    gated = GatedSink("narrow")
    async with backend.runtime(queue_size=5) as rt:
        await rt.add_sink(gated)
        ids = [await rt.emit("tick", {"n": n}) for n in range(20)]
        await until(lambda: gated.attempts == 1)
        gated.gate.set()
        await rt.wait_idle()
        dropped = [a for a in await rt.audit_entries(limit=100) if a.kind is AuditKind.DROPPED]
    delivered = set(gated.delivered)
    assert 5 <= len(delivered) < 20
    assert {a.event_id for a in dropped} == set(ids) - delivered
    later = recording("narrow")
    async with backend.runtime(queue_size=5) as rt:
        await rt.add_sink(later)
        await rt.wait_idle()
    assert list(later.events) == []  # the dropped ones were recorded as skipped, not pending


async def test_attempts_then_give_up_once_and_for_good(backend: Backend) -> None:
    failing = GatedSink("flaky", fail=True)
    async with backend.runtime() as rt:
        await rt.add_sink(failing)
        report = await rt.emit_and_wait("tick", {}, timeout=10)
        outcome = report.outcomes["flaky"]
        assert outcome.status is DeliveryStatus.FAILED
        assert outcome.attempts == failing.attempts == 3
        await rt.flush()
        given_up = [a for a in await rt.audit_entries(limit=10) if a.sink == "flaky"]
        assert [a.event_id for a in given_up] == [report.id]
    retry = recording("flaky")
    async with backend.runtime() as rt:
        await rt.add_sink(retry)
        await rt.wait_idle()
    assert list(retry.events) == []


async def test_an_id_is_journaled_and_delivered_once(backend: Backend) -> None:
    sink = recording("rec")
    event_id = "01a23527-63d7-74d8-91c7-313aeb0aa681"
    async with backend.runtime() as rt:
        await rt.add_sink(sink)
        assert await rt.emit("tick", {"n": 1}, id=event_id) == event_id
        await rt.emit("tick", {"n": 2}, id=event_id)
        await rt.wait_idle()
    async with backend.runtime() as rt:
        await rt.add_sink(recording("rec"))
        report = await rt.emit_and_wait("tick", {"n": 3}, id=event_id)
        assert report.duplicate
        assert [e.data for e in await rt.events(limit=10)] == [{"n": 1}]
    assert [e.data for e in sink.events] == [{"n": 1}]


async def test_retention_never_forgets_what_a_sink_still_needs(backend: Backend) -> None:
    stuck = GatedSink("late")
    quick = recording("quick")
    async with backend.runtime() as rt:
        await rt.add_sink(quick)
        for n in range(30):
            await rt.emit("tick", {"n": n})
        await rt.wait_idle()
        await rt.add_sink(stuck)
        ids = [await rt.emit("tick", {"n": n}) for n in range(30, 40)]
        await until(lambda: stuck.attempts == 1)
        pruned = await rt.journal.call(
            lambda s: s.prune(keep_events=0, keep_audit=100, active_sinks=["quick", "late"])
        )
        assert pruned == 30  # every sink is past those
        kept = [e.id for e in await rt.events(limit=100)]
        assert kept == ids
        stuck.gate.set()
        await rt.wait_idle()
    assert stuck.delivered == ids


async def test_records_and_the_audit_log_survive_a_restart(backend: Backend) -> None:
    async with backend.runtime() as rt:
        storage: Storage = rt.store
        await rt.kv_put("notes", "a", {"x": 1})
        await rt.kv_put("notes", "b", {"x": 2})
        await rt.kv_put("notes", "a", {"x": 3})
        await rt.kv_delete("notes", "b")
        await rt.kv_put("other", "a", {"y": True})
        failing = GatedSink("gone", fail=True)
        await rt.add_sink(failing)
        await rt.emit_and_wait("tick", {}, timeout=10)
        await rt.flush()
        counts = storage.counts()
    async with backend.runtime() as rt:
        assert rt.kv_all("notes") == {"a": {"x": 3}}
        assert rt.kv_all("other") == {"a": {"y": True}}
        entries = await rt.audit_entries(limit=10, sink="gone")
        assert [a.kind for a in entries] == [AuditKind.DELIVERY_FAILED]
        assert rt.store.counts() == counts
