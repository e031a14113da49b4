"""Group commit: one writer thread turns everything written meanwhile into one transaction.

Emitters get their future resolved only after the transaction holding their event commits,
so an id handed back is always durable. While one commit runs, the next batch fills, so the
cost of a commit is shared by every event that arrived during the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._audit import AuditEntry
from ._events import Event
from ._exceptions import RuntimeClosed
from ._store import Store, WriteBatch

__all__ = ["Journal"]

log = logging.getLogger("knot.store")
T = TypeVar("T")
CommitCallback = Callable[[list[Event], list[bool]], None]


class Journal:
    def __init__(self, store: Store, *, on_commit: CommitCallback) -> None:
        self.store = store
        self._on_commit = on_commit
        self._cond = threading.Condition()
        self._batch = WriteBatch()
        self._waiters: list[asyncio.Future[bool]] = []
        self._calls: list[tuple[Callable[[Store], Any], asyncio.Future[Any]]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._next_seq = store.head_seq() + 1
        self.commits = 0

    @property
    def head(self) -> int:
        """The highest sequence number handed out so far."""
        return self._next_seq - 1

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="knot-journal", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commit what is pending and stop the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
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
        assert self._loop is not None, "journal not started"
        if self._closing:
            raise RuntimeClosed("The runtime is stopping and accepts no more events.")
        future: asyncio.Future[bool] = self._loop.create_future()
        with self._cond:
            batch = self._batch
            batch.events.append(event)
            batch.check_duplicates |= check_duplicate
            self._waiters.append(future)
            self._cond.notify()
        return future

    def audit(self, entry: AuditEntry) -> None:
        with self._cond:
            self._batch.audits.append(entry)
            self._cond.notify()

    def set_cursor(self, sink: str, seq: int) -> None:
        """Record that `sink` has handled every matching event up to `seq`."""
        with self._cond:
            self._batch.cursors[sink] = seq
            self._cond.notify()

    def skip(self, sink: str, seq: int, reason: str) -> None:
        """Record one event the sink will never handle (dropped or given up)."""
        with self._cond:
            self._batch.skips.append((sink, seq, reason))
            self._cond.notify()

    def forget(self, sink: str) -> None:
        with self._cond:
            self._batch.cursors.pop(sink, None)
            self._batch.forget.append(sink)
            self._cond.notify()

    def call(self, fn: Callable[[Store], T]) -> asyncio.Future[T]:
        """Run `fn(store)` on the writer thread after everything queued before it."""
        assert self._loop is not None, "journal not started"
        future: asyncio.Future[T] = self._loop.create_future()
        with self._cond:
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    # -- the writer thread ----------------------------------------------------------------

    def _writer(self) -> None:
        while True:
            with self._cond:
                while not (self._batch or self._calls or self._closing):
                    self._cond.wait()
                batch, self._batch = self._batch, WriteBatch()
                waiters, self._waiters = self._waiters, []
                calls, self._calls = self._calls, []
                closing = self._closing and not batch and not calls
            if closing:
                return
            if batch:
                try:
                    flags = self.store.write(batch)
                except Exception as exc:
                    log.error("%s", exc)
                    self._post(self._failed, waiters, exc)
                else:
                    self.commits += 1
                    self._post(self._committed, batch.events, flags, waiters)
            for fn, future in calls:
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
