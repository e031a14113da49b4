"""`knot channel`: Sky event channels (ecis) of a running runtime."""

from __future__ import annotations

import argparse

from .._client import Client
from .._json import JSONObject
from .common import Subparsers, add_command, json_text, print_table

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "channel",
        None,
        "Create, list and delete Sky event channels (ecis).",
        "  knot channel create --owner alice --name phone\n"
        "  knot channel create --allow 'custom.myapp.*' --quiet\n"
        "  knot channel list\n"
        "  knot channel delete ECI\n",
    )
    actions = p.add_subparsers(title="actions", metavar="ACTION")

    c = add_command(
        actions,
        "create",
        _create,
        "Make a channel; events raised on it belong to its owner.",
        "  knot channel create\n  knot channel create --owner alice --deny 'custom.admin.*'\n",
    )
    c.add_argument("--owner", default=None, help="user id the events belong to (default: you)")
    c.add_argument("--name", default="", help="a label for people")
    c.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="PATTERN",
        help="event types the channel takes (repeatable; default '*')",
    )
    c.add_argument(
        "--deny",
        action="append",
        default=None,
        metavar="PATTERN",
        help="event types the channel refuses (repeatable)",
    )
    c.add_argument("--eci", default=None, help="choose the eci instead of a random one")
    c.add_argument("--quiet", "-q", action="store_true", help="print the eci only")
    c.add_argument("--json", action="store_true", help="print the channel as JSON")

    ls = add_command(actions, "list", _list, "List channels.", "  knot channel list\n")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")

    d = add_command(actions, "delete", _delete, "Delete a channel.", "  knot channel delete ECI\n")
    d.add_argument("eci", help="the channel's id (its eci)")


def _create(args: argparse.Namespace) -> int:
    with Client() as client:
        channel = client.create_channel(
            owner=args.owner, name=args.name, allow=args.allow, deny=args.deny, eci=args.eci
        )
        base = client.url
    if args.json:
        print(json_text(channel))
    elif args.quiet:
        print(channel["eci"])
    else:
        _describe(channel, base)
    return 0


def _describe(channel: JSONObject, base: str) -> None:
    eci = channel["eci"]
    owner = channel["owner"]
    policy = channel["policy"]
    print(eci)
    print(f"  owner:  {owner or '(global: only global sinks fire)'}")
    print(f"  allow:  {', '.join(policy['allow'])}")
    if policy["deny"]:
        print(f"  deny:   {', '.join(policy['deny'])}")
    print("  raise events with, for example:")
    print(f"    curl '{base}/sky/event/{eci}/none/hello/greet?name=you'")
    print(
        f"    curl -X POST '{base}/sky/event/{eci}/none?_domain=hello&_type=greet' "
        "-H 'Content-Type: application/json' -d '{\"name\": \"you\"}'"
    )


def _list(args: argparse.Namespace) -> int:
    with Client() as client:
        channels = client.channels()
    if args.json:
        for channel in channels:
            print(json_text(channel))
        return 0
    rows = [
        {
            **c,
            "allow": ", ".join(c["policy"]["allow"]),
            "deny": ", ".join(c["policy"]["deny"]),
        }
        for c in channels
    ]
    print_table(
        rows,
        [
            ("eci", "ECI"),
            ("owner", "OWNER"),
            ("name", "NAME"),
            ("allow", "ALLOW"),
            ("deny", "DENY"),
            ("created", "CREATED"),
        ],
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    with Client() as client:
        client.delete_channel(args.eci)
    print(f"deleted channel {args.eci}")
    return 0
