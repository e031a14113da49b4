"""`GET /api/cluster` and `knot cluster status`: the nodes, what each holds, each sink's lag."""

from __future__ import annotations

from .._json import JSONObject
from .membership import Membership

__all__ = ["cluster_status"]


async def cluster_status(membership: Membership) -> JSONObject:
    """`{"nodes": [{"id", "address", "started", "sinks", "methods"}], "lag": {sink: n}}`.

    Live nodes only (heard from within `ack_wait`), this one first. A sink's lag is how many
    journal positions its cursor is behind the head (events of every type: an upper bound on
    what it still has to handle).
    """
    storage = membership.storage
    live = membership.live()
    mine = {k: v for k, v in membership.info().items() if k != "items"}
    nodes: list[JSONObject] = [{**mine, "self": True}]
    for node_id, (info, _seen) in sorted(membership.nodes.items()):
        if node_id != membership.node and node_id in live:
            nodes.append({**info, "self": False})

    async def read() -> tuple[int, dict[str, int]]:
        info = await storage.link.js.stream_info(storage.names.events)
        return info.state.last_seq, await storage._read_cursors()

    head, cursors = await storage.link.run(read())
    return {
        "nodes": nodes,
        "lag": {sink: max(0, head - seq) for sink, seq in sorted(cursors.items())},
        "zone": storage.names.zone,
        "head": head,
    }
