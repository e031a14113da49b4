"""How a method call is seen from outside: the `on_call` hook (metrics) and its trace span.

A call's span is made by the tracer later, from what is reported here when the call ends; only
its context exists while it runs (current in the call's task, so what the call raises continues
it). A tracer that fails is reported once and the call goes on untraced.
"""

from __future__ import annotations

from .._events import Event
from .._tracecontext import CURRENT_TRACE
from ..types import MethodsHost

__all__ = ["CallReport"]


class CallReport:
    def __init__(self, host: MethodsHost) -> None:
        self.host = host

    def begin(self, event: Event | None, sink: str) -> tuple[str, str]:
        """(parent, span): the context a call starting now continues (the delivery attempt's
        for a subscribed call, else the caller's) and its own ("" when not traced)."""
        hooks = self.host.hooks
        tracer = hooks.tracer
        if tracer is None:
            return "", ""
        parent = self.host.delivery_trace(event, sink) if event is not None else CURRENT_TRACE.get()
        try:
            return parent, tracer.child(parent)
        except Exception:
            hooks.report(tracer, "the tracer")
            return parent, ""

    def end(
        self,
        method: str,
        started: float,
        ended: float,
        error: str = "",
        trace: tuple[str, str] = ("", ""),
    ) -> None:
        """A call of `method` ran from `started` to `ended` (epoch seconds); `error` is why it
        failed; `trace` is what `begin` gave it."""
        hooks = self.host.hooks
        if hooks.call_listeners:
            hooks.called(method, "error" if error else "ok", ended - started)
        parent, span = trace
        tracer = hooks.tracer
        if tracer is None or not span or span == parent:  # untraced, or sampled out
            return
        try:
            tracer.called(method, span, parent, started, ended, error)
        except Exception:
            hooks.report(tracer, "the tracer")

    def one_of_batch(
        self, method: str, sink: str, event: Event, started: float, ended: float, error: str = ""
    ) -> None:
        """A subscribed call that ran in a batch (reported when the batch answered)."""
        trace = self.begin(event, sink) if self.host.hooks.tracer is not None else ("", "")
        self.end(method, started, ended, error, trace)
