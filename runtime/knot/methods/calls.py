"""What one method call is: its result, who it acts for, and the small helpers that build its
parts (directives, JSON-RPC failures, params); apart from `service.py`, which runs the calls.
`RemoteMethods` is the seam for calls another node answers (in a cluster each method script
runs on one node, and the others call it there)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._events import Actor, Event
from .._exceptions import MethodFailed
from .._json import JSONObject
from .._jsonrpc import INVALID_PARAMS, encode
from .._jsontext import TooDeep, nests_too_deeply
from ..scriptlib.service import RunUse
from ..sinks import Directive, MethodSink
from .declarations import MethodInfo

__all__ = [
    "CallContext",
    "CallResult",
    "RemoteMethods",
    "directives_of",
    "encode_params",
    "failed",
]


@dataclass(frozen=True, slots=True)
class CallResult:
    """A call's result, and what the method printed and directed on the way."""

    result: Any
    output: tuple[str, ...] = ()
    directives: tuple[JSONObject, ...] = ()


class RemoteMethods(Protocol):
    """Method scripts served by another runtime (a cluster: each script runs on one node)."""

    def elsewhere(self, script: str) -> bool:
        """Whether another node serves `script` now (its calls go there)."""
        ...

    async def invoke(
        self,
        info: MethodInfo,
        params: Any,
        *,
        event: Event | None,
        owner: str,
        actor: Actor | None,
        timeout: float,
    ) -> CallResult: ...


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a call acts for: the event(s) it handles (one per call of a batch), or the caller."""

    events: tuple[Event, ...]
    owner: str
    actor: Actor | None
    sink: str = ""  # the method sink delivering `events` (their emits get derived ids)
    emits: dict[int, int] = field(default_factory=dict)  # per call of a batch
    uses: dict[int, RunUse] = field(default_factory=dict)  # per call: libraries asked
    trace: str = ""  # the traceparent a direct call's emits continue

    def use(self, index: int) -> RunUse:
        found = self.uses.get(index)
        if found is None:
            event = self.events[index] if 0 <= index < len(self.events) else None
            found = self.uses[index] = RunUse(event.id if event is not None else "")
        return found


def directives_of(sink: MethodSink, raw: Sequence[object]) -> tuple[Directive, ...]:
    """The directives a method returned, as the sink's (anything but an object is left out)."""
    return tuple(
        Directive(str(d.get("name", "")), dict(d.get("options") or {}), sink=sink.name)
        for d in raw
        if isinstance(d, dict)
    )


def failed(
    info: MethodInfo, code: int, message: str, data: Any, output: Sequence[str] = ()
) -> MethodFailed:
    return MethodFailed(message, method=info.full_name, code=code, data=data, output=output)


def encode_params(info: MethodInfo, params: Any) -> str:
    if params is not None and not isinstance(params, list | dict):
        raise failed(info, INVALID_PARAMS, "JSON-RPC params are an object or an array.", None)
    try:
        text = encode(params)
    except RecursionError:
        text = ""
    except (TypeError, ValueError) as exc:
        raise failed(info, INVALID_PARAMS, f"The params are not JSON: {exc}.", None) from None
    if not text or nests_too_deeply(params, text):
        raise failed(info, INVALID_PARAMS, f"The params are refused: {TooDeep()}.", None)
    return text
