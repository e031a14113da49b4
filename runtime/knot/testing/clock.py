"""A fake clock for the runtime's delivery backoff: retry tests never wait on the wall clock."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

__all__ = ["FakeClock"]


@dataclass(frozen=True, slots=True)
class _Sleeper:
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FakeClock:
    """Virtual time for delivery backoff: `Runtime(clock=FakeClock())` (`knot_runtime` does).

    With `auto=True` (the default) every backoff returns at once and moves `now` on by its
    length, so three attempts with 5 s and 15 s between them take no time at all. With
    `auto=False` a backoff waits until `advance()` moves `now` past its end: a test can look
    at the runtime between two attempts (`wait_for_sleepers()` first, to know one is waiting).
    `sleeps` lists every backoff asked for, in order. Safe to use from the test's thread while
    the runtime runs on its own (SyncRuntime).
    """

    def __init__(self, *, auto: bool = True, start: float = 0.0) -> None:
        self._auto = auto
        self._now = start
        self.sleeps: list[float] = []
        self._sleepers: list[_Sleeper] = []
        self._changed = threading.Condition()

    @property
    def now(self) -> float:
        """Virtual seconds since the clock started (`start`)."""
        return self._now

    @property
    def auto(self) -> bool:
        return self._auto

    @auto.setter
    def auto(self, value: bool) -> None:
        """Switching to auto releases every waiting sleep, as if enough time passed."""
        self._auto = value
        if value:
            with self._changed:
                latest = max((s.deadline for s in self._sleepers), default=self._now)
            self.advance(max(0.0, latest - self._now))

    @property
    def pending(self) -> list[float]:
        """Seconds left of each sleep still waiting (only with `auto=False`)."""
        with self._changed:
            return sorted(s.deadline - self._now for s in self._sleepers)

    async def sleep(self, seconds: float) -> None:
        """What delivery awaits between attempts (the Clock seam of knot.types)."""
        loop = asyncio.get_running_loop()
        with self._changed:
            self.sleeps.append(seconds)
            deadline = self._now + max(0.0, seconds)
            if self._auto:
                self._now = max(self._now, deadline)
                self._changed.notify_all()
                sleeper = None
            else:
                sleeper = _Sleeper(deadline, loop, loop.create_future())
                self._sleepers.append(sleeper)
                self._changed.notify_all()
        if sleeper is None:
            await asyncio.sleep(0)  # a sleep still lets everything else on the loop run
            return
        try:
            await sleeper.future
        finally:  # cancelled (the sink was removed, the runtime stopped): forget it
            with self._changed:
                if sleeper in self._sleepers:
                    self._sleepers.remove(sleeper)

    def advance(self, seconds: float) -> None:
        """Move virtual time on by `seconds`; every sleep that has ended by then returns."""
        if seconds < 0:
            raise ValueError(f"A clock only moves forward; advance() got {seconds} seconds.")
        with self._changed:
            self._now += seconds
            due = [s for s in self._sleepers if s.deadline <= self._now]
            self._sleepers = [s for s in self._sleepers if s.deadline > self._now]
            self._changed.notify_all()
        for sleeper in due:
            if not sleeper.loop.is_closed():
                sleeper.loop.call_soon_threadsafe(_wake, sleeper.future)

    def wait_for_sleepers(self, count: int = 1, *, timeout: float = 10.0) -> None:
        """Block until `count` sleeps are waiting (`auto=False`): a retry is between attempts.

        Call it from the test's thread while the runtime runs on its own (knot_runtime); in
        an async test on the runtime's own loop, poll `pending` with `await asyncio.sleep(0)`.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._sleepers) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self._sleepers)} backoff sleep(s) waiting after {timeout} s, "
                        f"expected {count}; sleeps so far: {self.sleeps}."
                    )
                self._changed.wait(left)
