"""`knot.event` as sink scripts see it: the event being handled, `emit` and `directive`.

The module is built once per worker; `EventContext` is pointed at each event before the
script runs. Method scripts run several calls at once on threads of one worker: their
`ThreadEventContext` keeps one binding per thread. Accessors return plain JSON values (dicts,
lists, strings), never runtime objects, so nothing a script gets from here leads back into the
worker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from ..types import JSONObject

__all__ = [
    "EmitBudget",
    "EmitLimitReached",
    "EventBinding",
    "EventContext",
    "ThreadEventContext",
    "build_knot_module",
]

EmitFunction = Callable[[str, JSONObject], str]


class EmitLimitReached(RuntimeError):
    """Raised in a script by the emit past its run's `max_emits`."""


class EmitBudget:
    """How many events one run (a sink handling one event, or one method call) may emit.

    Once a run has hit the limit it has failed, even if the script catches the error: a
    `while True: emit(...)` loop must not turn one event into an unbounded burst.
    """

    __slots__ = ("exceeded", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = False

    def take(self) -> None:
        if self.used >= self.limit:
            self.exceeded = True
            raise EmitLimitReached(
                f"knot.event.emit() may be called at most {self.limit} times while handling "
                "one event or call (max_emits)"
            )
        self.used += 1


def _no_emit(event_type: str, payload: JSONObject) -> str:
    raise RuntimeError("knot.event.emit() is only available while a script handles an event")


class EventContext:
    """The event a script is handling, and where its emits and directives go."""

    __slots__ = ("directives", "emit", "event")

    def __init__(self) -> None:
        self.event: JSONObject = {}
        self.emit: EmitFunction = _no_emit
        self.directives: list[JSONObject] = []

    def bind(self, event: JSONObject, emit: EmitFunction) -> None:
        self.event = event
        self.emit = emit
        self.directives = []


class ThreadEventContext(threading.local):
    """An EventContext per thread: each method call sees its own event, emit and directives."""

    # EventContext's own methods: threading.local runs __init__ again in every thread.
    __init__ = EventContext.__init__
    bind = EventContext.bind
    event: JSONObject
    emit: EmitFunction
    directives: list[JSONObject]


class EventBinding(Protocol):
    event: JSONObject
    emit: EmitFunction
    directives: list[JSONObject]


def _empty_space() -> JSONObject:
    return {"id": "", "name": "", "urls": []}


def build_knot_module(ctx: EventBinding) -> ModuleType:
    """The `knot` package for scripts, with `knot.event` bound to `ctx`."""

    def data() -> JSONObject:
        value = ctx.event.get("data")
        return value if isinstance(value, dict) else {}

    def _get(name: str, default: Any, accept: Callable[[Any], bool]) -> Any:
        if not isinstance(name, str):
            raise TypeError("the field name must be a string")
        value = data().get(name, default)
        return value if accept(value) else default

    def get_string(name: str, default: str = "") -> Any:
        return _get(name, default, lambda v: isinstance(v, str))

    def get_int(name: str, default: int = 0) -> Any:
        value = _get(name, default, _is_integral)
        return int(value) if _is_integral(value) else value

    def get_bool(name: str, default: bool = False) -> Any:
        return _get(name, default, lambda v: isinstance(v, bool))

    def get_list(name: str, default: list[Any] | None = None) -> Any:
        return _get(name, [] if default is None else default, lambda v: isinstance(v, list))

    def get_dict(name: str, default: JSONObject | None = None) -> Any:
        return _get(name, {} if default is None else default, lambda v: isinstance(v, dict))

    def event_id() -> str:
        return str(ctx.event.get("id", ""))

    def event_type() -> str:
        return str(ctx.event.get("type", ""))

    def ts() -> str:
        return str(ctx.event.get("ts", ""))

    def space() -> JSONObject:
        raw = ctx.event.get("space")
        out = _empty_space()
        if isinstance(raw, dict):
            out.update({k: raw[k] for k in ("id", "name", "urls") if k in raw})
        return out

    def space_urls() -> list[str]:
        urls = space().get("urls")
        return list(urls) if isinstance(urls, list) else []

    def actor() -> JSONObject:
        raw = ctx.event.get("actor")
        if isinstance(raw, dict):
            return {k: raw.get(k, "") for k in ("id", "username", "kind")}
        return {"id": "", "username": "", "kind": ""}

    def custom() -> JSONObject:
        """The payload of a custom event (Knot's `.custom` scope); {} for system events."""
        return data() if event_type().startswith("custom.") else {}

    def emit(event_type: str, payload: JSONObject | None = None) -> str:
        if not isinstance(event_type, str):
            raise TypeError("knot.event.emit() needs the event type as a string")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise TypeError("knot.event.emit() needs the payload as a dict (a JSON object)")
        return ctx.emit(event_type, payload)

    def directive(name: str, options: JSONObject | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("knot.event.directive() needs a non-empty name")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise TypeError("knot.event.directive() needs the options as a dict")
        try:
            json.dumps(options, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the directive's options are not JSON: {exc}") from None
        ctx.directives.append({"name": name, "options": options})

    event = ModuleType("knot.event")
    for attr, fn in {
        "id": event_id,
        "type": event_type,
        "ts": ts,
        "data": data,
        "get_string": get_string,
        "get_int": get_int,
        "get_bool": get_bool,
        "get_list": get_list,
        "get_dict": get_dict,
        "space": space,
        "space_urls": space_urls,
        "actor": actor,
        "custom": custom,
        "emit": emit,
        "directive": directive,
    }.items():
        setattr(event, attr, fn)
    knot = ModuleType("knot")
    knot.event = event  # type: ignore[attr-defined]
    return knot


def _is_integral(value: object) -> bool:
    """JSON has one number type: 3 and 3.0 both count as integers, 3.5 and True do not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()
