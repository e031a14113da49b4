"""The runtime's observers: listeners called after the work they watch, never in its way.

Listeners are how the notebook's live views, `knot events --follow`, the metrics of
`GET /metrics` and the dashboard look at the event path. They run inline (on the event loop,
right after the thing they watch), so each call is guarded: a listener that raises is logged
once, with its traceback, and then quietly skipped for that failure; routing, delivery and the
other listeners go on. (dramatiq calls its middleware the same way.)

Each hook point is a list of listeners, and the engine checks the list before building
anything for it, so a point nobody listens to costs one truth test. The points:

    on_event      an event was routed (with the sinks it went to)
    on_outcome    a sink is done with an event (delivered, failed, dropped, removed)
    on_journaled  a group commit made events durable (the new ones)
    on_attempt    delivery attempts were recorded (an `attempts.AttemptBatch` of one sink)
    on_reload     a script or knot.toml reload was applied or refused (its result)
    on_call       a method call finished (method, outcome, seconds)
    on_request    the HTTP API answered a request (route template, status, seconds)

`tracer` is the one slot that is not a plain observer: tracing (`knot.observe.tracing`) gives
each event its trace context when it is made, and derives the context a delivery attempt
hands on (to webhooks, to child events), so the engine asks it, when one is set. Spans are
not made on the event path: the tracer builds them afterwards from what the hooks report.
None (tracing off) costs a truth test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._events import Event

if TYPE_CHECKING:
    from .attempts import AttemptBatch
    from .outcomes import Outcome

__all__ = [
    "AttemptListener",
    "CallListener",
    "EventListener",
    "Hooks",
    "JournaledListener",
    "OutcomeListener",
    "ReloadListener",
    "RequestListener",
    "Tracer",
]

log = logging.getLogger("knot.hooks")

EventListener = Callable[[Event, tuple[str, ...]], None]
"""Called with each routed event and the sinks it went to."""
OutcomeListener = Callable[[Event, "Outcome"], None]
"""Called when a sink finishes with an event (delivered, failed, dropped, given up)."""
JournaledListener = Callable[[list[Event]], None]
"""Called with the events a group commit made durable (new ones only, in journal order)."""
AttemptListener = Callable[["AttemptBatch"], None]
"""Called with a sink's delivery attempts as they are handed to the journal: a run of quick
successes timed together, and records of the rest (failures, retries, output, statuses)."""
ReloadListener = Callable[[str], None]
"""Called with the result of each reload: `loaded`, `reloaded`, `removed` or `rejected`."""
CallListener = Callable[[str, str, float], None]
"""Called with a finished method call's full name, outcome (`ok` or `error`) and seconds."""
RequestListener = Callable[[str, int, float], None]
"""Called with an answered HTTP request's route template, status and seconds."""

_L = TypeVar("_L", bound=Callable[..., Any])


class Tracer(Protocol):
    """Distributed tracing of the event path (OpenTelemetry when the extra is installed).

    Every method is called on the event loop and must be cheap: the ingest one runs for each
    event. What the tracer needs besides (commits, attempts) it takes from the hooks."""

    def ingest(self, trace: str) -> str:
        """The `traceparent` a new event carries: its ingest span's, a child of `trace` (the
        context it was raised under, "" for none), or `trace` itself when sampled out."""
        ...

    def delivery(self, event: Event, sink: str, attempt: int) -> str:
        """The `traceparent` of `sink`'s attempt number `attempt` on `event`: what a webhook
        sends, and what the events and method calls of that attempt continue."""
        ...

    def child(self, parent: str) -> str:
        """The `traceparent` of a new span under `parent` ("" for a new trace), for work
        starting now (a method call); `parent` itself when sampled out."""
        ...

    def resumed(self, events: list[Event]) -> None:
        """Events a sink resumes from the journal at start-up (committed before this tracer
        saw them: their attempts are traced too)."""
        ...

    def called(
        self, method: str, span: str, parent: str, started: float, ended: float, error: str
    ) -> None:
        """A method call ran from `started` to `ended` (epoch seconds) as `span` (made by
        `child(parent)`); `error` is why it failed ("" when it did not)."""
        ...


class Hooks:
    """Every listener of one runtime, and its tracer (None: tracing is off)."""

    def __init__(self) -> None:
        self.event_listeners: list[EventListener] = []
        self.outcome_listeners: list[OutcomeListener] = []
        self.journaled_listeners: list[JournaledListener] = []
        self.attempt_listeners: list[AttemptListener] = []
        self.reload_listeners: list[ReloadListener] = []
        self.call_listeners: list[CallListener] = []
        self.request_listeners: list[RequestListener] = []
        self.tracer: Tracer | None = None
        self._reported: set[int] = set()  # listeners whose failure is already in the log

    def on_event(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener(event, sink_names)` for each routed event; returns an unsubscribe."""
        return self._add(self.event_listeners, listener)

    def on_outcome(self, listener: OutcomeListener) -> Callable[[], None]:
        """Call `listener(event, outcome)` when a sink finishes with an event."""
        return self._add(self.outcome_listeners, listener)

    def on_journaled(self, listener: JournaledListener) -> Callable[[], None]:
        """Call `listener(events)` after each group commit with the events it made durable."""
        return self._add(self.journaled_listeners, listener)

    def on_attempt(self, listener: AttemptListener) -> Callable[[], None]:
        """Call `listener(batch)` with each sink's attempts as they are recorded."""
        return self._add(self.attempt_listeners, listener)

    def on_reload(self, listener: ReloadListener) -> Callable[[], None]:
        """Call `listener(result)` for each script or knot.toml reload."""
        return self._add(self.reload_listeners, listener)

    def on_call(self, listener: CallListener) -> Callable[[], None]:
        """Call `listener(method, outcome, seconds)` when a method call finishes."""
        return self._add(self.call_listeners, listener)

    def on_request(self, listener: RequestListener) -> Callable[[], None]:
        """Call `listener(route, status, seconds)` when the HTTP API has answered."""
        return self._add(self.request_listeners, listener)

    def _add(self, listeners: list[_L], listener: _L) -> Callable[[], None]:
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
            self._reported.discard(id(listener))

        return unsubscribe

    # -- calling them (each guarded) ---------------------------------------------------------

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

    def journaled(self, events: list[Event]) -> None:
        for listener in self.journaled_listeners:
            try:
                listener(events)
            except Exception:
                self._report(listener, "an on_journaled listener")

    def attempted(self, batch: AttemptBatch) -> None:
        for listener in self.attempt_listeners:
            try:
                listener(batch)
            except Exception:
                self._report(listener, "an on_attempt listener")

    def reloaded(self, result: str) -> None:
        for listener in self.reload_listeners:
            try:
                listener(result)
            except Exception:
                self._report(listener, "an on_reload listener")

    def called(self, method: str, outcome: str, seconds: float) -> None:
        for listener in self.call_listeners:
            try:
                listener(method, outcome, seconds)
            except Exception:
                self._report(listener, "an on_call listener")

    def answered(self, route: str, status: int, seconds: float) -> None:
        for listener in self.request_listeners:
            try:
                listener(route, status, seconds)
            except Exception:
                self._report(listener, "an on_request listener")

    def report(self, what: object, name: str) -> None:
        """Log a failure of `what` (the tracer, say) once; the caller goes on without it."""
        self._report(what, name)

    def _report(self, listener: object, what: str) -> None:
        if id(listener) in self._reported:
            return
        self._reported.add(id(listener))
        log.exception(
            "%s (%s) raised; it is skipped for this call and will not be reported again",
            what,
            getattr(listener, "__qualname__", repr(listener)),
        )
