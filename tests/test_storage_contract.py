"""The engine's contract with its storage, run against every backend.

Each test drives a real runtime over one backend and checks what the engine promises whatever
stores its data: order, bounds, retries and give-ups, recovery after a restart, dedup by id,
retention, and the records kept beside the journal. A new backend (the NATS JetStream one of
the cluster) joins BACKENDS and inherits the whole suite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from knot import AuditKind, Config, DeliveryStatus, Event, Runtime, SinkOrigin, SinkSpec
from knot._config import DeliverySettings, StoreSettings
from knot._exceptions import DeliveryFailed, KvError
from knot._patterns import parse_patterns
from knot.engine.schema import SCHEMA_VERSION
from knot.engine.storage import MAX_KV_INTEGER, ExpiringKv, Storage
from knot.engine.store import Store
from knot.scriptlib.scratch import ScratchKv
from knot.sinks import RecordingSink, Sink
from knot.sinks.base import DeliveryResult, Directive

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


# -- expiring keys (scripts' knot.kv): every backend, and the scratch one of dry runs -----------

KV_BACKENDS = [*BACKENDS, "scratch"]
SCOPE = "script:sinks/counter"


@asynccontextmanager
async def expiring(name: str, project: Path, url: str = "") -> AsyncIterator[ExpiringKv]:
    """One ExpiringKv of `name`: a runtime's store (written on its writer thread, as the
    runtime does), or the in-memory scratch of dry runs."""
    if name == "scratch":
        yield ScratchKv()
        return
    store = StoreSettings(path=str(project / ".knot" / "knot.db"))
    if url:
        store = replace(store, url=url, stream_prefix=unique_prefix())
    async with Runtime(project, config=Config(store=store), parts=[_NoParts()]) as rt:
        yield rt.store


class _NoParts:
    async def start(self, host: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


@dataclass
class KvBackend:
    name: str
    url: str = ""  # a real nats-server's, for "nats"


@pytest.fixture(params=KV_BACKENDS)
def kv_backend(request: pytest.FixtureRequest) -> KvBackend:
    name = str(request.param)
    if name == "nats":
        server: NatsServer = request.getfixturevalue("nats_server")
        return KvBackend(name, server.url)
    return KvBackend(name)


async def test_values_round_trip_as_json_and_keys_list_sorted(
    kv_backend: KvBackend, tmp_path: Path
) -> None:
    now = time.time()
    async with expiring(kv_backend.name, tmp_path, kv_backend.url) as kv:
        values: dict[str, Any] = {
            "s": "text ü",
            "i": 3,
            "f": 2.5,
            "b": False,
            "n": None,
            "l": [1, {"a": [None]}],
            "d": {"x": {"y": "z"}},
        }
        for key, value in values.items():
            kv.kv_set(SCOPE, key, value, expires=None, now=now, max_keys=100)
        for key, value in values.items():
            item = kv.kv_get(SCOPE, key, now=now)
            assert item is not None
            assert item.value == value
            assert item.expires is None
        assert kv.kv_get(SCOPE, "missing", now=now) is None
        assert kv.kv_keys(SCOPE, now=now) == sorted(values)
        assert kv.kv_keys("script:sinks/other", now=now) == []  # scopes are apart
        kv.kv_set("script:sinks/other", "s", "theirs", expires=None, now=now, max_keys=100)
        item = kv.kv_get(SCOPE, "s", now=now)
        assert item is not None
        assert item.value == "text ü"


async def test_keys_expire_for_every_read_and_give_their_room_back(
    kv_backend: KvBackend, tmp_path: Path
) -> None:
    now = time.time()
    async with expiring(kv_backend.name, tmp_path, kv_backend.url) as kv:
        kv.kv_set(SCOPE, "short", 1, expires=now + 10, now=now, max_keys=2)
        kv.kv_set(SCOPE, "long", 2, expires=None, now=now, max_keys=2)
        item = kv.kv_get(SCOPE, "short", now=now)
        assert item is not None
        assert item.expires == pytest.approx(now + 10)
        # At the quota of 2 while "short" is live; once it expired, a new key fits.
        with pytest.raises(KvError) as full:
            kv.kv_set(SCOPE, "third", 3, expires=None, now=now + 1, max_keys=2)
        assert full.value.reason == "max_keys"
        later = now + 11
        assert kv.kv_get(SCOPE, "short", now=later) is None
        assert kv.kv_keys(SCOPE, now=later) == ["long"]
        kv.kv_set(SCOPE, "third", 3, expires=None, now=later, max_keys=2)
        assert kv.kv_keys(SCOPE, now=later) == ["long", "third"]
        # An expired key written again starts afresh, without the old expiry.
        kv.kv_set(SCOPE, "short", "new", expires=None, now=later + 1, max_keys=3)
        item = kv.kv_get(SCOPE, "short", now=later + 100)
        assert item is not None
        assert item.value == "new"
        assert item.expires is None


async def test_quotas_count_live_keys_and_replacing_one_is_free(
    kv_backend: KvBackend, tmp_path: Path
) -> None:
    now = time.time()
    async with expiring(kv_backend.name, tmp_path, kv_backend.url) as kv:
        for n in range(3):
            kv.kv_set(SCOPE, f"k{n}", n, expires=None, now=now, max_keys=3)
        kv.kv_set(SCOPE, "k0", "replaced", expires=None, now=now, max_keys=3)
        with pytest.raises(KvError) as full:
            kv.kv_set(SCOPE, "k3", 3, expires=None, now=now, max_keys=3)
        assert (full.value.reason, full.value.key) == ("max_keys", "k3")
        with pytest.raises(KvError):
            kv.kv_incr(SCOPE, "k4", 1, now=now, max_keys=3)
        assert kv.kv_keys(SCOPE, now=now) == ["k0", "k1", "k2"]  # nothing half-done
        assert kv.kv_delete(SCOPE, "k1") is True
        assert kv.kv_delete(SCOPE, "k1") is False
        kv.kv_set(SCOPE, "k3", 3, expires=None, now=now, max_keys=3)
        assert kv.kv_clear(SCOPE) == 3
        assert kv.kv_keys(SCOPE, now=now) == []
        kv.kv_set(SCOPE, "again", 1, expires=None, now=now, max_keys=1)


async def test_incr_is_atomic_typed_and_keeps_the_expiry(
    kv_backend: KvBackend, tmp_path: Path
) -> None:
    now = time.time()
    async with expiring(kv_backend.name, tmp_path, kv_backend.url) as kv:
        assert kv.kv_incr(SCOPE, "n", 1, now=now, max_keys=10) == 1
        assert kv.kv_incr(SCOPE, "n", 5, now=now, max_keys=10) == 6
        assert kv.kv_incr(SCOPE, "n", -10, now=now, max_keys=10) == -4
        kv.kv_set(SCOPE, "t", 10, expires=now + 60, now=now, max_keys=10)
        assert kv.kv_incr(SCOPE, "t", 1, now=now, max_keys=10) == 11
        item = kv.kv_get(SCOPE, "t", now=now)
        assert item is not None
        assert item.expires == pytest.approx(now + 60)
        for value in ("7", 7.5, True, None, [1]):
            kv.kv_set(SCOPE, "x", value, expires=None, now=now, max_keys=10)
            with pytest.raises(KvError) as typed:
                kv.kv_incr(SCOPE, "x", 1, now=now, max_keys=10)
            assert typed.value.reason == "not_integer"
        kv.kv_set(SCOPE, "big", MAX_KV_INTEGER, expires=None, now=now, max_keys=10)
        with pytest.raises(KvError) as overflow:
            kv.kv_incr(SCOPE, "big", 1, now=now, max_keys=10)
        assert overflow.value.reason == "overflow"
        item = kv.kv_get(SCOPE, "big", now=now)
        assert item is not None
        assert item.value == MAX_KV_INTEGER


async def test_expiring_keys_survive_a_restart_and_prune_forgets_expired_ones(
    backend: Backend,
) -> None:
    now = time.time()
    async with backend.runtime() as rt:
        await rt.journal.call(
            lambda s: s.kv_set(SCOPE, "kept", {"v": 1}, expires=None, now=now, max_keys=10)
        )
        await rt.journal.call(
            lambda s: s.kv_set(SCOPE, "soon", 1, expires=now + 0.05, now=now, max_keys=10)
        )
        await rt.journal.call(lambda s: s.kv_incr(SCOPE, "count", 41, now=now, max_keys=10))
    await asyncio.sleep(0.1)
    async with backend.runtime() as rt:
        later = time.time()
        assert rt.store.kv_keys(SCOPE, now=later) == ["count", "kept"]
        assert (
            await rt.journal.call(lambda s: s.kv_incr(SCOPE, "count", 1, now=later, max_keys=10))
            == 42
        )
        await rt.journal.call(lambda s: s.prune(keep_events=100, keep_audit=100, active_sinks=[]))
        # What prune forgot is gone from the table, not only hidden: a quota of 2 has room.
        await rt.journal.call(lambda s: s.kv_delete(SCOPE, "kept"))
        await rt.journal.call(
            lambda s: s.kv_set(SCOPE, "x", 1, expires=None, now=later, max_keys=2)
        )
        assert rt.kv_all(SCOPE) == {"count": 42, "x": 1}


def test_a_schema_1_store_is_migrated_and_its_records_never_expire(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE kv (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
        "PRIMARY KEY (scope, key)) WITHOUT ROWID;"
        "INSERT INTO kv VALUES ('users', 'ada', '{\"admin\": true}');"
        "PRAGMA user_version = 1;"
    )
    conn.close()
    store = Store(path)
    try:
        assert store.kv_all("users") == {"ada": {"admin": True}}
        now = time.time()
        store.kv_set(SCOPE, "k", 1, expires=now + 60, now=now, max_keys=5)
        item = store.kv_get(SCOPE, "k", now=now)
        assert item is not None
        assert item.value == 1
        assert item.expires == pytest.approx(now + 60)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
    reopened = Store(path)  # a second open changes nothing
    try:
        assert reopened.kv_all("users") == {"ada": {"admin": True}}
    finally:
        reopened.close()


class Raiser(Sink):
    """Raises one `custom.child` for each event that is not a child itself."""

    type = "recording"

    def __init__(self, name: str) -> None:
        super().__init__(spec(name))

    async def deliver(self, event: Event) -> DeliveryResult | None:
        assert self.host is not None
        if event.depth < 2:
            await self.host.emit_child(event, "child", {"depth": event.depth + 1})
        return None


async def test_every_attempt_is_kept_per_event_across_a_restart(backend: Backend) -> None:
    flaky = RecordingSink(
        SinkSpec("flaky", "recording", parse_patterns("*"), options={"fail_attempts": 1})
    )
    async with backend.runtime() as rt:
        await rt.add_sink(flaky)
        await rt.add_sink(recording("steady"))
        ids = [await rt.emit("tick", {"n": n}) for n in range(30)]
        await rt.wait_idle()
        rt.delivery.flush_attempts()
        await rt.flush()
    async with backend.runtime() as rt:
        storage: Storage = rt.store
        events = [await rt.get_event(i) for i in ids]
        seqs = [e.seq for e in events if e is not None]
        attempts = storage.attempts(seqs)
        one = storage.attempts(seqs[7:8])
    assert len(seqs) == 30
    for seq in seqs:
        mine = [(a.sink, a.attempt, a.outcome) for a in attempts if a.seq == seq]
        assert sorted(mine) == [
            ("flaky", 1, "failed"),
            ("flaky", 2, "delivered"),
            ("steady", 1, "delivered"),
        ]
    assert {a.seq for a in one} == {seqs[7]}
    failed = next(a for a in one if a.outcome == "failed")
    assert failed.error
    assert all(a.started > 0 and a.duration >= 0 for a in attempts)


async def test_a_chain_is_found_from_its_root(backend: Backend) -> None:
    async with backend.runtime() as rt:
        await rt.add_sink(Raiser("raiser"))
        roots = [await rt.emit("tick", {}) for _ in range(3)]
        await rt.wait_idle()
        await rt.flush()
        storage: Storage = rt.store
        chain = storage.chain(roots[1])
        alone = storage.chain(chain[-1].id)  # an event that is no root has no chain of its own
    assert [(e.depth, e.root_id) for e in chain] == [(1, roots[1]), (2, roots[1])]
    assert chain[1].parent == chain[0].id
    assert alone == []


async def test_retention_forgets_attempts_and_chains_with_their_events(backend: Backend) -> None:
    async with backend.runtime() as rt:
        await rt.add_sink(Raiser("raiser"))
        roots = [await rt.emit("tick", {}) for _ in range(10)]
        await rt.wait_idle()
        rt.delivery.flush_attempts()
        await rt.flush()
        storage: Storage = rt.store
        everything = [e.seq for e in await rt.events(limit=100)]
        before = len(storage.attempts(everything))
        pruned = await rt.journal.call(
            lambda s: s.prune(keep_events=0, keep_audit=100, active_sinks=["raiser"])
        )
        after = storage.attempts(everything)
        chain = storage.chain(roots[0])
    assert pruned == 30
    assert before == 30
    assert after == []
    assert chain == []


async def test_events_are_found_by_what_a_person_filters_on(backend: Backend) -> None:
    from knot._patterns import Pattern
    from knot.engine.eventquery import EventQuery

    failing = GatedSink("flaky", fail=True)
    async with backend.runtime(backoff=(0.0,)) as rt:
        ids = [
            await rt.emit("a.tick", {"n": n, "word": "Grüße" if n % 3 == 0 else "x"})
            for n in range(30)
        ]
        ids += [await rt.emit("b.other", {"n": n}, owner="alice") for n in range(5)]
        await rt.add_sink(failing)
        failed = await rt.emit("c.fail", {})
        await rt.wait_idle()
        await rt.flush()
        storage: Storage = rt.store
        newest = storage.find_events(EventQuery(limit=3))
        assert [e.id for e in newest] == [failed, ids[-1], ids[-2]]  # newest first
        ticks = storage.find_events(EventQuery(pattern=Pattern.parse("custom.a.*"), limit=100))
        assert [e.id for e in ticks] == ids[:30][::-1]
        page = storage.find_events(EventQuery(pattern=Pattern.parse("custom.a.*"), limit=10))
        after = storage.find_events(
            EventQuery(pattern=Pattern.parse("custom.a.*"), limit=10, before=page[-1].seq)
        )
        assert [e.id for e in page + after] == ids[:30][::-1][:20]  # pages do not overlap
        folded = storage.find_events(EventQuery(text="GRÜSSE", limit=100))
        assert sorted(e.data["n"] for e in folded) == list(range(0, 30, 3))
        mine = storage.find_events(EventQuery(owner="alice", limit=100))
        assert [e.id for e in mine] == ids[30:][::-1]
        gave_up = storage.find_events(EventQuery(outcome="failed", sink="flaky", limit=10))
        assert [e.id for e in gave_up] == [failed]
        assert storage.find_events(EventQuery(outcome="dropped", limit=10)) == []


class Versioned(Sink):
    """A sink with a script version: silent for `quiet` events, says things for `loud` ones,
    fails for `bad` ones (what a script sink's attempts carry for `knot replay`)."""

    type = "recording"

    def __init__(self, name: str, version: str) -> None:
        super().__init__(spec(name))
        self.version = version

    async def deliver(self, event: Event) -> DeliveryResult | None:
        kind = event.data.get("kind")
        if kind == "bad":
            raise DeliveryFailed("it broke", output=("before the break",))
        if kind == "loud":
            return DeliveryResult(
                directives=(Directive("greet", {"to": "ada"}),),
                output=("hello",),
                value='{"ok":true}',
            )
        return None


async def test_a_sinks_attempts_say_what_ran_and_what_it_did(backend: Backend) -> None:
    async with backend.runtime(attempts=1) as rt:
        await rt.add_sink(Versioned("script", "v1"))
        await rt.add_sink(recording("other"))
        first = [await rt.emit("t", {"kind": k}) for k in ("quiet", "loud", "bad", "quiet")]
        await rt.wait_idle()
        await rt.add_sink(Versioned("script", "v2"))  # the script was changed and reloaded
        second = [await rt.emit("t", {"kind": "quiet"}) for _ in range(3)]
        await rt.wait_idle()
        rt.delivery.flush_attempts()
        await rt.flush()
    async with backend.runtime() as rt:  # read back after a restart
        storage: Storage = rt.store
        seqs = {e.id: e.seq for e in await rt.events(limit=100)}
        head = max(seqs.values())
        everything = storage.sink_attempts("script", 0, head)
        window = storage.sink_attempts("script", seqs[first[1]], seqs[second[0]])
        nothing = storage.sink_attempts("script", head, head + 10)
        backwards = storage.sink_attempts("script", head, 0)
    by_seq = {a.seq: a for a in everything}
    assert sorted(by_seq) == sorted(seqs[i] for i in first + second)
    assert all(a.sink == "script" for a in everything)
    assert [by_seq[seqs[i]].version for i in first + second] == ["v1"] * 4 + ["v2"] * 3
    quiet, loud, bad = (by_seq[seqs[i]] for i in first[:3])
    assert (quiet.outcome, quiet.output, quiet.directives, quiet.result) == (
        "delivered",
        (),
        (),
        "",
    )
    assert loud.output == ("hello",)
    assert loud.directives == (("greet", '{"to":"ada"}'),)
    assert loud.result == '{"ok":true}'
    assert (bad.outcome, bad.error, bad.output) == ("failed", "it broke", ("before the break",))
    assert {a.seq for a in window} == {seqs[first[2]], seqs[first[3]], seqs[second[0]]}
    assert nothing == []
    assert backwards == []


async def test_retention_forgets_a_sinks_attempts_with_their_events(backend: Backend) -> None:
    async with backend.runtime(attempts=1) as rt:
        await rt.add_sink(Versioned("script", "v1"))
        for kind in ("quiet", "loud") * 5:
            await rt.emit("t", {"kind": kind})
        await rt.wait_idle()
        rt.delivery.flush_attempts()
        await rt.flush()
        storage: Storage = rt.store
        before = storage.sink_attempts("script", 0, 100)
        await rt.journal.call(
            lambda s: s.prune(keep_events=4, keep_audit=100, active_sinks=["script"])
        )
        after = storage.sink_attempts("script", 0, 100)
    assert len(before) == 10
    assert [a.seq for a in after] == [7, 8, 9, 10]
