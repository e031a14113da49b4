"""From journal to sinks: route each freshly committed event, in journal order, in slices.

The journal hands over whole group commits; the dispatcher routes them to the delivery engine
(and to live listeners) at most half a sink queue at a time, yielding to the loop in between,
so a commit of thousands of events does not overflow every sink's bounded queue at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from .._events import Event
from .delivery import DeliveryEngine
from .hooks import Hooks
from .router import Router

__all__ = ["Dispatcher"]

log = logging.getLogger("knot.events")


class Dispatcher:
    def __init__(self, router: Router, delivery: DeliveryEngine, hooks: Hooks) -> None:
        self.router = router
        self.delivery = delivery
        self.hooks = hooks
        self._unrouted: deque[Event] = deque()
        self._scheduled = False

    @property
    def pending(self) -> int:
        """Events journaled but not routed yet."""
        return len(self._unrouted)

    def on_commit(self, events: list[Event], flags: list[bool]) -> None:
        """Queue freshly journaled events (new ones only) for routing, in journal order."""
        hooks = self.hooks
        if all(flags):
            self._unrouted.extend(events)
            new = events
        else:
            new = [e for e, inserted in zip(events, flags, strict=True) if inserted]
            self._unrouted.extend(new)
        if hooks.journaled_listeners and new:
            hooks.journaled(new)
        if not self._scheduled:
            self._route_some()

    def _route_some(self) -> None:
        """Route at most half a sink queue's worth of events, then let the sinks run.

        Yielding between slices lets fast sinks drain, so only sinks that really fall behind
        drop events.
        """
        self._scheduled = False
        backlog = self._unrouted
        route = self.router.route
        delivery = self.delivery
        trackers = delivery.trackers
        hooks = self.hooks
        info = log.isEnabledFor(logging.INFO)
        for _ in range(min(len(backlog), max(1, delivery.settings.queue_size // 2))):
            event = backlog.popleft()
            names = route(event)
            if trackers:
                tracker = trackers.get(event.id)
                if tracker is not None:
                    tracker.expect(names)
            dropped = delivery.dispatch(event, names)
            if dropped:  # listeners and the log name only the sinks that will get the event
                names = tuple(n for n in names if n not in dropped)
            if info:
                log.info(
                    "%s %s → %s%s",
                    event.type,
                    event.id,
                    ", ".join(names) or "(no sinks)",
                    f" (dropped for {', '.join(dropped)}: queue full)" if dropped else "",
                )
            if hooks.event_listeners:
                hooks.event_routed(event, names)
        if backlog:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._route_some)

    def close(self) -> None:
        """Stop routing: what is left unrouted is still journaled and resumes on restart."""
        self._unrouted.clear()
