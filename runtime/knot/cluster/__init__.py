"""The cluster: several `knot serve` nodes sharing one project through NATS JetStream.

`open_nats_storage` opens the engine's storage on JetStream (`[store] url = "nats://..."`);
the cluster part (membership, sink ownership, shared state) runs beside it. nats-py is an
optional dependency (`pip install 'knot-runtime[cluster]'`), imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path

from .._config import Config
from .storage import NatsStorage

__all__ = ["NatsStorage", "open_nats_storage"]


def open_nats_storage(config: Config, path: Path) -> NatsStorage:
    """Connect to the NATS servers in `config.store.url` and open the zone's streams."""
    settings = config.store
    storage = NatsStorage(
        [u.strip() for u in settings.url.split(",") if u.strip()],
        zone=config.zone,
        path=path,
        prefix=settings.stream_prefix,
        replicas=settings.replicas,
        dedup_window=settings.dedup_window,
    )
    storage.open()
    return storage
