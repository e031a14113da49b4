"""`knot cluster status`: the nodes sharing this project through NATS, and each sink's lag."""

from __future__ import annotations

import argparse
import json

from .._client import Client
from .common import Subparsers, add_command, print_table

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "cluster",
        _status,
        "Show the nodes of the cluster: address, age, the sinks each holds, lag per sink.",
        "  knot cluster status\n  knot cluster status --json\n",
    )
    p.add_argument(
        "action", nargs="?", choices=["status"], default="status", help="status (the default)"
    )
    p.add_argument("--json", action="store_true", help="the JSON of GET /api/cluster")


def _status(args: argparse.Namespace) -> int:
    with Client() as client:
        status = client.request("GET", "/api/cluster")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    rows = [
        {
            "node": node["id"][:8] + (" *" if node.get("self") else ""),
            "address": node["address"],
            "started": node["started"],
            "sinks": ", ".join(node["sinks"]) or "-",
            "methods": ", ".join(node["methods"]) or "-",
        }
        for node in status["nodes"]
    ]
    print_table(
        rows,
        [
            ("node", "NODE"),
            ("address", "ADDRESS"),
            ("started", "STARTED"),
            ("sinks", "SINKS"),
            ("methods", "METHODS"),
        ],
    )
    lag = status.get("lag", {})
    if lag:
        print()
        print_table(
            [{"sink": s, "lag": n} for s, n in lag.items()], [("sink", "SINK"), ("lag", "LAG")]
        )
    return 0
