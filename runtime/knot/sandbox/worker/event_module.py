"""`knot.event` as sink scripts see it: the event being handled, `emit` and `directive`.

The module is built once per worker; `EventContext` is pointed at each event before the
script runs. Method scripts run several calls at once on threads of one worker: their
`ThreadEventContext` keeps one binding per thread. Accessors return plain JSON values (dicts,
lists, strings), never runtime objects, so nothing a script gets from here leads back into the
worker. Besides `emit`, a binding holds `ask`: the run's other requests to the runtime
(`requests`, `knot.kv`, `knot.secrets`; see `http_module.py` and `kv_module.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from ..._json import JSONObject, compact
from .plain import check_text, exact_str, plain_json

__all__ = [
    "DEFAULT_LIMITS",
    "LIMIT_SETTINGS",
    "AskFunction",
    "EventBinding",
    "EventContext",
    "RunBudget",
    "RunLimitReached",
    "RunLimits",
    "RuntimeRefused",
    "ThreadEventContext",
    "build_knot_module",
    "over_limit_text",
]

EmitFunction = Callable[[str, str], str]
"""Sends one emit to the runtime: (event type, payload as JSON text) → the new event's id."""

AskFunction = Callable[[str, JSONObject, str], Any]
"""Sends one request to the runtime for the run: (method, params, JSON text spliced in as
the member `payload`, or "") → its result; RuntimeRefused when the runtime refuses it."""

LIMIT_SETTINGS = (
    "max_emits",
    "max_emit_bytes",
    "max_directives",
    "max_directive_bytes",
    "http_max_requests",
)


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What one run (a sink handling one event, or one method call) may hand the runtime."""

    max_emits: int = 1000
    max_emit_bytes: int = 4 * 1024 * 1024  # JSON of every payload emitted, together
    max_directives: int = 100
    max_directive_bytes: int = 1024 * 1024
    http_max_requests: int = 100
    http_max_bytes: int = 1024 * 1024  # not a budget: a request body past it is refused

    @classmethod
    def from_params(cls, params: JSONObject) -> RunLimits:
        """The limits a `run` or `call` request names (the defaults for those it does not)."""
        names = (*LIMIT_SETTINGS, "http_max_bytes")
        given = {name: int(params[name]) for name in names if name in params}
        return cls(**given)


class RuntimeRefused(ValueError):
    """The runtime answered one of the worker's requests with an error (`code`, `data`)."""

    def __init__(self, message: str, code: int = 0, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data

    @classmethod
    def from_error(cls, error: Any) -> RuntimeRefused:
        if not isinstance(error, dict):
            return cls("the runtime refused")
        return cls(
            str(error.get("message") or "the runtime refused"),
            error.get("code") or 0,
            error.get("data"),
        )


class RunLimitReached(RuntimeError):
    """Raised in a script by the emit or directive that goes past one of its run's limits."""

    def __init__(self, setting: str, limit: int, what: str) -> None:
        super().__init__(f"{what} while handling one event or call ({setting})")
        self.setting = setting
        self.limit = limit


class RunBudget:
    """Counts what one run hands the runtime, against its RunLimits.

    Once a run has gone past a limit it has failed, even if the script catches the error: a
    `while True: emit(...)` loop must not turn one event into an unbounded burst.
    """

    __slots__ = (
        "directive_bytes",
        "directives",
        "emit_bytes",
        "emits",
        "exceeded",
        "limits",
        "requests",
    )

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.emits = self.emit_bytes = self.directives = self.directive_bytes = 0
        self.requests = 0
        self.exceeded: RunLimitReached | None = None

    def take_request(self) -> None:
        limit = self.limits.http_max_requests
        if self.requests >= limit:
            self._fail(
                "http_max_requests", limit, f"requests may make at most {limit} HTTP requests"
            )
        self.requests += 1

    def take_emit(self, size: int) -> None:
        limits = self.limits
        if self.emits >= limits.max_emits:
            self._fail(
                "max_emits",
                limits.max_emits,
                f"knot.event.emit() may be called at most {limits.max_emits} times",
            )
        if self.emit_bytes + size > limits.max_emit_bytes:
            self._fail(
                "max_emit_bytes",
                limits.max_emit_bytes,
                f"the events emitted may hold at most {limits.max_emit_bytes} bytes of JSON",
            )
        self.emits += 1
        self.emit_bytes += size

    def take_directive(self, size: int) -> None:
        limits = self.limits
        if self.directives >= limits.max_directives:
            self._fail(
                "max_directives",
                limits.max_directives,
                f"knot.event.directive() may be called at most {limits.max_directives} times",
            )
        if self.directive_bytes + size > limits.max_directive_bytes:
            self._fail(
                "max_directive_bytes",
                limits.max_directive_bytes,
                f"directives may hold at most {limits.max_directive_bytes} bytes of JSON",
            )
        self.directives += 1
        self.directive_bytes += size

    def _fail(self, setting: str, limit: int, what: str) -> None:
        if self.exceeded is None:
            self.exceeded = RunLimitReached(setting, limit, what)
        raise RunLimitReached(setting, limit, what)


def over_limit_text(setting: str, limit: int) -> str:
    """What a run that went past `setting` tried, for a sentence: "tried to emit more than ..."."""
    return {
        "max_emits": f"tried to emit more than {limit} events",
        "max_emit_bytes": f"tried to emit more than {limit} bytes of events",
        "max_directives": f"tried to add more than {limit} directives",
        "max_directive_bytes": f"tried to add more than {limit} bytes of directives",
        "http_max_requests": f"tried to make more than {limit} HTTP requests",
    }.get(setting, f"went past {setting}")


def _no_emit(event_type: str, payload: str) -> str:
    raise RuntimeError("knot.event.emit() is only available while a script handles an event")


def no_ask(method: str, params: JSONObject, raw: str) -> Any:
    raise RuntimeError(
        "requests, knot.kv and knot.secrets are only available while a script handles an "
        "event or a call"
    )


DEFAULT_LIMITS = RunLimits()
_UNLIMITED = RunLimits(0, 0, 0, 0, 0)  # nothing may be handed over outside a run


class EventContext:
    """The event a script is handling, where its emits and directives go, and their budget."""

    __slots__ = ("ask", "budget", "directives", "emit", "event")

    def __init__(self) -> None:
        self.event: JSONObject = {}
        self.emit: EmitFunction = _no_emit
        self.ask: AskFunction = no_ask
        self.directives: list[JSONObject] = []
        self.budget = RunBudget(_UNLIMITED)

    def bind(
        self,
        event: JSONObject,
        emit: EmitFunction,
        budget: RunBudget | None = None,
        ask: AskFunction = no_ask,
    ) -> None:
        self.event = event
        self.emit = emit
        self.ask = ask
        self.directives = []
        self.budget = budget if budget is not None else RunBudget(_UNLIMITED)


class ThreadEventContext(threading.local):
    """An EventContext per thread: each method call sees its own event, emit and directives."""

    # EventContext's own methods: threading.local runs __init__ again in every thread.
    __init__ = EventContext.__init__
    bind = EventContext.bind
    event: JSONObject
    emit: EmitFunction
    ask: AskFunction
    directives: list[JSONObject]
    budget: RunBudget


class EventBinding(Protocol):
    event: JSONObject
    emit: EmitFunction
    ask: AskFunction
    directives: list[JSONObject]
    budget: RunBudget


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
        event_type = check_text(exact_str(event_type, "knot.event.emit()'s event type"), "it")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise TypeError("knot.event.emit() needs the payload as a dict (a JSON object)")
        encoded = _encode(plain_json(payload, "the emitted payload"))
        ctx.budget.take_emit(_size(encoded))
        return ctx.emit(event_type, encoded)

    def directive(name: str, options: JSONObject | None = None) -> None:
        name = check_text(exact_str(name, "knot.event.directive()'s name"), "the name")
        if not name:
            raise TypeError("knot.event.directive() needs a non-empty name")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise TypeError("knot.event.directive() needs the options as a dict")
        try:
            plain = plain_json(options, "the directive")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the directive's options are not JSON: {exc}") from None
        ctx.budget.take_directive(_size(name) + _size(_encode(plain)))
        ctx.directives.append({"name": name, "options": plain})

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


def _encode(value: Any) -> str:
    return compact(value)


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _is_integral(value: object) -> bool:
    """JSON has one number type: 3 and 3.0 both count as integers, 3.5 and True do not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()
