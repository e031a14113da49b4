"""The cluster as a runtime part: membership and sink ownership, and shared records applied.

It does nothing on a runtime with its own SQLite store. On a NATS store it starts the node's
membership (the registry's gate, made with the store), and applies what other nodes change in
the shared records: sinks made through the API, users and channels, each within a watch's
round trip (well under the promised second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from .._sinkspec import SinkOrigin, SinkSpec
from ..engine.registry import KV_SINKS
from ..methods.service import Methods
from ..scripts.reload import Reloader
from ..types import PartHost
from .membership import Membership
from .methods_remote import NatsMethods
from .scripts_sync import ScriptSync
from .storage import NatsStorage

__all__ = ["ClusterPart"]

log = logging.getLogger("knot.cluster")
KV_USERS = "users"
KV_CHANNELS = "channels"


class _Loads(Protocol):
    def load(self, records: dict[str, Any]) -> Any: ...


class ClusterPart:
    """Runs the node's membership; `membership` is None on a runtime that is not clustered."""

    def __init__(self) -> None:
        self.membership: Membership | None = None
        self.scripts: ScriptSync | None = None
        self.remote: NatsMethods | None = None
        self._host: PartHost | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self, host: PartHost) -> None:
        gate = host.registry.gate
        if not isinstance(gate, Membership):
            return
        self._host = host
        self._loop = asyncio.get_running_loop()
        self.membership = gate
        gate.storage.on_record_change(self._record_changed)
        methods = getattr(host, "methods", None)
        if isinstance(methods, Methods):  # each method script on one node, called from any
            gate.method_scripts = methods.scripts
            self.remote = NatsMethods(gate, methods)
            await self.remote.start()
        await gate.start(host.registry, host.registry.delivery)
        for part in getattr(host, "parts", ()):  # saved scripts, cluster-wide
            if isinstance(part, Reloader):
                self.scripts = ScriptSync(gate.storage, part, host)
                await self.scripts.start()
        self._task = asyncio.create_task(self._apply_changes(), name="knot-cluster-records")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.scripts is not None:
            await self.scripts.stop()
        if self.membership is not None:
            await self.membership.stop()
        if self.remote is not None:
            await self.remote.stop()

    def _record_changed(self, scope: str, key: str) -> None:  # on the NATS thread
        if scope in (KV_SINKS, KV_USERS, KV_CHANNELS) and self._loop is not None:
            self._changed.add(scope)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def _apply_changes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            changed, self._changed = self._changed, set()
            try:
                if KV_SINKS in changed:
                    await self._sync_sinks()
                for scope in (KV_USERS, KV_CHANNELS):
                    if scope in changed:
                        self._reload(scope)
            except Exception as exc:
                log.error("a change made on another node could not be applied: %s", exc)

    async def _sync_sinks(self) -> None:
        """Make this node's API sinks what the shared records say."""
        host = self._host
        assert host is not None
        registry = host.registry
        stored = host.kv_all(KV_SINKS)
        for name in registry.names(SinkOrigin.API):
            if name not in stored:
                await registry.remove(name, reason="removed on another node")
        for name, raw in stored.items():
            spec = SinkSpec.from_dict(raw, origin=SinkOrigin.API)
            if name not in registry or registry.spec(name) != spec:
                await registry.install(spec)

    def _reload(self, scope: str) -> None:
        target: _Loads | None = getattr(self._host, scope, None)
        if target is not None and self._host is not None:
            target.load(self._host.kv_all(scope))


def storage_of(gate: Any) -> NatsStorage | None:
    return gate.storage if isinstance(gate, Membership) else None
