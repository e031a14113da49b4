"""The HTTP surface of `knot serve`: the agent API, the /api routes and (later) Sky and JSON-RPC."""

from __future__ import annotations

from .app import create_app, serve

__all__ = ["create_app", "serve"]
