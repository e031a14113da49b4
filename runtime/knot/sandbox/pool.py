"""A few sandbox workers shared by every script sink of a runtime.

The delivery engine runs one delivery per sink at a time, so a sink needs a worker only while
it delivers: `WorkerPool` lends workers out (one per core by default), preferring one that has
the sink's script compiled already. A killed or dead worker is replaced in the background, so
a warm spare is usually ready. One pool per runtime, created by its first script sink and
closed by its last (`acquire_shared_pool` / `release_shared_pool`).

Scripts stuck in a loop hold their workers until `scripts.timeout`; with every worker held
like that, an unrelated sink would wait just as long. So when every worker has been busy for
GROW_AFTER seconds and a sink is waiting, the pool starts one more, up to twice its size; the
extra workers stop again as they come back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from .process import WorkerDied, WorkerProcess

__all__ = ["WorkerPool", "acquire_shared_pool", "release_shared_pool", "shared_pool"]

log = logging.getLogger("knot.sandbox")

GROW_AFTER = 0.5  # seconds every worker must have been busy before the pool grows past size
RECHECK = 0.05  # seconds between looks while workers are starting


class WorkerPool:
    """Up to `size` workers shared by every script sink of one runtime."""

    def __init__(self, *, size: int, memory_mb: int) -> None:
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self._idle: list[WorkerProcess] = []
        self._busy: dict[WorkerProcess, float] = {}  # → when it was lent out (monotonic)
        self._count = 0  # idle + busy + starting
        self._starting = 0  # spares on their way (see warm)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0  # workers started over the pool's life (tests, status)

    def configure(self, *, size: int, memory_mb: int) -> None:
        """New settings: idle workers with another memory limit are replaced as they are used."""
        self.size = max(1, size)
        self.memory_mb = memory_mb

    def warm(self) -> None:
        """Start a spare worker in the background, if there is room for one."""
        if self._closed or self._count >= self.size or self._idle:
            return
        self._count += 1
        self._starting += 1
        task = asyncio.create_task(self._spawn_spare())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        if self._closed:
            self._count -= 1
            await worker.close()
            return
        self._idle.append(worker)
        self._wake()

    async def _spawn(self) -> WorkerProcess:
        worker = await WorkerProcess.spawn(memory_mb=self.memory_mb)
        self.started += 1
        return worker

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def acquire(self, script: str = "") -> WorkerProcess:
        """An idle worker (preferring one that has `script` compiled), a new one, or a wait."""
        while True:
            if self._closed:
                raise WorkerDied("the sandbox pool is closed")
            while self._idle:
                pick = next((w for w in self._idle if script in w.loaded), self._idle[-1])
                self._idle.remove(pick)
                if pick.alive and pick.memory_mb == self.memory_mb:
                    self._busy[pick] = time.monotonic()
                    return pick
                self._retire(pick)
            # A spare on its way is as good as a new worker, and ready sooner.
            spare_coming = self._starting > len(self._waiters)
            grow_in = None if spare_coming else self._grow_in()
            if (self._count < self.size and not spare_coming) or grow_in == 0.0:
                self._count += 1
                try:
                    worker = await self._spawn()
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
                self._busy[worker] = time.monotonic()
                return worker
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(grow_in):
                    await waiter
            except TimeoutError:  # every worker is still busy: look again, and grow
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
            return RECHECK  # workers on their way: look again once they have started
        youngest = max(self._busy.values())
        return max(0.0, youngest + GROW_AFTER - time.monotonic())

    def release(self, worker: WorkerProcess) -> None:
        """Give a worker back after a request that ended normally."""
        self._busy.pop(worker, None)
        extra = self._count > self.size and not self._waiters
        if self._closed or not worker.alive or worker.memory_mb != self.memory_mb or extra:
            self._retire(worker)
            return
        self._idle.append(worker)
        self._wake()

    def discard(self, worker: WorkerProcess) -> None:
        """A worker that was killed or broke: drop it and start a replacement."""
        self._retire(worker)
        self.warm()

    def _retire(self, worker: WorkerProcess) -> None:
        self._busy.pop(worker, None)
        self._count -= 1
        task = asyncio.create_task(worker.close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._wake()

    @property
    def workers(self) -> int:
        return self._count

    def pids(self) -> list[int]:
        """Process ids of the running workers, idle and busy."""
        return sorted(w.pid for w in [*self._idle, *self._busy])

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            self._count -= 1
            await worker.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


# -- one pool per runtime -----------------------------------------------------------------

_shared: dict[int, tuple[WorkerPool, int]] = {}


def shared_pool(owner: object) -> WorkerPool | None:
    """The pool `owner` uses now, if any."""
    entry = _shared.get(id(owner))
    return entry[0] if entry else None


def acquire_shared_pool(owner: object, *, size: int, memory_mb: int) -> WorkerPool:
    """The pool of `owner` (a runtime), created on first use; counted per user."""
    key = id(owner)
    entry = _shared.get(key)
    if entry is None:
        pool = WorkerPool(size=size, memory_mb=memory_mb)
        _shared[key] = (pool, 1)
        pool.warm()
        return pool
    pool, users = entry
    pool.configure(size=size, memory_mb=memory_mb)
    _shared[key] = (pool, users + 1)
    return pool


async def release_shared_pool(owner: object) -> None:
    """One user is done; the last one closes the pool and its workers."""
    key = id(owner)
    entry = _shared.get(key)
    if entry is None:
        return
    pool, users = entry
    if users > 1:
        _shared[key] = (pool, users - 1)
        return
    del _shared[key]
    await pool.close()
