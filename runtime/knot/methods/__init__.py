"""`knot.methods` for plain Python: declare methods, raise JSON-RPC errors, call methods.

Method scripts (`scripts/methods/<name>.py`) run in the sandbox, where `import knot.methods`
gets a purpose-built twin of this module: the same `method` decorator, `error`, `JSONRPCError`
and `InvalidParams`. Here, in plain Python, the decorator only records the declaration on
the function (`fn.knot_method`) and hands it back unchanged, so the functions of a method
script can be imported and tested as they are. `knot.methods.call(name, params)` calls a
method in the runtime this process uses (the notebook's, one set with `knot.event.use()`, or
the `knot serve` at KNOT_URL / 127.0.0.1:KNOT_API_PORT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from .. import event as _event
from .._exceptions import InvalidInput
from ..sandbox.worker.method_module import (
    DEFAULT_MODE,
    Declaration,
    Declarations,
    InvalidParams,
    JSONRPCError,
    error,
)

__all__ = [
    "Declaration",
    "InvalidParams",
    "JSONRPCError",
    "MethodCaller",
    "call",
    "error",
    "method",
]


F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class MethodCaller(Protocol):
    def call_method(self, method: str, params: Any = None) -> Any: ...


@overload
def method(fn: F) -> F: ...


@overload
def method(
    fn: None = None,
    *,
    events: object = None,
    event_sinks: object = None,
    mode: object = DEFAULT_MODE,
    name: object = None,
    params: object = None,
) -> Callable[[F], F]: ...


def method(
    fn: Callable[..., Any] | None = None,
    *,
    events: object = None,
    event_sinks: object = None,
    mode: object = DEFAULT_MODE,
    name: object = None,
    params: object = None,
) -> Any:
    """Declare a method: `@knot.methods.method` or `@knot.methods.method(events=[...])`.

    The declaration is checked as in the sandbox (TypeError / ValueError for bad arguments)
    and kept as `fn.knot_method`.
    """

    def declare(func: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(func):
            raise TypeError("@knot.methods.method decorates a function")
        collected = Declarations()
        collected.start("")
        collected.add(
            name if name is not None else getattr(func, "__name__", ""),
            func,
            events=events,
            event_sinks=event_sinks,
            mode=mode,
            params=params,
        )
        func.knot_method = collected.close()[0]  # type: ignore[attr-defined]
        return func

    return declare(fn) if fn is not None else declare


def call(name: str, params: Any = None) -> Any:
    """Call `script.method` (or an unambiguous `method`) in the runtime in use; its result."""
    target = _event.current()
    if not isinstance(target, MethodCaller):
        raise InvalidInput(f"{type(target).__name__} cannot call methods; use a runtime.")
    return target.call_method(name, params)
