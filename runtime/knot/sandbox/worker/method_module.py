"""`knot.methods` and Scriptling's `runtime.jsonrpc` as method scripts see them (in the worker).

A method script declares its methods while it loads (its top level runs once, in its worker):

    import knot.methods

    @knot.methods.method(events=["custom.deploy.*"], event_sinks=["deploy_params"])
    def record(params): ...

    import scriptling.runtime as runtime
    runtime.jsonrpc.method("count", "deploys.count")   # Scriptling's form: "library.function"

Each declaration becomes data (`Declaration`) that the runtime checks (patterns, names) and
routes by. A method answers with an error of its choosing by raising or returning
`knot.methods.error(code, message, data)` (`runtime.jsonrpc.error` is the same);
`knot.methods.InvalidParams(message)` is -32602.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

from ..._json import JSONObject
from ..._jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RpcError, error_object
from .plain import exact_int, exact_str, plain_json

__all__ = [
    "DEFAULT_MODE",
    "MODES",
    "Declaration",
    "Declarations",
    "InvalidParams",
    "JSONRPCError",
    "bind_params",
    "build_method_modules",
    "error",
    "resolve_handler",
    "timed_out",
]

MODES = ("serial", "concurrent")
DEFAULT_MODE = "serial"


class JSONRPCError(RpcError):
    """Raise (or return) this from a method to answer with this JSON-RPC error.

    The framing's RpcError, with what a script hands it checked and copied first."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        # Exact copies (see plain.py): the worker encodes these after the method returned.
        code = exact_int(code, "a JSON-RPC error code")
        message = exact_str(message, "a JSON-RPC error message")
        if data is not None:
            data = plain_json(data, "a JSON-RPC error's data")
        super().__init__(code, message, data)


class InvalidParams(JSONRPCError):
    """-32602: the params do not fit the method."""

    def __init__(self, message: str = "Invalid params", data: Any = None) -> None:
        super().__init__(INVALID_PARAMS, message, data)


def error(code: int, message: str, data: Any = None) -> JSONRPCError:
    return JSONRPCError(code, message, data)


@dataclass
class Declaration:
    """One declared method, as the script said it (checked further by the runtime)."""

    name: str
    handler: Callable[..., Any] | str
    events: tuple[str, ...]
    event_sinks: tuple[str, ...]
    mode: str
    params: tuple[str, ...] | None
    notification: bool
    line: int

    def to_dict(self) -> JSONObject:
        return {
            "name": self.name,
            "events": list(self.events),
            "event_sinks": list(self.event_sinks),
            "mode": self.mode,
            "params": list(self.params) if self.params is not None else None,
            "notification": self.notification,
            "line": self.line,
        }


def _names(value: object, what: str) -> tuple[str, ...]:
    """A list of strings, or one comma-separated string (as in `# events:` headers)."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = exact_str(value, what)
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if isinstance(value, list | tuple):
        names = plain_json(value, what)
        if all(type(v) is str for v in names):
            return tuple(v.strip() for v in names if v.strip())
    raise TypeError(f"{what} must be a list of strings (or one comma-separated string)")


def _params(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _names(value, "params")
    if len(set(names)) != len(names):
        raise ValueError("params names a parameter twice")
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"params: {name!r} is not a parameter name")
    return names


class Declarations:
    """The methods a script declares while it loads; closed once its top level has run."""

    def __init__(self) -> None:
        self.filename = ""
        self.items: list[Declaration] = []
        self.open = False

    def start(self, filename: str) -> None:
        self.filename = filename
        self.items = []
        self.open = True

    def close(self) -> list[Declaration]:
        self.open = False
        return self.items

    def _line(self) -> int:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.filename:
                return frame.f_lineno
            frame = frame.f_back
        return 0

    def add(
        self,
        name: object,
        handler: Callable[..., Any] | str,
        *,
        events: object,
        event_sinks: object,
        mode: object,
        params: object,
        notification: bool = False,
    ) -> None:
        if not self.open:
            raise RuntimeError(
                "methods are declared while the script loads (at its top level), not later"
            )
        if not isinstance(name, str) or not exact_str(name, "a method's name").strip():
            raise TypeError("a method needs a name (a non-empty string)")
        name = exact_str(name, "a method's name")
        if isinstance(mode, str):
            mode = exact_str(mode, "mode")
        if mode not in MODES:
            raise ValueError(f"mode must be 'serial' or 'concurrent', not {mode!r}")
        self.items.append(
            Declaration(
                name=name.strip(),
                handler=handler,
                events=_names(events, "events"),
                event_sinks=_names(event_sinks, "event_sinks"),
                mode=str(mode),
                params=_params(params),
                notification=notification,
                line=self._line(),
            )
        )


def build_method_modules(declarations: Declarations) -> dict[str, ModuleType]:
    """`knot.methods`, `scriptling` and `scriptling.runtime` (with `jsonrpc`) for scripts."""

    def method(
        fn: Callable[..., Any] | None = None,
        *,
        events: object = None,
        event_sinks: object = None,
        mode: object = DEFAULT_MODE,
        name: object = None,
        params: object = None,
    ) -> Any:
        """Declare a method: `@knot.methods.method` or `@knot.methods.method(events=[...])`."""

        def declare(func: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(func):
                raise TypeError("@knot.methods.method decorates a function")
            method_name = name if name is not None else getattr(func, "__name__", "")
            if method_name == "<lambda>":
                raise TypeError("give a lambda method a name: method(fn, name='...')")
            declarations.add(
                method_name,
                func,
                events=events,
                event_sinks=event_sinks,
                mode=mode,
                params=params,
            )
            return func

        if fn is not None:
            return declare(fn)
        return declare

    def jsonrpc_method(
        name: object,
        handler: Callable[..., Any] | str,
        *,
        events: object = None,
        event_sinks: object = None,
        mode: object = DEFAULT_MODE,
        params: object = None,
    ) -> None:
        """Scriptling's form: `runtime.jsonrpc.method("name", "library.function")`."""
        if not (callable(handler) or isinstance(handler, str)):
            raise TypeError("the handler is a function or a 'library.function' string")
        declarations.add(
            name, handler, events=events, event_sinks=event_sinks, mode=mode, params=params
        )

    def jsonrpc_notification(name: object, handler: Callable[..., Any] | str) -> None:
        """A method whose answer is always null (its return value is ignored)."""
        if not (callable(handler) or isinstance(handler, str)):
            raise TypeError("the handler is a function or a 'library.function' string")
        declarations.add(
            name,
            handler,
            events=None,
            event_sinks=None,
            mode="concurrent",
            params=None,
            notification=True,
        )

    methods = ModuleType("knot.methods")
    for attr, value in {
        "method": method,
        "error": error,
        "JSONRPCError": JSONRPCError,
        "InvalidParams": InvalidParams,
    }.items():
        setattr(methods, attr, value)
    jsonrpc = ModuleType("scriptling.runtime.jsonrpc")
    for attr, value in {
        "method": jsonrpc_method,
        "notification": jsonrpc_notification,
        "error": error,
        "JSONRPCError": JSONRPCError,
    }.items():
        setattr(jsonrpc, attr, value)
    runtime = ModuleType("scriptling.runtime")
    runtime.jsonrpc = jsonrpc  # type: ignore[attr-defined]
    scriptling = ModuleType("scriptling")
    scriptling.runtime = runtime  # type: ignore[attr-defined]
    return {"knot.methods": methods, "scriptling": scriptling, "scriptling.runtime": runtime}


def resolve_handler(
    handler: Callable[..., Any] | str, namespace: dict[str, Any]
) -> Callable[..., Any]:
    """A declared handler as a function: a `"library.function"` string names a function of the
    script itself (a method script is its own library)."""
    if not isinstance(handler, str):
        return handler
    target = exact_str(handler, "the handler").rsplit(".", 1)[-1]
    found = namespace.get(target)
    if not callable(found) or target.startswith("_"):
        raise NameError(f"the handler {handler!r} names no function {target!r} of this script")
    return found  # type: ignore[no-any-return]


def bind_params(method: str, names: Sequence[str] | None, params: Any) -> Any:
    """The params a method's function gets: as sent, or by name when the method declared them.

    Declared params accept an array (by position) or an object (by name) with exactly those
    names; anything else is InvalidParams (-32602).
    """
    if names is None:
        return params
    expected = {"params": list(names)}
    listed = ", ".join(names) or "none"
    if isinstance(params, list):
        if len(params) != len(names):
            raise InvalidParams(
                f"{method} takes {len(names)} params ({listed}); got {len(params)}", expected
            )
        return dict(zip(names, params, strict=True))
    if isinstance(params, dict):
        missing = [n for n in names if n not in params]
        extra = sorted(k for k in params if k not in names)
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if extra:
                parts.append("unknown " + ", ".join(extra))
            raise InvalidParams(f"{method} takes params ({listed}): {'; '.join(parts)}", expected)
        return params
    if params is None and not names:
        return {}
    raise InvalidParams(f"{method} takes params ({listed}) as an array or an object", expected)


def timed_out(method: str, timeout: float) -> JSONObject:
    """The JSON-RPC error of a call stopped at its time limit (the worker's and the runtime's)."""
    return error_object(
        INTERNAL_ERROR,
        f"The method {method} ran longer than {timeout:g} s (methods.timeout) and was stopped.",
        {"reason": "timeout", "timeout": timeout},
    )
