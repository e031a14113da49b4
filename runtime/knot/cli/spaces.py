"""`knot space create|start|stop|delete|list|logs`: the local spaces of a running runtime."""

from __future__ import annotations

import argparse

from .._client import Client
from .._json import JSONObject
from .common import Subparsers, add_command, count, json_text, print_table, seconds

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    group = add_command(
        sub,
        "space",
        None,
        "Create, start, stop and delete local spaces (each change raises a space.* event).",
        "  knot space create web --cmd 'python -m http.server 8000' \\\n"
        "      --url http://127.0.0.1:8000 --health http://127.0.0.1:8000/ --start\n"
        "  knot space list\n"
        "  knot space stop web\n",
    )
    actions = group.add_subparsers(title="actions", metavar="ACTION")

    p = add_command(
        actions,
        "create",
        _create,
        "Create a space (raises space.created).",
        "  knot space create db --cmd 'redis-server --port 6400' \\\n"
        "      --health 'redis-cli -p 6400 ping' --interval 5\n"
        "  knot space create docs --url https://docs.example.com --template-id t1\n",
    )
    p.add_argument("name", help="the space's name (letters, digits, '-', '_')")
    add_create_options(p)
    p.add_argument("--json", action="store_true", help="print the space as JSON")

    for action, text in (
        ("start", "Start a space (raises space.started)."),
        ("stop", "Stop a space: SIGTERM, then SIGKILL after the grace (raises space.stopped)."),
        ("delete", "Delete a space, stopping it first (raises space.deleted)."),
    ):
        p = add_command(actions, action, _act, text, f"  knot space {action} web\n")
        p.add_argument("name", help="the space's name or id")
        p.add_argument("--json", action="store_true", help="print the space as JSON")
        p.set_defaults(action=action)

    p = add_command(actions, "list", _list, "List the spaces.", "  knot space list --json\n")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = add_command(
        actions, "logs", _logs, "Show what a space's process printed.", "  knot space logs web\n"
    )
    p.add_argument("name", help="the space's name or id")
    p.add_argument("-n", type=count(1), default=50, help="how many lines (default 50)")


def add_create_options(p: argparse.ArgumentParser) -> None:
    """The options of `knot space create` (and `%knot space create`) after the name."""
    p.add_argument("--cmd", default="", help="shell command the space runs (default: none)")
    p.add_argument("--url", action="append", default=[], help="a URL of the space (repeatable)")
    p.add_argument("--health", default="", help="health check: a loopback URL or a command")
    p.add_argument("--interval", type=seconds, default=None, help="seconds between checks (10)")
    p.add_argument("--timeout", type=seconds, default=None, help="seconds per check (5)")
    p.add_argument(
        "--threshold", type=count(1), default=1, help="failures in a row that make it unhealthy (1)"
    )
    p.add_argument("--template-id", default="", help="carried in space.created")
    p.add_argument("--startup-script-id", default="", help="carried in space.created")
    p.add_argument(
        "--on-restart",
        choices=["start", "stop"],
        default="start",
        help="when the runtime restarts, start it again if it was running, or leave it stopped",
    )
    p.add_argument("--start", action="store_true", help="start it right away")


def create_fields(args: argparse.Namespace) -> JSONObject:
    """The space definition those options give (without `start`)."""
    fields: JSONObject = {
        "name": args.name,
        "cmd": args.cmd,
        "urls": args.url,
        "health": args.health,
        "threshold": args.threshold,
        "template_id": args.template_id,
        "startup_script_id": args.startup_script_id,
        "on_restart": args.on_restart,
    }
    if args.interval is not None:
        fields["interval"] = args.interval
    if args.timeout is not None:
        fields["timeout"] = args.timeout
    return fields


def _create(args: argparse.Namespace) -> int:
    with Client() as client:
        space = client.create_space({**create_fields(args), "start": args.start})
    _print_space(space, as_json=args.json)
    return 0


def _act(args: argparse.Namespace) -> int:
    with Client() as client:
        if args.action == "delete":
            space = client.delete_space(args.name)
        else:
            space = client.space_action(args.name, args.action)
    if args.action == "delete" and not args.json:
        print(f"{space['name']}  deleted")
        return 0
    _print_space(space, as_json=args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    with Client() as client:
        spaces = client.spaces()
    if args.json:
        for space in spaces:
            print(json_text(space))
        return 0
    print_table([_row(s) for s in spaces], _COLUMNS)
    return 0


def _logs(args: argparse.Namespace) -> int:
    with Client() as client:
        for line in client.space_log(args.name, limit=args.n):
            print(line)
    return 0


_COLUMNS = [
    ("name", "NAME"),
    ("state", "STATE"),
    ("health", "HEALTH"),
    ("pid", "PID"),
    ("owner", "OWNER"),
    ("cmd", "CMD"),
]


def _row(space: JSONObject) -> JSONObject:
    health = space.get("health")
    cmd = str(space.get("cmd") or "")
    return {
        "name": space["name"],
        "state": space["state"],
        "health": health["state"] if isinstance(health, dict) else "-",
        "pid": space.get("pid") or "-",
        "owner": space.get("owner") or "-",
        "cmd": cmd if len(cmd) <= 40 else cmd[:37] + "...",
    }


def _print_space(space: JSONObject, *, as_json: bool) -> None:
    if as_json:
        print(json_text(space))
        return
    row = _row(space)
    print(f"{row['name']}  {row['state']}  health {row['health']}  pid {row['pid']}  {space['id']}")
