"""What a method call answers (`CallResult`), and the seam for calls another node answers
(`RemoteMethods`: in a cluster each method script runs on one node, and the others call it
there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .._events import Actor, Event
from .._json import JSONObject
from .declarations import MethodInfo

__all__ = ["CallResult", "RemoteMethods"]


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
