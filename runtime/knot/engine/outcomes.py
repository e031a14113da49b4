"""What happened to an event at its sinks: outcomes, and the reports synchronous callers wait for.

Value types of the delivery engine, apart from it so that observers (hooks) and callers
(Sky's synchronous answer, dry runs) can name them without importing the engine itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .._events import Event
from .._json import JSONObject
from ..sinks.base import DeliveryResult

__all__ = ["DeliveryStatus", "EmitReport", "Outcome", "Tracker"]


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed; given up
    DROPPED = "dropped"  # the sink's queue was full
    REMOVED = "removed"  # the sink went away before delivering it


@dataclass(frozen=True, slots=True)
class Outcome:
    sink: str
    event_id: str
    status: DeliveryStatus
    attempts: int = 0
    error: str = ""
    result: DeliveryResult | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {
            "sink": self.sink,
            "event_id": self.event_id,
            "status": self.status.value,
            "attempts": self.attempts,
        }
        if self.error:
            out["error"] = self.error
        if self.result is not None and self.result.output:
            out["output"] = list(self.result.output)
        return out


@dataclass(frozen=True, slots=True)
class EmitReport:
    """What happened to one event at its sinks, for synchronous callers (Sky, dry runs)."""

    event: Event
    outcomes: Mapping[str, Outcome]
    pending: tuple[str, ...]  # sinks that had not finished when the wait ended
    duplicate: bool = False

    @property
    def id(self) -> str:
        return self.event.id


class Tracker:
    """Collects the outcomes of one event at every sink it was routed to.

    Its waiter waits on one future (resolved True when every outcome is in or the wait is
    released, False when its time is up): a synchronous Sky request makes one per request,
    and a future with a timer handle costs less than an Event under `asyncio.timeout`."""

    __slots__ = ("_done", "expected", "outcomes")

    def __init__(self) -> None:
        self.expected: tuple[str, ...] | None = None
        self.outcomes: dict[str, Outcome] = {}
        self._done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def expect(self, names: tuple[str, ...]) -> None:
        self.expected = names
        self._check()

    def add(self, outcome: Outcome) -> None:
        self.outcomes[outcome.sink] = outcome
        self._check()

    def _check(self) -> None:
        expected = self.expected
        if expected is not None and all(n in self.outcomes for n in expected):
            _resolve(self._done, True)

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(n for n in self.expected or () if n not in self.outcomes)

    def release(self) -> None:
        """Stop waiting now: the waiter answers with what is done (the rest pending)."""
        _resolve(self._done, True)

    async def wait(self, timeout: float) -> bool:
        """Wait for every outcome; False when the timeout came first."""
        done = self._done
        if not done.done():
            timer = asyncio.get_running_loop().call_later(timeout, _resolve, done, False)
            try:
                await done
            finally:
                timer.cancel()
        return done.result()


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
