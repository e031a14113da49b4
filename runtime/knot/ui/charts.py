"""The overview's last hour: counters sampled every few seconds into minute buckets, drawn as
small inline SVG charts on the server (no chart library, no script).

The sampler reads what the engine counts anyway (the journal's head, each sink worker's
delivered / failed / dropped), so the event path pays nothing for it; a sink removed takes
its counts with it, which would read as a negative step and is counted as none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from markupsafe import Markup

__all__ = ["MINUTES", "Counters", "Sampler", "sparkline"]

MINUTES = 60
SAMPLE_SECONDS = 5.0
RATE_SECONDS = 10.0
SERIES = ("events", "delivered", "failed", "dropped")


@dataclass(frozen=True, slots=True)
class Counters:
    events: int
    delivered: int
    failed: int
    dropped: int


@dataclass
class Sampler:
    """Per-minute totals of the last MINUTES minutes, from `read` called every few seconds."""

    read: Callable[[], Counters | None]
    clock: Callable[[], float] = time.time
    buckets: deque[tuple[int, dict[str, int]]] = field(
        default_factory=lambda: deque(maxlen=MINUTES)
    )
    last: Counters | None = None
    _seen: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Count what happened since the last sample into the current minute (the timer calls
        this; so does each overview, which then shows the counts up to now)."""
        now = self.clock()
        counters = self.read()
        if counters is None:
            return
        previous, self.last = self.last, counters
        self._seen.append((now, counters.events))
        if previous is None:
            return
        minute = int(now // 60)
        if not self.buckets or self.buckets[-1][0] != minute:
            self.buckets.append((minute, dict.fromkeys(SERIES, 0)))
        bucket = self.buckets[-1][1]
        for name in SERIES:
            bucket[name] += max(0, getattr(counters, name) - getattr(previous, name))

    @property
    def rate(self) -> float:
        """Events per second over the last RATE_SECONDS or so (0.0 before two samples)."""
        if len(self._seen) < 2:
            return 0.0
        now, events = self._seen[-1]
        then, before = next(
            ((t, e) for t, e in reversed(self._seen) if now - t >= RATE_SECONDS), self._seen[0]
        )
        return max(0, events - before) / (now - then) if now > then else 0.0

    def series(self, name: str) -> list[int]:
        """MINUTES values, oldest first; minutes without a sample count zero."""
        now_minute = int(self.clock() // 60)
        found = {minute: values[name] for minute, values in self.buckets}
        return [found.get(now_minute - MINUTES + 1 + i, 0) for i in range(MINUTES)]

    def total(self, name: str) -> int:
        return sum(self.series(name))

    def start(self) -> None:
        """Sample from now on (on the running loop), until `stop`."""
        if self._task is None or self._task.done():
            self.sample()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="knot-ui-sampler")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self.sample()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def sparkline(values: list[int], *, label: str, width: int = 240, height: int = 48) -> Markup:
    """An SVG bar chart of `values` (one bar each), with a text alternative for screen readers."""
    peak = max(values) if values else 0
    step = width / max(1, len(values))
    bars = []
    for i, value in enumerate(values):
        if value <= 0:
            continue
        h = max(1.0, (value / peak) * (height - 2))
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(1.0, step - 1):.1f}" '
            f'height="{h:.1f}"><title>{value}</title></rect>'
        )
    total = sum(values)
    text = f"{label}: {total} in the last hour, at most {peak} in one minute"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{Markup.escape(text)}" preserveAspectRatio="none">'
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" class="axis"/>'
        f"{''.join(bars)}</svg>"
    )
