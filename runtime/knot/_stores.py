"""Which storage a runtime opens, and how a shared one's events reach the router.

The embedded SQLite store is the default; `[store] url = "nats://..."` opens the NATS
JetStream store of `knot.cluster` instead (the optional extra `knot-runtime[cluster]`).
With SQLite the journal routes what it commits; with a shared journal every node routes every
event of its zone from the store's feed, in the stream's order, whichever node took it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from ._config import Config
from .engine.dispatch import Dispatcher
from .engine.registry import SinkGate
from .engine.storage import SharedStorage, Storage
from .engine.store import Store

__all__ = ["caught_up", "cluster_gate", "fit_to_store", "open_storage", "start_routing"]

log = logging.getLogger("knot.runtime")


def open_storage(config: Config, path: Path) -> Storage:
    """Open the store the settings name (blocking: call it on a worker thread)."""
    if not config.store.url:
        return Store(path, synchronous=config.store.synchronous)
    from .cluster import open_nats_storage

    return open_nats_storage(config, path)


def fit_to_store(config: Config, store: Storage) -> Config:
    """`config` with `delivery.max_payload_bytes` no larger than the store can journal (a
    NATS server's max_payload, which is 1 MiB by default like knot's own limit, minus the
    event's other fields): ingress then refuses a larger event with its usual sentence."""
    if not isinstance(store, SharedStorage):
        return config
    limit, asked = store.payload_limit(), config.delivery.max_payload_bytes
    if limit >= asked:
        return config
    log.info(
        "event payloads up to %d bytes: the NATS server's max_payload bounds them below "
        "delivery.max_payload_bytes (%d); raise max_payload in its configuration for more",
        limit,
        asked,
    )
    return replace(config, delivery=replace(config.delivery, max_payload_bytes=limit))


def start_routing(store: Storage, dispatcher: Dispatcher) -> None:
    """Route a shared store's events from its feed (a local store routes on commit)."""
    if isinstance(store, SharedStorage):
        store.start_feed(
            lambda events: dispatcher.on_commit(events, [True] * len(events)),
            asyncio.get_running_loop(),
        )


async def caught_up(store: Storage, timeout: float = 30.0) -> None:
    """Wait until a shared store's feed has brought back everything this node journaled."""
    if isinstance(store, SharedStorage):
        async with asyncio.timeout(timeout):
            while not store.caught_up():
                await asyncio.sleep(0.002)


def cluster_gate(store: Storage, config: Config) -> SinkGate | None:
    """On a shared store, the node's membership decides which sinks run here."""
    if not isinstance(store, SharedStorage):
        return None
    from .cluster.membership import Membership
    from .cluster.storage import NatsStorage

    assert isinstance(store, NatsStorage)
    return Membership(store, ack_wait=config.store.ack_wait)
