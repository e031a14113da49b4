"""`knot sinks`: the sinks of a running runtime."""

from __future__ import annotations

import argparse
import json

from .._client import Client
from .common import Subparsers, add_command, print_table

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "sinks", _sinks, "List the sinks of the running runtime.", "  knot sinks list\n"
    )
    p.add_argument("action", nargs="?", default="list", choices=["list"])
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _sinks(args: argparse.Namespace) -> int:
    with Client() as client:
        sinks = client.sinks()
    if args.json:
        for sink in sinks:
            print(json.dumps(sink))
        return 0
    print_table(
        sinks,
        [
            ("name", "NAME"),
            ("type", "TYPE"),
            ("events", "EVENTS"),
            ("pending", "PENDING"),
            ("delivered", "DELIVERED"),
            ("failed", "FAILED"),
            ("dropped", "DROPPED"),
            ("problem", "PROBLEM"),
        ],
    )
    return 0
