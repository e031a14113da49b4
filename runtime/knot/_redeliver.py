"""Re-delivery: one journaled event handed to one sink again, through the normal delivery path.

Kept apart so that `_runtime.py` stays the wiring. The dashboard's retry and replay buttons,
`POST /api/events/{id}/redeliver`, `knot redeliver` and `knot replay --apply` all come here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._audit import AuditEntry, AuditKind
from ._events import Event
from ._exceptions import InvalidInput, NotFound
from .engine.delivery import DeliveryEngine
from .engine.outcomes import Outcome
from .engine.registry import SinkRegistry

__all__ = ["Redelivery"]


class Redelivery:
    """Mixed into Runtime, which provides the rest."""

    if TYPE_CHECKING:  # what the host provides (declared for the type checker only)

        @property
        def delivery(self) -> DeliveryEngine: ...

        @property
        def registry(self) -> SinkRegistry: ...

        def _check_running(self) -> None: ...

        def record_audit(self, entry: AuditEntry) -> None: ...

        async def get_event(self, event_id: str) -> Event | None: ...

    async def redeliver(self, event_id: str, sink: str, *, by: str = "") -> Outcome:
        """Deliver the journaled event `event_id` to `sink` once more; return when it was
        delivered or given up (its Outcome: `status`, `attempts`, `error`).

        The event goes behind what the sink has queued and takes the path every event takes
        (in order, the usual attempts and backoff, an audit entry when given up, every attempt
        in its history), whether the sink had delivered it, given up on it, dropped it or
        never took it. A sink owned by a user gets only that user's events (NotFound for an
        unknown event or sink, InvalidInput for another user's event). `by` names who asked,
        for the audit entry that records the request.
        """
        self._check_running()
        registry = self.registry
        if sink not in registry and registry.problem(sink):
            first = registry.problem(sink).splitlines()[0]
            raise InvalidInput(
                f"The sink {sink} does not run, so nothing can be delivered to it: {first}"
            )
        spec = registry.spec(sink)  # NotFound: no such sink
        event = await self.get_event(event_id)
        if event is None:
            raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
        if spec.owner and event.owner != spec.owner:
            raise InvalidInput(
                f"The sink {sink} belongs to {spec.owner!r} and gets only their events; event "
                f"{event_id} is {'global' if not event.owner else f'of {event.owner!r}'}."
            )
        who = f" by {by}" if by else ""
        self.record_audit(
            AuditEntry.new(
                AuditKind.REDELIVERED,
                f"Event {event.id} ({event.type}) was queued for the sink {sink} again{who}.",
                sink=sink,
                event_id=event.id,
            )
        )
        outcome: Outcome = await self.delivery.redeliver(event, sink)
        return outcome
