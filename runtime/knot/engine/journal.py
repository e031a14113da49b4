"""Group commit: one writer thread turns everything written meanwhile into one transaction.

Emitters get their future resolved only after the transaction holding their event commits,
so an id handed back is always durable. While one commit runs, the next batch fills, so the
cost of a commit is shared by every event that arrived during the previous one.

Writes are collected on the event loop (every method here is called from the loop thread) and
handed to the writer once per loop iteration, so the thread lock is taken per batch, not per
event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .._audit import AuditEntry
from .._events import Event
from .._exceptions import RuntimeClosed
from .attempts import AttemptBatch
from .storage import Storage, WriteBatch

__all__ = ["Journal"]

log = logging.getLogger("knot.store")
T = TypeVar("T")
FAILURE_LOG_EVERY = 10.0  # seconds between "still failing" lines while commits keep failing
CommitCallback = Callable[[list[Event], list[bool]], None]
_Call = tuple[Callable[[Storage], Any], "asyncio.Future[Any]"]
_Item = tuple[WriteBatch, list["asyncio.Future[bool]"]] | _Call


class Journal:
    def __init__(self, store: Storage, *, on_commit: CommitCallback) -> None:
        self.store = store
        self._on_commit = on_commit
        self._inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # Loop side: what this iteration wrote, handed over in one go.
        self._outbox = WriteBatch()
        self._waiters: list[asyncio.Future[bool]] = []
        self._scheduled = False
        # Writer side: handed-over batches and calls, in order.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._next_seq = store.head_seq() + 1
        self.commits = 0
        # Writer side: the store's health. A failed commit refuses its writes (emitters get
        # the error, nothing is acknowledged); the next one that succeeds clears it.
        self.failure = ""
        self._failed_commits = 0
        self._failure_logged = 0.0

    @property
    def head(self) -> int:
        """The highest sequence number handed out so far."""
        return self._next_seq - 1

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="knot-journal", daemon=True)
        self._thread.start()
        if self._outbox:  # written before start (cursors of sinks installed at start-up)
            self._schedule()

    async def close(self) -> None:
        """Commit what is pending and stop the writer thread."""
        self._handoff()
        self._closing = True
        self._inbox.put(None)  # tells the writer to stop once it has written the rest
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # -- called on the event loop ---------------------------------------------------------

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def append(self, event: Event, *, check_duplicate: bool = False) -> asyncio.Future[bool]:
        """Queue an event for the next commit; the future says whether it was new."""
        loop = self._loop
        assert loop is not None, "journal not started"
        if self._closing:
            raise RuntimeClosed("The runtime is stopping and accepts no more events.")
        future: asyncio.Future[bool] = loop.create_future()
        outbox = self._outbox
        outbox.events.append(event)
        if check_duplicate:
            outbox.check_duplicates = True
        self._waiters.append(future)
        if not self._scheduled:
            self._schedule()
        return future

    def audit(self, entry: AuditEntry) -> None:
        self._outbox.audits.append(entry)
        self._schedule()

    def set_cursor(self, sink: str, seq: int) -> None:
        """Record that `sink` has handled every matching event up to `seq`."""
        self._outbox.cursors[sink] = seq
        if not self._scheduled:
            self._schedule()

    def attempts(self, batch: AttemptBatch) -> None:
        """Record delivery attempts (committed with the next batch, like a cursor)."""
        self._outbox.attempts.append(batch)
        if not self._scheduled:
            self._schedule()

    def skip(self, sink: str, seq: int, reason: str) -> None:
        """Record one event the sink will never handle (dropped or given up)."""
        self._outbox.skips.append((sink, seq, reason))
        self._schedule()

    def forget(self, sink: str) -> None:
        # A forget must not be reordered with a later cursor for a new sink of the same name.
        self._outbox.cursors.pop(sink, None)
        self._outbox.forget.append(sink)
        self._handoff()

    def call(self, fn: Callable[[Storage], T]) -> asyncio.Future[T]:
        """Run `fn(store)` on the writer thread after everything written before it."""
        assert self._loop is not None, "journal not started"
        future: asyncio.Future[T] = self._loop.create_future()
        self._handoff()
        self._inbox.put((fn, future))
        return future

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._handoff)

    def _handoff(self) -> None:
        self._scheduled = False
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, WriteBatch()
        waiters, self._waiters = self._waiters, []
        self._inbox.put((batch, waiters))

    # -- the writer thread ----------------------------------------------------------------

    def _writer(self) -> None:
        inbox = self._inbox
        while True:
            items = [inbox.get()]
            while not inbox.empty():  # everything handed over meanwhile joins this commit
                items.append(inbox.get_nowait())
            batches: list[WriteBatch] = []
            waiters: list[asyncio.Future[bool]] = []
            for item in items:
                if item is None:
                    self._commit(batches, waiters)
                    return
                if isinstance(item[0], WriteBatch):
                    batches.append(item[0])
                    waiters.extend(item[1])
                    continue
                self._commit(batches, waiters)
                batches, waiters = [], []
                self._run_call(item)
            self._commit(batches, waiters)

    def _commit(self, batches: list[WriteBatch], waiters: list[asyncio.Future[bool]]) -> None:
        if not batches:
            return
        try:
            flags = self.store.write(batches)
        except Exception as exc:
            self._note_failure(exc)
            self._post(self._failed, waiters, exc)
            return
        if self.failure:
            log.warning(
                "the store accepts writes again, after %d failed commit%s (their writes were "
                "refused, never acknowledged)",
                self._failed_commits,
                "" if self._failed_commits == 1 else "s",
            )
            self.failure, self._failed_commits = "", 0
        self.commits += 1
        events = [e for b in batches for e in b.events]
        self._post(self._committed, events, flags, waiters)

    def _note_failure(self, exc: Exception) -> None:
        """Log the first failed commit, then at most one line per FAILURE_LOG_EVERY seconds."""
        self._failed_commits += 1
        now = time.monotonic()
        if not self.failure or now - self._failure_logged >= FAILURE_LOG_EVERY:
            more = f" ({self._failed_commits} failed commits so far)" if self.failure else ""
            log.error("%s Writes are refused until it works again%s.", exc, more)
            self._failure_logged = now
        self.failure = str(exc)

    def _run_call(self, item: _Call) -> None:
        fn, future = item
        try:
            result = fn(self.store)
        except Exception as exc:
            self._post(_set_exception, future, exc)
        else:
            self._post(_set_result, future, result)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _committed(
        self, events: list[Event], flags: list[bool], waiters: list[asyncio.Future[bool]]
    ) -> None:
        try:
            self._on_commit(events, flags)
        finally:
            for future, flag in zip(waiters, flags, strict=True):
                if not future.done():
                    future.set_result(flag)

    @staticmethod
    def _failed(waiters: list[asyncio.Future[bool]], exc: BaseException) -> None:
        for future in waiters:
            if not future.done():
                future.set_exception(exc)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
