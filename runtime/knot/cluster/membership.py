"""Who serves which sink: nodes' heartbeats, one claim per sink, hand-overs and take-overs.

Each node puts a heartbeat in the NODES bucket every `ack_wait / 4` seconds and watches the
NODES and CLAIMS buckets. A node is live while its heartbeats keep arriving (judged by when
this node saw them, so clocks need not agree). Every node computes the same assignment from
the same view (rendezvous hashing, capped at an even share) and acts only on its own part:

- a free sink assigned to it: claim it (KV create: one winner), read its cursor, serve it;
- a sink it holds but assigned elsewhere to a live node: stop it, commit its cursor, delete
  the claim (the other node claims it at once): a hand-over, as on SIGTERM;
- a sink held by a node not heard from for `ack_wait`: take the claim over (KV update on the
  revision it saw: one winner) and resume after the stored cursor (SIGKILL fail-over);
- a node that cannot renew its heartbeat for `ack_wait / 2` stops all its sinks itself, before
  anyone may take them over: a node cut off from NATS never delivers alongside its successor.

Why claims and not one JetStream consumer per sink with max_ack_pending = 1 (measured: see
benchmarks/RESULTS.md): the engine keeps its own ordered queues, retries, drops and give-ups
on both backends, a sink's throughput is not one fetch + ack round trip per event (~5k/s with
nats-py here), and a node pulls nothing for the sinks it does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._events import now_rfc3339
from .._sinkspec import SinkOrigin, SinkSpec
from ..engine.delivery import DeliveryEngine
from ..engine.registry import SinkRegistry
from ._codec import decode_key, encode_key
from .storage import NatsStorage

__all__ = ["SHARED_ORIGINS", "Membership", "assign"]

log = logging.getLogger("knot.cluster")
# Sinks defined the same on every node (the API's records, knot.toml, the scripts folder)
# run on one node at a time; a method's sink runs where its script does (that script's lease,
# claimed as `m:<script>`); an in-process sink exists only where it was made.
SHARED_ORIGINS = frozenset(
    {SinkOrigin.API, SinkOrigin.CONFIG, SinkOrigin.SCRIPT, SinkOrigin.METHOD}
)
SCRIPT_MARK = "m:"
ROUND = 0.2  # seconds between reconciliations when nothing changes
HAND_OVER_GRACE = 1.0  # seconds the event in flight gets to finish before a hand-over


@dataclass
class _Claim:
    node: str
    revision: int


def assign(
    sinks: Iterable[str],
    nodes: Iterable[str],
    can: Callable[[str, str], bool] | None = None,
) -> dict[str, str]:
    """Each sink's node: rendezvous hashing, no node over an even share (ceil), and only a
    node that can serve it (`can(node, sink)`: it defines the sink too)."""
    names, members = sorted(sinks), sorted(nodes)
    if not members:
        return {}
    cap = math.ceil(len(names) / len(members))
    load = dict.fromkeys(members, 0)
    out: dict[str, str] = {}
    for name in names:
        ranked = sorted(members, key=lambda n: _weight(n, name), reverse=True)
        able = [n for n in ranked if can is None or can(n, name)]
        for node in able:
            if load[node] < cap:
                out[name] = node
                load[node] += 1
                break
        else:
            if able:  # every able node is full: the least loaded of them takes it
                node = min(able, key=lambda n: load[n])
                out[name] = node
                load[node] += 1
    return out


def _weight(node: str, sink: str) -> bytes:
    return hashlib.blake2b(f"{node}/{sink}".encode(), digest_size=8).digest()


class Membership:
    """This node's part in the cluster; the registry's `SinkGate`."""

    def __init__(self, storage: NatsStorage, *, ack_wait: float) -> None:
        self.storage = storage
        self.node = storage.node_id
        self.ack_wait = ack_wait
        self.beat = min(1.0, ack_wait / 4)
        self.address = ""
        self.started = now_rfc3339()
        self.held: set[str] = set()
        self.nodes: dict[str, tuple[dict[str, Any], float]] = {}  # id → (heartbeat, seen at)
        self.claims: dict[str, _Claim] = {}
        self._revisions: dict[str, int] = {}  # newest claim revision seen per sink
        self.last_ok = time.monotonic()
        self.fenced = False
        self._registry: SinkRegistry | None = None
        self._delivery: DeliveryEngine | None = None
        self._new: set[str] = set()  # parked before start: may need a first cursor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchers: list[Any] = []
        self._following: set[asyncio.Future[None]] = set()
        self._beating: Any = None
        self.method_scripts: Callable[[], list[str]] = list  # set by the cluster part
        self._items: list[str] = []  # the sinks and scripts this node defines
        self._node_items: dict[str, frozenset[str]] = {}  # ... and each other node
        self._cut_off: set[str] = set()  # sinks the fence stopped, until taken again
        self._noticed: dict[str, float] = {}  # when a claim of each node was first seen

    # -- the registry's gate --------------------------------------------------------------------

    def holds(self, spec: SinkSpec) -> bool:
        return spec.origin not in SHARED_ORIGINS or spec.name in self.held

    def parked(self, spec: SinkSpec) -> None:
        if self._delivery is None:
            self._new.add(spec.name)
        else:
            self._first_cursor(spec.name)
        self._poke()

    def holder(self, spec: SinkSpec) -> str:
        if spec.origin not in SHARED_ORIGINS or spec.name in self.held:
            return self.address or self.node[:8]
        claim = self.claims.get(spec.name)
        if claim is None:
            return ""
        seen = self.nodes.get(claim.node)
        return str(seen[0].get("address") or claim.node[:8]) if seen else claim.node[:8]

    def _first_cursor(self, name: str) -> None:
        """A sink defined for the first time starts at the journal's head, wherever it runs."""
        assert self._delivery is not None
        if self.storage.cursor(name) is None:
            self._delivery.journal.set_cursor(name, self._delivery.last_routed)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, registry: SinkRegistry, delivery: DeliveryEngine) -> None:
        self._registry, self._delivery = registry, delivery
        self.storage.cursor_gate = self._may_write_cursor
        self._loop = asyncio.get_running_loop()
        for name in sorted(self._new):
            self._first_cursor(name)
        self._new.clear()
        link = self.storage.link
        await link.run(self._watch())
        await link.run(self._heartbeat())
        self._beating = link.submit(self._heartbeats())
        self._task = asyncio.create_task(self._run(), name="knot-cluster")

    async def stop(self) -> None:
        """Hand every sink over at once (SIGTERM): stop, commit cursors, delete claims."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

        async def hand_over(name: str) -> None:
            claim = self.claims.get(name)
            try:
                await self._hand_over(name, claim.revision if claim else None)
            except Exception as exc:
                log.warning("could not hand %s over: %s", name, exc)

        # All at once; with the claims this node won but had not started serving yet (a
        # take-over cut short by the stop), so none is left behind to wait for ack_wait.
        mine = {n for n, claim in self.claims.items() if claim.node == self.node}
        await asyncio.gather(*(hand_over(name) for name in sorted(self.held | mine)))
        if self._beating is not None:
            self._beating.cancel()
        link = self.storage.link
        with contextlib.suppress(Exception):
            await link.run(self._leave())

    async def _leave(self) -> None:
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.stop()
        kv = await self.storage.link.js.key_value(self.storage.names.nodes)
        await kv.delete(encode_key(self.node))

    # -- on the NATS loop: heartbeats and watches ----------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "id": self.node,
            "address": self.address,
            "started": self.started,
            "sinks": sorted(n for n in self.held if not n.startswith(SCRIPT_MARK)),
            "methods": sorted(n[2:] for n in self.held if n.startswith(SCRIPT_MARK)),
            # What this node could serve: nothing is assigned to a node that lacks it.
            "items": sorted(self._items),
        }

    async def _heartbeat(self) -> None:
        kv = await self.storage.link.js.key_value(self.storage.names.nodes)
        await kv.put(encode_key(self.node), json.dumps(self.info()).encode())
        self.last_ok = time.monotonic()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.beat)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._heartbeat(), self.beat * 2)

    async def _watch(self) -> None:
        js = self.storage.link.js
        names = self.storage.names
        for bucket, apply in ((names.nodes, self._node_seen), (names.claims, self._claim_seen)):
            kv = await js.key_value(bucket)
            watcher = await kv.watchall()
            self._watchers.append(watcher)
            while (entry := await watcher.updates(timeout=10)) is not None:  # type: ignore[no-untyped-call]
                apply(entry)
            task = asyncio.ensure_future(self._follow(watcher, apply))
            self._following.add(task)
            task.add_done_callback(self._following.discard)

    async def _follow(self, watcher: Any, apply: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for entry in watcher:
                if entry is not None:
                    apply(entry)
                    self._poke()

    def _node_seen(self, entry: Any) -> None:
        node = decode_key(entry.key)
        if entry.operation is not None or not entry.value:
            self.nodes.pop(node, None)  # it left in good order
        else:
            info = json.loads(entry.value)
            items = info.pop("items", None)
            if isinstance(items, list):
                self._node_items[node] = frozenset(items)
            self.nodes[node] = (info, time.monotonic())

    def _claim_seen(self, entry: Any) -> None:
        sink = decode_key(entry.key)
        if entry.revision <= self._revisions.get(sink, 0):
            return
        self._revisions[sink] = entry.revision
        if entry.operation is not None or not entry.value:
            self.claims.pop(sink, None)
        else:
            node = json.loads(entry.value)["node"]
            self.claims[sink] = _Claim(node, entry.revision)
            self._noticed.setdefault(node, time.monotonic())

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    # -- on the runtime's loop: reconciling ----------------------------------------------------

    def _may_write_cursor(self, sink: str) -> bool:
        """A cursor held back while this node served the sink must not be written once it
        is cut off, or after another node took the sink: it would move that node's back."""
        if sink in self.held:
            return not self.fenced
        if sink in self._cut_off:
            return False  # stopped by the fence: whoever serves it next owns its cursor
        claim = self.claims.get(sink)
        return claim is None or claim.node == self.node

    def _can(self, node: str, item: str) -> bool:
        if node == self.node:
            return True
        items = self._node_items.get(node)
        return items is None or item in items

    def live(self) -> set[str]:
        """Nodes heard from within `ack_wait`. A node known only by its claims counts as
        heard from when this node first saw one of them: its heartbeat and its claims come
        through different watches, so a claim may arrive first; and a node found holding
        claims at start-up may have died a moment ago."""
        now = time.monotonic()
        alive = {n for n, (_info, seen) in self.nodes.items() if now - seen <= self.ack_wait}
        alive |= {
            n
            for n, noticed in self._noticed.items()
            if n not in self.nodes and now - noticed <= self.ack_wait
        }
        return alive | {self.node}

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ROUND):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: %s", exc)

    async def _reconcile(self) -> None:
        registry = self._registry
        assert registry is not None
        if time.monotonic() - self.last_ok > self.ack_wait / 2:
            if not self.fenced:
                log.error(
                    "no heartbeat reached NATS for %.1f s: stopping this node's %d sinks "
                    "before another node takes them over",
                    self.ack_wait / 2,
                    len(self.held),
                )
            self.fenced = True
            for name in sorted(self.held):
                self.held.discard(name)
                self._cut_off.add(name)
                with contextlib.suppress(Exception):
                    await registry.release(name)  # (a script's lease: nothing to stop)
            return
        self.fenced = False
        sinks = [n for n in registry.names() if registry.spec(n).origin in SHARED_ORIGINS]
        scripts = [SCRIPT_MARK + s for s in self.method_scripts()]
        live = self.live()
        plain = [n for n in sinks if registry.spec(n).origin is not SinkOrigin.METHOD]
        self._items = [*plain, *scripts]
        wanted = assign(plain + scripts, live, self._can)
        for name in sinks:  # a method's sink goes where its script goes
            spec = registry.spec(name)
            if spec.origin is SinkOrigin.METHOD:
                wanted[name] = wanted.get(SCRIPT_MARK + str(spec.options.get("script")), "")
        shared = sinks + scripts
        for name in shared:
            claim = self.claims.get(name)
            mine = wanted.get(name) == self.node
            if claim is None:
                if mine:
                    await self._take(name, None)
            elif claim.node == self.node:
                if name not in self.held:
                    # Ours in an earlier life of this node, or before it was cut off: renew
                    # it on the revision seen (a stale view fails here and serves nothing).
                    await self._take(name, claim.revision)
                elif not mine and wanted.get(name) in self.live():
                    await self._hand_over(name, claim.revision)
            elif mine and claim.node not in self.live():  # now: serving takes a while
                log.warning("node %s is silent: taking over sink %s", claim.node[:8], name)
                await self._take(name, claim.revision)
        for name in sorted(self.held):
            claim = self.claims.get(name)
            if name not in shared:
                self.held.discard(name)  # removed: the registry stopped it
            elif claim is None or claim.node != self.node:
                self.held.discard(name)  # another node holds it now
                if not name.startswith(SCRIPT_MARK):
                    await registry.release(name)

    async def _take(self, name: str, revision: int | None) -> None:
        body = json.dumps({"node": self.node, "at": now_rfc3339()}).encode()

        async def cas() -> int | None:
            kv = await self.storage.link.js.key_value(self.storage.names.claims)
            try:
                if revision is None:
                    return await kv.create(encode_key(name), body)
                return await kv.update(encode_key(name), body, last=revision)
            except Exception:
                pass  # another node won, or this node's view of the claim is behind
            with contextlib.suppress(Exception):  # see the claim as it is, for the next round
                entry = await kv.get(encode_key(name))
                self._revisions.pop(name, None)  # (the view may hold this very revision)
                self._claim_seen(entry)
            return None

        won = await self.storage.link.run(cas())
        if won is None:
            return
        self._revisions[name] = max(won, self._revisions.get(name, 0))
        self.claims[name] = _Claim(self.node, won)
        await self._serve(name)

    async def _serve(self, name: str) -> None:
        assert self._registry is not None
        if name.startswith(SCRIPT_MARK):
            self.held.add(name)
            log.info("serving method script %s", name[len(SCRIPT_MARK) :])
            return
        cursor = await self.storage.link.run(self.storage._read_cursor(name))
        self._cut_off.discard(name)
        self.held.add(name)
        try:
            started = await self._registry.claim(name, cursor)
        except BaseException:
            # Not serving it (NATS stopped answering while its backlog was read): the claim
            # stays this node's, and the next round starts it again instead of taking the
            # sink for served and leaving it idle for good.
            self.held.discard(name)
            raise
        if started:
            log.info("serving sink %s (after event %s)", name, cursor)

    async def _hand_over(self, name: str, revision: int | None) -> None:
        assert self._registry is not None
        self.held.discard(name)
        if not name.startswith(SCRIPT_MARK):
            # The event in flight may finish (bounded): a planned hand-over repeats nothing.
            await self._registry.release(name, grace=HAND_OVER_GRACE)
            await asyncio.to_thread(self.storage.flush_cursors)  # the next holder reads it

        async def delete() -> None:
            kv = await self.storage.link.js.key_value(self.storage.names.claims)
            await kv.delete(encode_key(name), last=revision)

        await self.storage.link.run(delete())
        # Only if it is still this node's: the next holder's claim may have come through the
        # watch already (it claims as soon as it sees the delete), and must not be forgotten.
        claim = self.claims.get(name)
        if claim is not None and claim.node == self.node:
            del self.claims[name]
        log.info("handed sink %s over", name)
