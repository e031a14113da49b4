"""The sandbox workers of a runtime's script sinks: one process per sink, never shared.

A worker process serves one script sink for its whole life: the first delivery of a sink
binds a worker to it, later deliveries reuse it (its compiled script, its module state; a new
version of the same script is compiled in it), and no other sink's script ever runs in it.
Whatever a script leaves behind in its process (a generator whose `finally` runs at the next
garbage collection, a class registered with an ABC, a planted regex-cache entry) can therefore
only ever meet that same sink's own later runs.
The isolation between sinks is the process boundary, not a reset we would have to get right.

Processes cost memory (about 10 MB each, idle), so at most `size` live at once (the setting
`scripts.workers`, by default twice the cores but at least 8). When a sink needs a worker and
none is free, the idle worker used longest ago is stopped to make room. One unbound spare is
kept started while script sinks exist, so a sink that gets a worker does not wait the ~60 ms a
new interpreter takes. The runtime owns the pool (`SinkHost.script_pool`) and closes it.

Scripts stuck in a loop hold their workers until `scripts.timeout`; with every worker held
like that, an unrelated sink would wait just as long. So when every worker has been busy for
GROW_AFTER seconds and a sink is waiting, the pool starts one more, up to twice its size; the
extra workers stop again as they come back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from .process import Redact, WorkerDied, WorkerProcess

__all__ = ["WorkerPool", "default_size"]

log = logging.getLogger("knot.sandbox")

GROW_AFTER = 0.5  # seconds every worker must have been busy before the pool grows past size
RECHECK = 0.05  # seconds between looks while workers are starting


def default_size() -> int:
    """Live workers when `scripts.workers` is 0: enough for the sinks of most projects."""
    return max(8, 2 * (os.cpu_count() or 1))


class WorkerPool:
    """Up to `size` workers, each bound to one sink of one runtime."""

    def __init__(self, *, size: int, memory_mb: int, redact: Redact | None = None) -> None:
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self.redact = redact  # hides secrets in what workers send back
        self._bound: dict[str, WorkerProcess] = {}  # sink → its worker, idle or busy
        self._holders: dict[str, int] = {}  # sink → its running versions (a reload overlaps two)
        self._owner: dict[WorkerProcess, str] = {}
        self._idle: dict[WorkerProcess, float] = {}  # bound, not lent out → since when
        self._busy: dict[WorkerProcess, float] = {}  # lent out → since when (monotonic)
        self._spares: list[WorkerProcess] = []  # started, bound to nobody yet
        self._count = 0  # bound + spares + starting
        self._starting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0  # workers started over the pool's life (tests, status)

    def configure(self, *, size: int, memory_mb: int) -> None:
        """New settings: workers with another memory limit are replaced as they are used."""
        self.size = max(1, size)
        self.memory_mb = memory_mb

    # -- spares ---------------------------------------------------------------------------

    def warm(self) -> None:
        """Start a spare worker in the background, if script sinks exist, there is room and
        none is ready."""
        if (
            self._closed
            or not self._holders
            or self._spares
            or self._starting
            or self._count >= self.size
        ):
            return
        self._count += 1
        self._starting += 1
        self._spawn_in_background(self._spawn_spare())

    async def _spawn_spare(self) -> None:
        try:
            worker = await self._spawn()
        except Exception as exc:
            self._starting -= 1
            self._count -= 1
            log.error("could not start a sandbox worker: %s", exc)
            self._wake()
            return
        self._starting -= 1
        if self._closed or not self._holders or worker.memory_mb != self.memory_mb:
            self._count -= 1
            await worker.close()
            return
        self._spares.append(worker)
        self._wake()

    async def _spawn(self) -> WorkerProcess:
        worker = await WorkerProcess.spawn(memory_mb=self.memory_mb, redact=self.redact)
        self.started += 1
        return worker

    def _spawn_in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- lending --------------------------------------------------------------------------

    async def acquire(self, sink: str) -> WorkerProcess:
        """The worker of `sink` (started for it if it has none), or a wait for one."""
        while True:
            if self._closed:
                raise WorkerDied("the sandbox pool is closed")
            worker = self._bound.get(sink)
            if worker is not None:
                if worker in self._busy:  # another delivery of this sink (a test, a dry run)
                    await self._wait(RECHECK)
                    continue
                if worker.alive and worker.memory_mb == self.memory_mb:
                    self._idle.pop(worker, None)
                    self._busy[worker] = time.monotonic()
                    return worker
                self._retire(worker)
            worker = await self._new_worker()
            if worker is None:
                await self._wait(self._grow_in())
                continue
            if self._closed or sink in self._bound:  # closed, or raced by the same sink
                self._count -= 1
                self._spawn_in_background(worker.close())
                continue
            self._bind(sink, worker)
            self._busy[worker] = time.monotonic()
            self.warm()
            return worker

    async def _new_worker(self) -> WorkerProcess | None:
        """A spare, or one started now (making room if needed); None: wait and look again."""
        while self._spares:
            spare = self._spares.pop()
            if spare.alive and spare.memory_mb == self.memory_mb:
                return spare
            self._count -= 1
            self._spawn_in_background(spare.close())
        if self._starting > len(self._waiters):
            return None  # a spare on its way is as good as a new worker, and ready sooner
        if self._count >= self.size and self._idle:
            oldest = min(self._idle, key=self._idle.__getitem__)
            self._retire(oldest)  # its sink will get a fresh worker when it needs one
        if self._count >= self.size and self._grow_in() != 0.0:
            return None
        self._count += 1
        try:
            return await self._spawn()
        except BaseException:
            self._count -= 1
            self._wake()
            raise

    async def _wait(self, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:  # nothing changed: look again (and maybe grow)
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # pass the wake-up on
            raise

    def _grow_in(self) -> float | None:
        """Seconds until the pool may grow past `size` (None: not while things stay as they are)."""
        if self._count >= 2 * self.size:
            return None  # released or retired workers wake us
        if not self._busy or self._count > len(self._busy):
            return RECHECK  # workers on their way or idle: look again once things change
        youngest = max(self._busy.values())
        return max(0.0, youngest + GROW_AFTER - time.monotonic())

    def _bind(self, sink: str, worker: WorkerProcess) -> None:
        self._bound[sink] = worker
        self._owner[worker] = sink

    def release(self, worker: WorkerProcess) -> None:
        """Give a worker back after a request that ended normally; it stays its sink's."""
        self._busy.pop(worker, None)
        if (
            self._closed
            or not worker.alive
            or worker.memory_mb != self.memory_mb
            or not self._owner.get(worker)  # its sink went away meanwhile
            or self._count > self.size  # grown for stuck scripts: shrink back
        ):
            self._retire(worker)
            return
        self._idle[worker] = time.monotonic()
        self._wake()

    def discard(self, worker: WorkerProcess) -> None:
        """A worker that was killed or broke: drop it (its sink gets a fresh one next time)."""
        self._retire(worker)
        self.warm()

    def hold(self, sink: str) -> None:
        """A version of `sink`'s script started: its worker stays until the last one goes.

        A reload starts the new version before the old one stops, so the worker (and what it
        compiled) carries over and the next event runs the new code at once."""
        self._holders[sink] = self._holders.get(sink, 0) + 1
        self.warm()

    def forget(self, sink: str) -> None:
        """A version of `sink` stopped. When none is left (the sink was removed), its worker
        stops, now if idle or when it comes back; with no script sink left, the spare too."""
        left = self._holders.get(sink, 1) - 1
        if left > 0:
            self._holders[sink] = left
            return
        self._holders.pop(sink, None)
        worker = self._bound.pop(sink, None)
        if worker is not None:
            self._owner[worker] = ""
            if worker not in self._busy:
                self._retire(worker)
        if not self._holders:
            while self._spares:
                spare = self._spares.pop()
                self._count -= 1
                self._spawn_in_background(spare.close())

    def _retire(self, worker: WorkerProcess) -> None:
        self._busy.pop(worker, None)
        self._idle.pop(worker, None)
        sink = self._owner.pop(worker, None)
        if sink and self._bound.get(sink) is worker:
            del self._bound[sink]
        self._count -= 1
        self._spawn_in_background(worker.close())
        self._wake()

    # -- status ---------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        return self._count

    def owners(self) -> dict[str, int]:
        """Which sink each live worker serves: sink → pid."""
        return {sink: worker.pid for sink, worker in self._bound.items()}

    def pids(self) -> list[int]:
        """Process ids of the running workers, bound and spare."""
        return sorted(w.pid for w in [*self._owner, *self._spares])

    async def close(self) -> None:
        self._closed = True
        idle = [*self._idle, *self._spares]
        self._idle.clear()
        self._spares.clear()
        for worker in idle:
            self._owner.pop(worker, None)
            self._count -= 1
            await worker.close()
        self._bound = {s: w for s, w in self._bound.items() if w in self._busy}
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
