"""The runtime's observers: listeners called after the work they watch, never in its way.

Listeners are how the notebook's live views, `knot events --follow`, and later metrics,
tracing and the dashboard look at the event path. They run inline (on the event loop, right
after an event is routed or a sink finishes with one), so each call is guarded: a listener that
raises is logged once, with its traceback, and then quietly skipped for that failure; routing,
delivery and the other listeners go on. (dramatiq calls its middleware the same way.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._events import Event

if TYPE_CHECKING:
    from .outcomes import Outcome

__all__ = ["EventListener", "Hooks", "OutcomeListener"]

log = logging.getLogger("knot.hooks")

EventListener = Callable[[Event, tuple[str, ...]], None]
"""Called with each routed event and the sinks it went to."""
OutcomeListener = Callable[[Event, "Outcome"], None]
"""Called when a sink finishes with an event (delivered, failed, dropped, given up)."""

_L = TypeVar("_L", bound=Callable[..., Any])


class Hooks:
    """Every listener of one runtime, called through `event_routed` and `outcome`."""

    def __init__(self) -> None:
        self.event_listeners: list[EventListener] = []
        self.outcome_listeners: list[OutcomeListener] = []
        self._reported: set[int] = set()  # listeners whose failure is already in the log

    def on_event(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener(event, sink_names)` for each routed event; returns an unsubscribe."""
        return self._add(self.event_listeners, listener)

    def on_outcome(self, listener: OutcomeListener) -> Callable[[], None]:
        """Call `listener(event, outcome)` when a sink finishes with an event."""
        return self._add(self.outcome_listeners, listener)

    def _add(self, listeners: list[_L], listener: _L) -> Callable[[], None]:
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
            self._reported.discard(id(listener))

        return unsubscribe

    def event_routed(self, event: Event, sinks: tuple[str, ...]) -> None:
        for listener in self.event_listeners:
            try:
                listener(event, sinks)
            except Exception:
                self._report(listener, "an on_event listener")

    def outcome(self, event: Event, outcome: Outcome) -> None:
        for listener in self.outcome_listeners:
            try:
                listener(event, outcome)
            except Exception:
                self._report(listener, "an on_outcome listener")

    def _report(self, listener: object, what: str) -> None:
        if id(listener) in self._reported:
            return
        self._reported.add(id(listener))
        log.exception(
            "%s (%s) raised; it is skipped for this call and will not be reported again",
            what,
            getattr(listener, "__qualname__", repr(listener)),
        )
