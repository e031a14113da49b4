"""`knot.event` for plain Python and notebooks: raise events in the runtime in use.

`knot.event.emit(type, payload)` goes to the runtime this process uses (the notebook
extension's embedded runtime, or one set with `use()`), else over HTTP to the `knot serve`
at KNOT_URL / 127.0.0.1:KNOT_API_PORT. Scripts running inside the sandbox get their own
`knot.event`, with the event being handled; this module is its plain-Python twin.
"""

from __future__ import annotations

from typing import Protocol

from ._client import Client
from ._json import JSONObject

__all__ = ["Emitter", "current", "emit", "use"]


class Emitter(Protocol):
    def emit(self, event_type: str, payload: JSONObject | None = None) -> str: ...


_target: Emitter | None = None


def use(target: Emitter | None) -> None:
    """Send `emit` to `target` (a SyncRuntime or a Client); None goes back to the default."""
    global _target
    _target = target


def current() -> Emitter:
    global _target
    if _target is None:
        _target = Client()
    return _target


def emit(event_type: str, payload: JSONObject | None = None) -> str:
    """Raise a custom event; returns its id once the runtime has journaled it."""
    return current().emit(event_type, payload)
