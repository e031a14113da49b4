"""The delivery engine, in process, against a real SQLite file."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from knot import (
    AuditKind,
    Config,
    DeliveryFailed,
    DeliveryStatus,
    Event,
    RecordingSink,
    Runtime,
    SinkError,
    SinkOrigin,
    SinkSpec,
    parse_patterns,
)
from knot._config import DeliverySettings
from knot.sinks import BatchResult, DeliveryResult, ResultCallback

from .conftest import recording

pytestmark = pytest.mark.anyio


def fast_config(**delivery: object) -> Config:
    settings = {"backoff": (0.001, 0.002), **delivery}
    return Config(delivery=DeliverySettings(**settings))  # type: ignore[arg-type]


class JitterSink(RecordingSink):
    """Takes a random, short time per event, so sinks interleave and any reordering shows."""

    async def deliver(self, event: Event) -> None:
        await asyncio.sleep(random.random() * 0.0005)
        await super().deliver(event)


async def test_per_sink_order_over_thousands_of_events(project: Path) -> None:
    async with Runtime(project, config=fast_config(queue_size=10_000)) as rt:
        sinks = [
            JitterSink(
                SinkSpec(f"s{i}", "recording", parse_patterns(pat), origin=SinkOrigin.BUILTIN)
            )
            for i, pat in enumerate(["*", "custom.a.*", "custom.b.*", "custom.a.x"])
        ]
        for sink in sinks:
            await rt.add_sink(sink)

        async def producer(kind: str, count: int) -> None:
            for i in range(count):
                await rt.emit(f"{kind}", {"i": i})

        await asyncio.gather(producer("a.x", 1500), producer("b.y", 1500), producer("a.z", 1000))
        await rt.wait_idle()
        seqs = {s.name: [e.seq for e in s.events] for s in sinks}
        for name, got in seqs.items():
            assert got == sorted(got), f"{name} received events out of order"
        assert len(seqs["s0"]) == 4000
        assert len(seqs["s1"]) == 2500
        assert len(seqs["s2"]) == 1500
        assert len(seqs["s3"]) == 1500
        # Per-producer order inside one sink follows emission order.
        ax = [e.data["i"] for e in sinks[3].events]
        assert ax == list(range(1500))


async def test_queue_full_drops_new_events_and_audits(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="knot.events")
    async with Runtime(project, config=fast_config(queue_size=3)) as rt:
        gate = asyncio.Event()
        heard: dict[str, tuple[str, ...]] = {}
        rt.on_event(lambda event, names: heard.__setitem__(event.id, names))

        class Blocked(RecordingSink):
            async def deliver(self, event: Event) -> None:
                await gate.wait()
                await super().deliver(event)

        slow = Blocked(
            SinkSpec("slow", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
        )
        fast = recording("fast")
        await rt.add_sink(slow)
        await rt.add_sink(fast)
        ids = []
        for i in range(8):
            ids.append(await rt.emit("burst", {"i": i}))
            await asyncio.sleep(0.01)  # let the slow sink take its first event
        gate.set()
        await rt.wait_idle()
        # One in flight plus a queue of three; the other four were dropped for `slow` only.
        assert [e.data["i"] for e in slow.events] == [0, 1, 2, 3]
        assert len(fast.events) == 8
        await rt.flush()
        audit = await rt.audit_entries(sink="slow")
        assert [a.kind for a in audit] == [AuditKind.DROPPED] * 4
        assert audit[0].event_id == ids[4]
        assert "queue full, dropped event" in audit[0].message
        assert rt.sinks()[1].dropped == 4
    # Listeners and the routed-event log line name only the sinks that will get the event.
    assert [heard[i] for i in ids] == [("slow", "fast")] * 4 + [("fast",)] * 4
    lines = [r.getMessage() for r in caplog.records if r.name == "knot.events"]
    assert f"custom.burst {ids[7]} → fast (dropped for slow: queue full)" in lines
    assert f"custom.burst {ids[0]} → slow, fast" in lines


async def test_retries_then_succeeds(project: Path) -> None:
    async with Runtime(project, config=fast_config(attempts=3)) as rt:
        flaky = recording("flaky", fail_attempts=2)
        await rt.add_sink(flaky)
        report = await rt.emit_and_wait("x", {}, timeout=5)
        outcome = report.outcomes["flaky"]
        assert outcome.status is DeliveryStatus.DELIVERED
        assert outcome.attempts == 3
        assert len(flaky.events) == 1
        assert rt.sinks()[0].retries == 2


async def test_gives_up_after_the_last_attempt_and_audits(project: Path) -> None:
    async with Runtime(project, config=fast_config(attempts=2)) as rt:
        broken = recording("broken", fail_attempts=5)
        ok = recording("ok")
        await rt.add_sink(broken)
        await rt.add_sink(ok)
        report = await rt.emit_and_wait("x", {"n": 1}, timeout=5)
        assert report.outcomes["broken"].status is DeliveryStatus.FAILED
        assert report.outcomes["broken"].attempts == 2
        assert "failed attempt 2 on purpose" in report.outcomes["broken"].error
        assert report.outcomes["ok"].status is DeliveryStatus.DELIVERED
        await rt.flush()
        (entry,) = await rt.audit_entries(sink="broken")
        assert entry.kind is AuditKind.DELIVERY_FAILED
        assert entry.kind.value == "Event Sink Delivery Failed"
        assert "after 2 attempts" in entry.message
        # A later event is still delivered to the same sink (give-up is per event).
        broken.fail_attempts = 0
        await rt.emit_and_wait("x", {"n": 2}, timeout=5)
        assert [e.data["n"] for e in broken.events] == [2]


async def test_backoff_is_waited_between_attempts(project: Path) -> None:
    async with Runtime(project, config=fast_config(attempts=3, backoff=(0.05, 0.1))) as rt:
        await rt.add_sink(recording("flaky", fail_attempts=2))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await rt.emit_and_wait("x", {}, timeout=5)
        assert loop.time() - started >= 0.15


async def test_sink_exceptions_are_failed_attempts_not_crashes(project: Path) -> None:
    class Buggy(RecordingSink):
        async def deliver(self, event: Event) -> None:
            raise ZeroDivisionError("oops")

    async with Runtime(project, config=fast_config(attempts=1)) as rt:
        await rt.add_sink(
            Buggy(SinkSpec("buggy", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        )
        report = await rt.emit_and_wait("x", {}, timeout=5)
        assert "ZeroDivisionError: oops" in report.outcomes["buggy"].error


async def test_owner_routing(project: Path) -> None:
    async with Runtime(project) as rt:
        alice = RecordingSink(
            SinkSpec(
                "alice_sink",
                "recording",
                parse_patterns("*"),
                owner="alice",
                origin=SinkOrigin.BUILTIN,
            )
        )
        everyone = recording("everyone")
        await rt.add_sink(alice)
        await rt.add_sink(everyone)
        await rt.emit("x", {"who": "anon"})
        await rt.emit("x", {"who": "alice"}, owner="alice")
        await rt.emit("x", {"who": "bob"}, owner="bob")
        await rt.wait_idle()
        assert [e.data["who"] for e in alice.events] == ["alice"]
        assert [e.data["who"] for e in everyone.events] == ["anon", "alice", "bob"]


async def test_rids_limit_delivery(project: Path) -> None:
    async with Runtime(project) as rt:
        a, b = recording("aa"), recording("bb")
        await rt.add_sink(a)
        await rt.add_sink(b)
        report = await rt.emit_and_wait("x", {}, rids=["bb"], timeout=5)
        assert set(report.outcomes) == {"bb"}
        assert not a.events


async def test_inactive_sinks_receive_nothing(project: Path) -> None:
    async with Runtime(project) as rt:
        spec = {"name": "off", "type": "recording", "events": "*", "active": False}
        await rt.add_sink(spec)
        report = await rt.emit_and_wait("x", {}, timeout=1)
        assert report.outcomes == {}


async def test_emit_chain_depth_limit(project: Path) -> None:
    class Echo(RecordingSink):
        async def deliver(self, event: Event) -> None:
            await super().deliver(event)
            assert self.host is not None
            await self.host.emit_child(event, "loop", {"d": event.depth + 1})

    async with Runtime(project, config=fast_config(max_depth=3)) as rt:
        echo = Echo(
            SinkSpec("echo", "recording", parse_patterns("custom.loop"), origin=SinkOrigin.BUILTIN)
        )
        await rt.add_sink(echo)
        await rt.emit("loop", {"d": 0})
        for _ in range(50):
            await rt.wait_idle()
            await asyncio.sleep(0.01)
        assert [e.depth for e in echo.events] == [0, 1, 2, 3]
        await rt.flush()
        audit = await rt.audit_entries()
        assert [a.kind for a in audit] == [AuditKind.DEPTH_EXCEEDED]
        assert "max_depth = 3" in audit[0].message


async def test_removed_sink_gives_up_its_queue_with_audit(project: Path) -> None:
    async with Runtime(project) as rt:
        gate = asyncio.Event()

        class Blocked(RecordingSink):
            async def deliver(self, event: Event) -> None:
                await gate.wait()

        await rt.add_sink(
            Blocked(SinkSpec("gone", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        )
        for i in range(3):
            await rt.emit("x", {"i": i})
        await asyncio.sleep(0.05)
        await rt.remove_sink("gone", reason="test")
        await rt.flush()
        audit = await rt.audit_entries()
        assert [a.kind for a in audit] == [AuditKind.SINK_REMOVED] * 3
        assert rt.sinks() == []


async def test_replacing_a_sink_keeps_its_queue_in_order(project: Path) -> None:
    async with Runtime(project) as rt:
        gate = asyncio.Event()
        delivered: list[tuple[str, int]] = []

        class Versioned(RecordingSink):
            async def deliver(self, event: Event) -> None:
                await gate.wait()
                delivered.append((self.spec.description, event.data["i"]))

        def make(version: str) -> Versioned:
            return Versioned(
                SinkSpec(
                    "v",
                    "recording",
                    parse_patterns("*"),
                    description=version,
                    origin=SinkOrigin.BUILTIN,
                )
            )

        await rt.add_sink(make("v1"))
        for i in range(5):
            await rt.emit("x", {"i": i})
        await asyncio.sleep(0.02)
        await rt.add_sink(make("v2"))
        gate.set()
        await rt.wait_idle()
        assert [i for _, i in delivered] == [0, 1, 2, 3, 4]
        assert delivered[0][0] == "v1"  # the one in flight finishes on the old version
        assert {v for v, _ in delivered[1:]} == {"v2"}


async def test_undelivered_events_resume_after_restart_in_order(project: Path) -> None:
    stuck = asyncio.Event()

    class Never(RecordingSink):
        async def deliver(self, event: Event) -> None:
            await stuck.wait()

    spec = SinkSpec("durable", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
    async with Runtime(project, config=fast_config(queue_size=1000)) as rt:
        await rt.add_sink(Never(spec))
        ids = [await rt.emit("x", {"i": i}) for i in range(20)]
    async with Runtime(project, config=fast_config(queue_size=1000)) as rt:
        again = RecordingSink(spec)
        await rt.add_sink(again)
        await again.wait_for(20, timeout=10)
        assert [e.id for e in again.events] == ids
    # A third start delivers nothing twice: the cursor moved past all of them.
    async with Runtime(project, config=fast_config(queue_size=1000)) as rt:
        third = RecordingSink(spec)
        await rt.add_sink(third)
        await rt.wait_idle()
        await asyncio.sleep(0.05)
        assert list(third.events) == []


async def test_new_sinks_start_at_the_head(project: Path) -> None:
    async with Runtime(project) as rt:
        await rt.emit("before", {})
        late = recording("late")
        await rt.add_sink(late)
        await rt.emit("after", {})
        await rt.wait_idle()
        assert [e.type for e in late.events] == ["custom.after"]


async def test_dropped_and_failed_events_are_not_redelivered_after_restart(project: Path) -> None:
    spec = SinkSpec(
        "flaky",
        "recording",
        parse_patterns("*"),
        options={"fail_attempts": 9},
        origin=SinkOrigin.BUILTIN,
    )
    async with Runtime(project, config=fast_config(attempts=1)) as rt:
        await rt.add_sink(RecordingSink(spec))
        await rt.emit_and_wait("x", {}, timeout=5)
    async with Runtime(project, config=fast_config(attempts=1)) as rt:
        again = RecordingSink(
            SinkSpec("flaky", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
        )
        await rt.add_sink(again)
        await rt.wait_idle()
        await asyncio.sleep(0.05)
        assert list(again.events) == []


async def test_sink_that_raises_delivery_failed_reports_its_reason(project: Path) -> None:
    class Refuses(RecordingSink):
        async def deliver(self, event: Event) -> None:
            raise DeliveryFailed("receiver said no", sink=self.name, event=event.id)

    async with Runtime(project, config=fast_config(attempts=1)) as rt:
        await rt.add_sink(
            Refuses(SinkSpec("no", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        )
        report = await rt.emit_and_wait("x", {}, timeout=5)
        assert report.outcomes["no"].error == "receiver said no"
        assert rt.sinks()[0].last_error == "receiver said no"


class BatchingSink(RecordingSink):
    """Takes several events per call, like a sink behind a worker process."""

    max_batch = 8

    def __init__(self, spec: SinkSpec, *, fail_once: set[int]) -> None:
        super().__init__(spec)
        self.fail_once = fail_once
        self.calls: list[list[int]] = []
        self.executed: list[int] = []

    async def deliver(self, event: Event) -> None:
        self.calls.append([event.data["i"]])
        await self._take(event)

    async def deliver_batch(
        self, events: Sequence[Event], on_result: ResultCallback | None = None
    ) -> BatchResult:
        self.calls.append([e.data["i"] for e in events])
        results: list[DeliveryResult | None] = []
        for index, event in enumerate(events):
            try:
                await self._take(event)
            except DeliveryFailed as exc:
                return BatchResult(results, index, exc.reason)
            results.append(None)
        return BatchResult(results)

    async def _take(self, event: Event) -> None:
        i = event.data["i"]
        self.executed.append(i)
        if i in self.fail_once:
            self.fail_once.discard(i)
            raise DeliveryFailed(f"event {i} fails once")
        self.events.append(event)
        self.received += 1


async def test_batched_sinks_keep_order_and_retry_the_failed_event_first(project: Path) -> None:
    async with Runtime(project, config=fast_config(queue_size=1000)) as rt:
        gate = asyncio.Event()
        sink = BatchingSink(
            SinkSpec("batched", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN),
            fail_once={5, 13},
        )
        original_one, original_batch = sink.deliver, sink.deliver_batch

        async def gated_one(event: Event) -> None:
            await gate.wait()
            await original_one(event)

        async def gated_batch(
            events: Sequence[Event], on_result: ResultCallback | None = None
        ) -> BatchResult:
            await gate.wait()
            return await original_batch(events, on_result)

        sink.deliver = gated_one  # type: ignore[method-assign]
        sink.deliver_batch = gated_batch  # type: ignore[method-assign]
        await rt.add_sink(sink)
        for i in range(20):
            await rt.emit("x", {"i": i})
        # The first event is taken alone and waits at the gate while the other 19 queue up,
        # so the batches that follow are deterministic: [1..8] fails at 5, 5 alone, [6..13]...
        gate.set()
        await rt.wait_idle()
        assert [e.data["i"] for e in sink.events] == list(range(20))
        # Batches of up to 8; a failure is retried alone before anything after it runs, and
        # the events after it in its batch go back to the queue untouched.
        assert sink.calls == [
            [0],
            [1, 2, 3, 4, 5, 6, 7, 8],
            [5],
            [6, 7, 8, 9, 10, 11, 12, 13],
            [13],
            [14, 15, 16, 17, 18, 19],
        ]
        assert sink.executed == [*range(6), *range(5, 14), *range(13, 20)]
        assert rt.sinks()[0].retries == 2


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ({"type": "recording", "options": {"delay": 3}}, "The option 'options' is not known"),
        ({"type": "recording", "dealy": 3}, "The option 'dealy' is not known"),
        ({"type": "recording", "delay": -1}, "delay must be a number of seconds >= 0"),
        ({"type": "script", "source": "x = 1", "timeout": 3}, "The option 'timeout' is not known"),
    ],
)
async def test_unknown_sink_options_are_refused_not_ignored(
    project: Path, definition: dict[str, object], words: str
) -> None:
    async with Runtime(project) as rt:
        with pytest.raises(SinkError) as info:
            await rt.add_sink({"name": "typo", "events": "*", **definition})
        assert words in info.value.message
        assert rt.sinks() == []


async def test_backoff_waits_on_the_runtime_s_clock(project: Path) -> None:
    """`Runtime(clock=...)` is the seam knot.testing's FakeClock uses: every backoff goes
    through it, with the configured lengths, and nothing waits on the wall clock."""

    class Clock:
        def __init__(self) -> None:
            self.sleeps: list[float] = []

        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)

    clock = Clock()
    config = fast_config(attempts=4, backoff=(30.0, 60.0))
    async with Runtime(project, config=config, clock=clock) as rt:
        await rt.add_sink(recording("flaky", fail_attempts=3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await rt.emit_and_wait("x", {}, timeout=5)
        assert report.outcomes["flaky"].attempts == 4
        assert loop.time() - started < 5
    assert clock.sleeps == [30.0, 60.0, 60.0]  # the last step repeats
