"""Delivery: one ordered, bounded queue and one worker per sink; retries, drops and give-ups.

A sink's worker takes its events one at a time, in journal order, and retries a failed attempt
after the configured backoff; different sinks run concurrently. Progress is one cursor per sink
("every matching event up to seq N is handled") written through the journal, plus a skip record
for each event dropped (queue full) or given up, so a restart resumes exactly the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._audit import AuditEntry, AuditKind
from .._config import DeliverySettings
from .._events import Event
from .._exceptions import DeliveryFailed
from .._logtext import loggable
from ..sinks.base import DeliveryResult, Sink
from .hooks import Hooks
from .journal import Journal
from .outcomes import DeliveryStatus, Outcome, Tracker

__all__ = ["DeliveryEngine", "SinkWorker"]

log = logging.getLogger("knot.delivery")


@dataclass
class SinkStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    last_error: str = ""
    last_delivered_seq: int = 0


@dataclass
class SinkWorker:
    """One sink's queue and the task serving it."""

    engine: DeliveryEngine
    sink: Sink
    cursor: int
    queue: deque[Event] = field(default_factory=deque)
    inflight: Sequence[Event] = ()
    stats: SinkStats = field(default_factory=SinkStats)
    task: asyncio.Task[None] | None = None
    stopping: bool = False  # finish the event in flight, then stop (a hand-over)
    _retired: list[Sink] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def pending(self) -> int:
        return len(self.queue) + len(self.inflight)

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.inflight)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"knot-sink-{self.name}")

    def offer(self, event: Event) -> bool:
        if len(self.queue) >= self.engine.settings.queue_size:
            return False
        self.queue.append(event)
        return True

    def replace(self, sink: Sink) -> None:
        """Swap in a new version of the sink; queued events stay queued, in order."""
        self._retired.append(self.sink)
        self.sink = sink
        if not self.inflight:
            self._close_retired()

    def _close_retired(self) -> None:
        for old in self._retired:
            self.engine.spawn(old.close())
        self._retired.clear()

    async def _run(self) -> None:
        queue = self.queue
        while True:
            while queue:
                limit = self.sink.max_batch
                if limit > 1 and len(queue) > 1:
                    batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
                    self.inflight = batch
                    await self._deliver_batch(batch)
                else:
                    event = queue.popleft()
                    self.inflight = (event,)
                    # The first attempt inline: this is the path almost every event takes.
                    try:
                        result = await self.sink.deliver(event)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        self._finish(event, await self._deliver(event, first_error=exc))
                    else:
                        self._succeeded(event, 1, result)
                self.inflight = ()
                if self._retired:
                    self._close_retired()
                if self.stopping:
                    return
            await self.engine.wakeup(self)
            if self.stopping:
                return

    def _succeeded(self, event: Event, attempt: int, result: DeliveryResult | None) -> None:
        stats = self.stats
        stats.delivered += 1
        stats.last_delivered_seq = event.seq
        engine = self.engine
        if engine.trackers or engine.hooks.outcome_listeners:
            outcome = Outcome(self.name, event.id, DeliveryStatus.DELIVERED, attempt, "", result)
            self._finish(event, outcome)
        else:
            self._finish(event, None)

    def _finish(self, event: Event, outcome: Outcome | None) -> None:
        engine = self.engine
        queue = self.queue
        # Everything before the next queued event (or everything routed so far, when the queue
        # is empty) is handled: that is the cursor the journal keeps.
        cursor = queue[0].seq - 1 if queue else engine.last_routed
        if cursor > self.cursor:
            self.cursor = cursor
            engine.journal.set_cursor(self.name, cursor)
        if outcome is not None:
            engine.finished(event, outcome)

    async def _deliver_batch(self, batch: list[Event]) -> None:
        """Hand several queued events to the sink at once; same order and retry rules.

        The sink stops at the first failure; that event continues with its retries and the
        events after it go back to the front of the queue, untouched.
        """
        first_error: Exception | None = None
        try:
            results, failed_at, error = await self.sink.deliver_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            results, failed_at, error, first_error = [], 0, "", exc
        failed: Event | None = None
        if failed_at is not None:
            failed = batch[failed_at]
            for event in reversed(batch[failed_at + 1 :]):
                self.queue.appendleft(event)
            self.inflight = (failed,)
        for event, result in zip(batch, results, strict=False):
            if event is failed:
                break
            self._succeeded(event, 1, result)
        if failed is not None:
            first = first_error if first_error is not None else DeliveryFailed(error)
            self._finish(failed, await self._deliver(failed, first_error=first))

    def _describe(self, exc: Exception, event: Event) -> str:
        if isinstance(exc, DeliveryFailed):
            return exc.reason
        log.error("sink %s raised while delivering %s", self.name, event.id, exc_info=exc)
        return f"The sink {self.name} raised {type(exc).__name__}: {exc}"

    async def _deliver(self, event: Event, *, first_error: Exception | None = None) -> Outcome:
        """Deliver one event with retries; `first_error` means attempt 1 already failed."""
        engine = self.engine
        attempts = engine.settings.attempts
        error = ""
        for attempt in range(1, attempts + 1):
            if attempt == 1 and first_error is not None:
                error = self._describe(first_error, event)
            else:
                try:
                    result = await self.sink.deliver(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = self._describe(exc, event)
                else:
                    self.stats.delivered += 1
                    self.stats.last_delivered_seq = event.seq
                    return Outcome(
                        self.name, event.id, DeliveryStatus.DELIVERED, attempt, "", result
                    )
            self.stats.last_error = error
            log.warning(
                "%s ✗ %s %s (attempt %d/%d): %s",
                self.name,
                event.type,
                event.id,
                attempt,
                attempts,
                loggable(error),  # may quote a receiver's answer or a script's exception
            )
            if attempt < attempts:
                self.stats.retries += 1
                await asyncio.sleep(engine.backoff(attempt))
        self.stats.failed += 1
        engine.journal.skip(self.name, event.seq, "failed")
        engine.journal.audit(
            AuditEntry.new(
                self.sink.failure_kind,
                f"Event sink {self.name} gave up on event {event.id} ({event.type}) after "
                f"{attempts} attempt{'s' if attempts != 1 else ''}: {error}",
                sink=self.name,
                event_id=event.id,
            )
        )
        return Outcome(self.name, event.id, DeliveryStatus.FAILED, attempts, error)


class DeliveryEngine:
    def __init__(
        self,
        journal: Journal,
        settings: DeliverySettings,
        hooks: Hooks | None = None,
    ) -> None:
        self.journal = journal
        self.settings = settings
        self.workers: dict[str, SinkWorker] = {}
        self.trackers: dict[str, Tracker] = {}
        self.last_routed = journal.head
        self.hooks = hooks or Hooks()
        self._wakers: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a small background job, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        """Stop serving a sink; its queued events are given up with an audit entry each."""
        worker = self.workers.pop(name, None)
        if worker is None:
            return None
        self._wakers.pop(name, None)
        if worker.task is not None:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task
        lost = [*worker.inflight, *worker.queue]
        for event in lost:
            self.journal.audit(
                AuditEntry.new(
                    AuditKind.SINK_REMOVED,
                    f"Event sink {name} was removed ({reason}); event {event.id} "
                    f"({event.type}) will not be delivered to it.",
                    sink=name,
                    event_id=event.id,
                )
            )
            self.finished(event, Outcome(name, event.id, DeliveryStatus.REMOVED, 0, reason))
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
        task = worker.task
        if task is not None:
            worker.stopping = True
            waker = self._wakers.pop(name, None)
            if waker is not None and not waker.done():
                waker.set_result(None)  # an idle worker wakes up and stops
            if grace > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), grace)
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            if not worker.busy and worker.cursor < head:
                worker.cursor = head
                self.journal.set_cursor(worker.name, head)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every queue is empty and nothing is in flight (tests, notebooks)."""
        async with asyncio.timeout(timeout):
            while any(w.busy for w in self.workers.values()):
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        self.advance_idle()
        workers = list(self.workers.values())
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
        for worker in workers:
            if worker.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.task
            await worker.sink.close()
            for old in worker._retired:
                await old.close()
        self.workers.clear()
