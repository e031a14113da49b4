"""One sink's worker: its bounded queue, the events in flight, the attempts and retries.

The `DeliveryEngine` (delivery.py) makes one per sink and wakes it when events come; the worker
reaches back only through `WorkerHost`, the few things of the engine it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from time import time
from typing import Any, Protocol

from .._audit import AuditEntry
from .._config import DeliverySettings
from .._events import Event
from .._exceptions import DeliveryFailed
from .._logtext import loggable
from ..sinks.base import BatchResult, DeliveryResult, Sink
from .attempts import Attempt, said
from .hooks import Hooks
from .journal import Journal
from .outcomes import DeliveryStatus, Outcome, Tracker
from .recorder import AttemptRecorder, spread

__all__ = ["SinkStats", "SinkWorker", "WorkerHost"]

log = logging.getLogger("knot.delivery")


class WorkerHost(Protocol):
    """What a sink's worker needs of the engine that runs it."""

    journal: Journal
    settings: DeliverySettings
    hooks: Hooks
    trackers: dict[str, Tracker]
    redeliveries: dict[tuple[str, str], list[asyncio.Future[Outcome]]]
    last_routed: int
    sleep: Callable[[float], Awaitable[None]]  # backoff waits (a test clock's, or asyncio's)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def backoff(self, attempt: int) -> float: ...

    def wakeup(self, worker: SinkWorker) -> asyncio.Future[None]: ...

    def finished(self, event: Event, outcome: Outcome) -> None: ...


@dataclass
class SinkStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    last_error: str = ""
    last_delivered_seq: int = 0


class _Stopped(Exception):
    """A stopping worker met a failed attempt: it leaves the event unfinished (no retry)."""


@dataclass
class SinkWorker:
    """One sink's queue and the task serving it."""

    engine: WorkerHost
    sink: Sink
    cursor: int
    queue: deque[Event] = field(default_factory=deque)
    # Taken from the queue and not finished yet, in order: the event being delivered (or
    # waiting for its retry), or what is left of a batch.
    inflight: deque[Event] = field(default_factory=deque)
    stats: SinkStats = field(default_factory=SinkStats)
    task: asyncio.Task[None] | None = None
    stopping: bool = False  # no new events, no retries: `stop` waits for the attempt in flight
    attempting: bool = False  # a delivery attempt is in flight (not a backoff, not idle)
    interrupted: bool = False  # `stop` cancelled an attempt in flight (its outcome unknown)
    # The number of the attempt in flight: 1 but during a retry (a batch is all first
    # attempts). Tracing derives the attempt's context from it when a sink hands it on.
    attempt: int = 1
    _retired: list[Sink] = field(default_factory=list)
    recorder: AttemptRecorder = field(init=False)  # attempts on their way to the journal

    def __post_init__(self) -> None:
        engine = self.engine
        self.recorder = AttemptRecorder(self.sink.name, engine.journal, engine.hooks)

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

    async def stop(self, grace: float) -> None:
        """Stop serving: an attempt in flight may finish (up to `grace` seconds) and is
        recorded; nothing else starts. What is left stays in `inflight` and `queue`.

        Cancelling an attempt would lose what it did: a webhook the receiver already got, a
        script's batch whose finished events would run again after a restart.
        """
        self.stopping = True
        task = self.task
        if task is None or task.done():
            return
        if not self.attempting:  # idle, or sleeping before a retry: nothing to wait for
            task.cancel()
        else:
            await asyncio.wait({task}, timeout=grace)
            if not task.done():
                self.interrupted = self.attempting
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

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
        engine = self.engine
        hooks = engine.hooks
        stats = self.stats
        recorder = self.recorder
        inflight = self.inflight
        run = recorder.run  # emptied in place when flushed
        # Bound once: this is the hot path of every quick delivery. The run is not measured
        # here either: the housekeeper hands it to the journal every round (0.5 s of
        # deliveries at most, a list of ints).
        ran = run.append
        current: Sink | None = None  # the sink (version) the open run's last attempt ran
        try:
            while not self.stopping:
                recorder.resume()
                name = self.name
                while queue and not self.stopping:
                    limit = self.sink.max_batch
                    if limit > 1 and len(queue) > 1:
                        inflight.extend(queue.popleft() for _ in range(min(limit, len(queue))))
                        await self._deliver_batch(list(inflight))
                    else:
                        event = queue.popleft()
                        inflight.append(event)
                        # The first attempt inline: this is the path almost every event takes.
                        self.attempting = True
                        sink = self.sink  # the version that runs it, even if replaced meanwhile
                        try:
                            result = await sink.deliver(event)
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            self.attempting = False
                            started, ended = recorder.flush(one_more=True)
                            first = self._failed(event, 1, started, ended, exc, sink.version)
                            self._finish(event, await self._deliver(event, first_error=first))
                            recorder.restart(time())
                        else:
                            self.attempting = False
                            if result is None:  # delivered, nothing to say: one more in the run
                                if sink is not current:  # reloaded: a run is of one version
                                    current = sink
                                    if sink.version != recorder.version:
                                        recorder.switch(sink.version)
                                ran(event.seq)
                                stats.delivered += 1
                                stats.last_delivered_seq = event.seq
                                if (
                                    engine.trackers
                                    or hooks.outcome_listeners
                                    or engine.redeliveries
                                ):
                                    status = DeliveryStatus.DELIVERED
                                    self._finish(event, Outcome(name, event.id, status, 1))
                                else:
                                    self._finish(event, None)
                            else:
                                started, ended = recorder.flush(one_more=True)
                                self._succeeded(event, 1, result, started, ended, sink.version)
                    if self._retired and not inflight:
                        self._close_retired()
                recorder.pause()
                if not self.stopping:
                    await engine.wakeup(self)
        except _Stopped:
            return

    def flush_attempts(self) -> None:
        """Hand the attempts recorded so far to the journal (before they are read)."""
        self.recorder.flush()

    def _succeeded(
        self,
        event: Event,
        attempt: int,
        result: DeliveryResult | None,
        started: float,
        ended: float,
        version: str,
    ) -> None:
        self._record_success(event, attempt, result, started, ended, version)
        engine = self.engine
        if engine.trackers or engine.hooks.outcome_listeners or engine.redeliveries:
            outcome = Outcome(self.name, event.id, DeliveryStatus.DELIVERED, attempt, "", result)
            self._finish(event, outcome)
        else:
            self._finish(event, None)

    def _record_success(
        self,
        event: Event,
        attempt: int,
        result: DeliveryResult | None,
        started: float,
        ended: float,
        version: str,
    ) -> None:
        stats = self.stats
        stats.delivered += 1
        stats.last_delivered_seq = event.seq
        if result is None:
            duration = ended - started
            self.recorder.keep(
                Attempt.new(self.name, event.seq, attempt, started, duration, version=version)
            )
            return
        self.recorder.keep(
            Attempt.new(
                self.name,
                event.seq,
                attempt,
                started,
                ended - started,
                status=result.status,
                output=result.output,
                version=version,
                directives=tuple((d.name, said(d.options)) for d in result.directives)
                if version
                else (),
                result=result.value,
            )
        )

    def _failed(
        self,
        event: Event,
        attempt: int,
        started: float,
        ended: float,
        exc: Exception,
        version: str,
    ) -> str:
        """Record a failed attempt; the reason it failed."""
        error = self._describe(exc, event)
        status, output = (exc.status, exc.output) if isinstance(exc, DeliveryFailed) else (0, ())
        record = Attempt.new(
            self.name,
            event.seq,
            attempt,
            started,
            ended - started,
            error=error or "failed",
            status=status,
            output=output,
            version=version,
        )
        self.recorder.keep(record)
        return error

    def _finish(self, event: Event, outcome: Outcome | None) -> None:
        engine = self.engine
        inflight = self.inflight
        if inflight and inflight[0] is event:
            inflight.popleft()
        # Everything before the first unfinished event (or everything routed so far, when
        # there is none) is handled: that is the cursor the journal keeps.
        if inflight:
            cursor = inflight[0].seq - 1
        elif self.queue:
            cursor = self.queue[0].seq - 1
        else:
            cursor = engine.last_routed
        if cursor > self.cursor:
            self.cursor = cursor
            engine.journal.set_cursor(self.name, cursor)
        if outcome is not None:
            engine.finished(event, outcome)

    async def _deliver_batch(self, batch: list[Event]) -> None:
        """Hand several queued events to the sink at once; same order and retry rules.

        Each event is finished as the sink reports it (so the cursor moves event by event);
        the sink stops at the first failure; that event continues with its retries and the
        events after it go back to the front of the queue, untouched.

        An event the sink handled at once and with nothing to record (no output, no status:
        a script that printed nothing and answered nothing) joins the recorder's run,
        as a quick delivery of one event does; the batch's time is the run's delivery time.
        Others get a record of their own, timed from when the sink reported them, which splits
        the run there.
        """
        recorder = self.recorder
        sink = self.sink
        version = sink.version
        if version != recorder.version:  # a run is of one version of the script
            recorder.switch(version)
        marks = [time()]  # when each event reported so far finished
        done = 0

        def on_result(index: int, result: DeliveryResult | None) -> None:
            nonlocal done
            if index == done:  # in order, once each; anything else waits for the batch's end
                done += 1
                now = time()
                self._batch_success(batch[index], result, marks[-1], now, version)
                marks.append(now)

        first_error: Exception | None = None
        self.attempting = True
        try:
            answer = await sink.deliver_batch(batch, on_result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            answer, first_error = BatchResult([], done), exc
        finally:
            self.attempting = False
        results, failed_at = answer.results, answer.failed_at
        if failed_at is not None:
            failed_at = max(failed_at, done)  # what was reported delivered stays delivered
            if failed_at >= len(batch):
                failed_at = None
        stop = len(batch) if failed_at is None else failed_at
        stop = max(done, min(stop, len(results)))
        tried = stop - done + (failed_at is not None)
        times = spread(marks[-1], time(), tried, answer.finished[done:])
        for index in range(done, stop):
            at = index - done
            self._batch_success(batch[index], results[index], times[at], times[at + 1], version)
        if failed_at is None:
            return
        failed = batch[failed_at]
        inflight = self.inflight
        while inflight and inflight[-1] is not failed:  # the rest go back, untouched
            self.queue.appendleft(inflight.pop())
        if first_error is None:
            first_error = DeliveryFailed(answer.error or "failed", output=answer.output)
        at = failed_at - done
        started, ended = times[at], times[at + 1]
        recorder.split(started, ended)
        first = self._failed(failed, 1, started, ended, first_error, version)
        self._finish(failed, await self._deliver(failed, first_error=first))
        recorder.restart(time())  # the retries and their backoffs are no run's time

    def _batch_success(
        self,
        event: Event,
        result: DeliveryResult | None,
        started: float,
        ended: float,
        version: str,
    ) -> None:
        """One event of a batch delivered at its first attempt, between `started` and `ended`:
        one more in the run when there is nothing to record (a script's directives and a
        method's result are kept for replays, so those keep a record)."""
        if result is None or not (
            result.output or result.status or result.value or (version and result.directives)
        ):
            recorder = self.recorder
            recorder.run.append(event.seq)
            stats = self.stats
            stats.delivered += 1
            stats.last_delivered_seq = event.seq
            engine = self.engine
            if engine.trackers or engine.hooks.outcome_listeners or engine.redeliveries:
                outcome = Outcome(self.name, event.id, DeliveryStatus.DELIVERED, 1, "", result)
                self._finish(event, outcome)
            else:
                self._finish(event, None)
            return
        self.recorder.split(started, ended)
        self._succeeded(event, 1, result, started, ended, version)

    def _describe(self, exc: Exception, event: Event) -> str:
        if isinstance(exc, DeliveryFailed):
            return exc.reason
        log.error("sink %s raised while delivering %s", self.name, event.id, exc_info=exc)
        return f"The sink {self.name} raised {type(exc).__name__}: {exc}"

    async def _deliver(self, event: Event, *, first_error: str | None = None) -> Outcome:
        """Deliver one event with retries; `first_error` means attempt 1 already failed (and
        is recorded)."""
        engine = self.engine
        attempts = engine.settings.attempts
        error = ""
        for attempt in range(1, attempts + 1):
            if attempt == 1 and first_error is not None:
                error = first_error
            else:
                started = time()
                self.attempting = True
                self.attempt = attempt
                sink = self.sink
                try:
                    result = await sink.deliver(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = self._failed(event, attempt, started, time(), exc, sink.version)
                else:
                    self._record_success(event, attempt, result, started, time(), sink.version)
                    return Outcome(
                        self.name, event.id, DeliveryStatus.DELIVERED, attempt, "", result
                    )
                finally:
                    self.attempting = False
                    self.attempt = 1
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
                if self.stopping:  # no retry now: the event stays unfinished (see `stop`)
                    raise _Stopped
                self.stats.retries += 1
                await engine.sleep(engine.backoff(attempt))
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
