"""`GET /api/cluster`: the nodes sharing this project through NATS (404 on a lone runtime)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._exceptions import NotFound
from .._runtime import Runtime
from ..cluster.part import ClusterPart
from ..cluster.status import cluster_status

__all__ = ["routes"]


async def get_cluster(request: Request) -> Response:
    """On a NATS store: `{"nodes": [{"id", "address", "started", "sinks", "methods", "self"}],
    "lag": {sink: n}, "zone", "head"}` (see [the cluster](../cluster.md)); 404 on a lone
    runtime."""
    runtime: Runtime = request.app.state.runtime
    for part in runtime.parts:
        if isinstance(part, ClusterPart) and part.membership is not None:
            return JSONResponse(await cluster_status(part.membership))
    raise NotFound(
        "This runtime is not part of a cluster: it keeps its own SQLite store (set [store] url "
        'to "nats://..." to share a project between nodes).',
        what="cluster",
    )


routes = [Route("/api/cluster", get_cluster, methods=["GET"])]
