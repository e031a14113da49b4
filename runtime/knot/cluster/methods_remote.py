"""Method scripts across the cluster: each script is leased to one node, called from any node.

The lease is a claim like a sink's (`m:<script>` in the CLAIMS bucket), and a script's
subscribed methods (its method sinks) are assigned to the same node, so event calls stay
local. A call on any other node (`POST /json-rpc`, `knot call`, `%knot call`) is a NATS request
to the holder's subject `<root>.call.<node>`; the holder runs it on its worker and answers
with the result, the output and directives, or the JSON-RPC error.

Every node loads the script too (its declarations tell which methods exist); only the
holder's worker answers calls. When the holder dies another node takes the lease within
`ack_wait`: the script's in-memory state starts afresh there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from .._events import Actor, Event
from .._exceptions import MethodFailed, NotFound
from .._jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND
from ..methods.declarations import MethodInfo
from ..methods.service import CallResult, Methods
from ._codec import encode_key
from .membership import Membership

__all__ = ["NatsMethods", "script_item"]

log = logging.getLogger("knot.cluster")


def script_item(script: str) -> str:
    """A method script's name among the claims (sinks have no colon in their names)."""
    return f"m:{script}"


class NatsMethods:
    """`Methods.remote` on a clustered runtime: calls go to the node holding the script."""

    def __init__(self, membership: Membership, methods: Methods) -> None:
        self.membership = membership
        self.methods = methods
        self.storage = membership.storage
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Any = None

    def subject(self, node: str) -> str:
        return f"{self.storage.names.root}.call.{encode_key(node)}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

        async def subscribe() -> None:
            self._sub = await self.storage.link.nc.subscribe(
                self.subject(self.membership.node), cb=self._answer
            )

        await self.storage.link.run(subscribe())
        self.methods.remote = self

    async def stop(self) -> None:
        self.methods.remote = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self.storage.link.run(self._sub.unsubscribe())

    # -- the caller's side --------------------------------------------------------------------

    def _holder(self, script: str) -> str | None:
        item = script_item(script)
        if item in self.membership.held:
            return None
        claim = self.membership.claims.get(item)
        return claim.node if claim is not None and claim.node != self.membership.node else None

    def elsewhere(self, script: str) -> bool:
        return self._holder(script) is not None

    async def invoke(
        self,
        info: MethodInfo,
        params: Any,
        *,
        event: Event | None,
        owner: str,
        actor: Actor | None,
        timeout: float,
    ) -> CallResult:
        node = self._holder(info.script) or self.membership.node
        request = {
            "script": info.script,
            "method": info.name,
            "params": params if isinstance(params, str) else json.dumps(params),
            "event": event.id if event is not None else "",
            "owner": owner,
            "actor": actor.to_dict() if actor is not None else None,
            "timeout": timeout,
        }
        nc = self.storage.link.nc
        try:
            reply = await self.storage.link.run(
                nc.request(self.subject(node), json.dumps(request).encode(), timeout=timeout + 1)
            )
        except Exception as exc:
            raise MethodFailed(
                f"The method script {info.script} runs on node {node[:8]}, which did not "
                f"answer ({type(exc).__name__}); another node takes it over within "
                f"{self.membership.ack_wait:g} s if that node is gone.",
                method=info.full_name,
                code=INTERNAL_ERROR,
                data={"reason": "unavailable", "node": node},
            ) from None
        answer = json.loads(reply.data)
        if not answer.get("ok"):
            raise MethodFailed(
                str(answer.get("message") or "The method failed."),
                method=info.full_name,
                code=int(answer.get("code") or INTERNAL_ERROR),
                data=answer.get("data"),
            )
        return CallResult(
            answer.get("result"),
            tuple(str(line) for line in answer.get("output") or ()),
            tuple(d for d in answer.get("directives") or () if isinstance(d, dict)),
        )

    # -- the holder's side (called on the NATS loop, run on the runtime's) -----------------------

    async def _answer(self, msg: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            request = json.loads(msg.data)
            future = asyncio.run_coroutine_threadsafe(self._run(request), loop)
            answer = await asyncio.wrap_future(future)
        except Exception as exc:
            answer = {"ok": False, "code": INTERNAL_ERROR, "message": f"{exc}"}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer, default=str).encode())

    async def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        script, method = str(request["script"]), str(request["method"])
        if self.elsewhere(script):  # the lease moved meanwhile: never pass a call on twice
            return {
                "ok": False,
                "code": INTERNAL_ERROR,
                "message": f"The method script {script} has moved to another node; retry.",
                "data": {"reason": "moved"},
            }
        try:
            info = self.methods.find(f"{script}.{method}")
            event = None
            if request.get("event"):
                store = self.storage
                event = await asyncio.to_thread(store.get_event, str(request["event"]))
            raw_actor = request.get("actor")
            done = await self.methods.invoke(
                info,
                request["params"],
                event=event,
                owner=str(request.get("owner") or ""),
                actor=Actor.from_dict(raw_actor) if isinstance(raw_actor, dict) else None,
                timeout=float(request.get("timeout") or 30.0),
            )
        except NotFound as exc:
            return {"ok": False, "code": METHOD_NOT_FOUND, "message": exc.message}
        except MethodFailed as exc:
            return {"ok": False, "code": exc.code, "message": exc.message, "data": exc.data}
        return {
            "ok": True,
            "result": done.result,
            "output": list(done.output),
            "directives": list(done.directives),
        }
