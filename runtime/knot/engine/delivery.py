"""Delivery: one ordered, bounded queue and one worker per sink; retries, drops and give-ups.

A sink's worker takes its events one at a time, in journal order, and retries a failed attempt
after the configured backoff; different sinks run concurrently. Progress is one cursor per sink
("every matching event up to seq N is handled") written through the journal, plus a skip record
for each event dropped (queue full) or given up, so a restart resumes exactly the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from .._audit import AuditEntry, AuditKind
from .._config import DeliverySettings
from .._events import Event
from .._exceptions import RuntimeClosed
from ..sinks.base import Sink
from .hooks import Hooks
from .journal import Journal
from .outcomes import DeliveryStatus, Outcome, Tracker
from .worker import SinkWorker

if TYPE_CHECKING:
    from .._clock import Clock

__all__ = ["DeliveryEngine"]

log = logging.getLogger("knot.delivery")


class DeliveryEngine:
    def __init__(
        self,
        journal: Journal,
        settings: DeliverySettings,
        hooks: Hooks | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.journal = journal
        self.settings = settings
        # Backoff waits go through this: asyncio.sleep itself unless a test clock stands in
        # (bound once, so the production path pays nothing for the seam).
        self.sleep: Callable[[float], Awaitable[None]] = (
            clock.sleep if clock is not None else asyncio.sleep
        )
        self.workers: dict[str, SinkWorker] = {}
        self.trackers: dict[str, Tracker] = {}
        self.last_routed = journal.head
        self.hooks = hooks or Hooks()
        # Manual re-deliveries waiting for their outcome: (sink, event id) → waiters.
        self.redeliveries: dict[tuple[str, str], list[asyncio.Future[Outcome]]] = {}
        self._wakers: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a small background job, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def trace(self, event: Event, sink: str) -> str:
        """The `traceparent` `sink`'s attempt on `event` hands on (to a webhook receiver, to
        the events and method calls it makes): the attempt's own with tracing on, else the
        one the event carries."""
        tracer = self.hooks.tracer
        if tracer is None or not event.trace:
            return event.trace
        worker = self.workers.get(sink)
        try:
            return tracer.delivery(event, sink, 1 if worker is None else worker.attempt)
        except Exception:
            self.hooks.report(tracer, "the tracer")
            return event.trace

    def resumed(self, events: list[Event]) -> None:
        """Tell the tracer of events a sink resumes from the journal (committed before it
        was watching): their attempts' spans need them."""
        tracer = self.hooks.tracer
        if tracer is not None:
            try:
                tracer.resumed(events)
            except Exception:
                self.hooks.report(tracer, "the tracer")

    def backoff(self, attempt: int) -> float:
        steps = self.settings.backoff
        return steps[min(attempt - 1, len(steps) - 1)] if steps else 0.0

    # -- sinks ----------------------------------------------------------------------------

    def attach(self, sink: Sink, *, cursor: int | None = None) -> SinkWorker:
        """Serve `sink`; a sink of the same name keeps its queue and gets the new version."""
        worker = self.workers.get(sink.name)
        if worker is not None:
            worker.replace(sink)
            return worker
        start = self.last_routed if cursor is None else cursor
        worker = SinkWorker(self, sink, start)
        if cursor is None:
            # A new sink starts at the journal head; persist that so a crash before its first
            # delivery cannot leave it without a starting point.
            self.journal.set_cursor(sink.name, start)
        self.workers[sink.name] = worker
        worker.start()
        return worker

    async def detach(self, name: str, *, reason: str) -> Sink | None:
        """Stop serving a sink; its queued events are given up with an audit entry each.

        An attempt in flight may finish first (up to `delivery.stop_grace`): an event the
        receiver got is delivered, not audited as lost.
        """
        worker = self.workers.pop(name, None)
        if worker is None:
            return None
        self._wakers.pop(name, None)
        await worker.stop(self.settings.stop_grace)
        worker.flush_attempts()
        lost = [*worker.inflight, *worker.queue]
        for index, event in enumerate(lost):
            if index == 0 and worker.interrupted:
                fate = (
                    f"was being delivered to it and that attempt was stopped after "
                    f"{self.settings.stop_grace:g} s (delivery.stop_grace), so it may or may "
                    "not have arrived"
                )
            else:
                fate = "will not be delivered to it"
            self.journal.audit(
                AuditEntry.new(
                    AuditKind.SINK_REMOVED,
                    f"Event sink {name} was removed ({reason}); event {event.id} "
                    f"({event.type}) {fate}.",
                    sink=name,
                    event_id=event.id,
                )
            )
            self.finished(event, Outcome(name, event.id, DeliveryStatus.REMOVED, 0, reason))
        if name not in self.workers:  # a sink of that name added meanwhile keeps its progress
            self.journal.forget(name)
        await worker.sink.close()
        for old in worker._retired:
            await old.close()
        return worker.sink

    async def release(self, name: str, *, grace: float = 0.0) -> Sink | None:
        """Stop serving a sink here without giving anything up: its cursor stays where it is,
        so the runtime that serves it next resumes right after it (a cluster hand-over).

        What was queued is not lost (it is journaled after the cursor). The event in flight
        gets up to `grace` seconds to finish; one cut short is delivered again by the next
        holder.
        """
        worker = self.workers.pop(name, None)
        if worker is None:
            return None
        self._wakers.pop(name, None)
        await worker.stop(grace)
        worker.flush_attempts()
        if not worker.busy and worker.cursor < self.last_routed:
            self.journal.set_cursor(name, self.last_routed)  # idle: nothing to redo
        await worker.sink.close()
        for old in worker._retired:
            await old.close()
        return worker.sink

    # -- events ---------------------------------------------------------------------------

    def dispatch(self, event: Event, names: Iterable[str]) -> list[str]:
        """Queue a freshly journaled event for each named sink, in journal order; the names of
        the sinks whose queue was full (the event was dropped for them)."""
        self.last_routed = event.seq
        workers = self.workers
        dropped: list[str] = []
        for name in names:
            worker = workers.get(name)
            if worker is None:
                continue
            if worker.offer(event):
                waker = self._wakers.pop(name, None)
                if waker is not None and not waker.done():
                    waker.set_result(None)
            else:
                self._drop(worker, event)
                dropped.append(name)
        return dropped

    def restore(self, worker: SinkWorker, event: Event) -> None:
        """Re-queue an event found undelivered at start-up (no bound: nothing is lost)."""
        worker.queue.append(event)
        waker = self._wakers.pop(worker.name, None)
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def redeliver(self, event: Event, name: str) -> Outcome:
        """Queue an already journaled event for sink `name` once more and wait for its outcome
        (delivered, or given up after the usual attempts; removed if the sink goes first).

        It goes behind what the sink has queued, past the queue's bound (a request someone
        made by hand is never dropped), and takes the path every event takes: attempts,
        retries, audit and attempt history. The sink's cursor does not move back: a re-delivery
        is not resumed after a restart (the caller got no outcome then, and may ask again).
        """
        worker = self.workers.get(name)
        if worker is None or worker.stopping:
            raise RuntimeClosed(
                f"The sink {name} is not running, so nothing can be delivered to it."
            )
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.redeliveries.setdefault((name, event.id), []).append(waiter)
        self.restore(worker, event)
        return await waiter

    def _drop(self, worker: SinkWorker, event: Event) -> None:
        worker.stats.dropped += 1
        name = worker.name
        message = f"Event sink {name} queue full, dropped event {event.id} ({event.type})."
        log.warning("%s", message)
        self.journal.skip(name, event.seq, "dropped")
        self.journal.audit(AuditEntry.new(AuditKind.DROPPED, message, sink=name, event_id=event.id))
        self.finished(event, Outcome(name, event.id, DeliveryStatus.DROPPED, 0, message))

    def wakeup(self, worker: SinkWorker) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if worker.queue:
            future.set_result(None)
        else:
            self._wakers[worker.name] = future
        return future

    def finished(self, event: Event, outcome: Outcome) -> None:
        if self.redeliveries:
            key = (outcome.sink, event.id)
            waiters = self.redeliveries.get(key)
            if waiters:  # one outcome answers one request: each queued copy has its own
                waiter = waiters.pop(0)
                if not waiters:
                    del self.redeliveries[key]
                if not waiter.done():
                    waiter.set_result(outcome)
        if self.trackers:
            tracker = self.trackers.get(event.id)
            if tracker is not None:
                tracker.add(outcome)
        if self.hooks.outcome_listeners:
            self.hooks.outcome(event, outcome)

    def advance_idle(self) -> None:
        """Move idle sinks' cursors to the head, so restarts and pruning skip what they missed."""
        head = self.last_routed
        for worker in self.workers.values():
            # A sink busy for long, or gone idle with a run open: its attempts so far become
            # readable (and traceable) within a round, not only when something reads them.
            if worker.busy or worker.recorder.run:
                worker.flush_attempts()
            if not worker.busy and worker.cursor < head:
                worker.cursor = head
                self.journal.set_cursor(worker.name, head)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every queue is empty and nothing is in flight (tests, notebooks)."""
        async with asyncio.timeout(timeout):
            while any(w.busy for w in self.workers.values()):
                await asyncio.sleep(0.001)

    def flush_attempts(self) -> None:
        """Hand every sink's recorded attempts to the journal (before reading them)."""
        for worker in self.workers.values():
            worker.flush_attempts()

    async def close(self) -> None:
        """Stop every sink: attempts in flight finish first (up to `delivery.stop_grace`) and
        are recorded, so a restart resumes exactly after what finished."""
        self.advance_idle()
        workers = list(self.workers.values())
        self._wakers.clear()
        waiting = [w for ws in self.redeliveries.values() for w in ws]
        self.redeliveries.clear()
        for waiter in waiting:  # what is still queued is not delivered by this run
            if not waiter.done():
                waiter.set_exception(
                    RuntimeClosed("The runtime stopped before the re-delivery finished.")
                )
        await asyncio.gather(*(w.stop(self.settings.stop_grace) for w in workers))
        for worker in workers:
            worker.flush_attempts()
            await worker.sink.close()
            for old in worker._retired:
                await old.close()
        self.workers.clear()
