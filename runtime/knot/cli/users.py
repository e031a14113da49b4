"""`knot user add|list|remove|whoami`: the users of a project's runtime.

These act on the project's store (`--project`, default .) directly when no runtime has it open,
and through the running runtime's API (KNOT_API_PORT, KNOT_TOKEN) when one does; so the first
user can be created before `knot serve` listens beyond loopback, or through a loopback runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .._client import Client
from .._config import load_config
from .._exceptions import NotFound, StoreLocked
from .._json import JSONObject
from .._user_directory import offline_users
from .._users import User
from .common import Subparsers, add_command, json_text, print_table, project_folder

__all__ = ["register"]

EXAMPLES = """\
  knot user add alice --manage-global-sinks     prints alice's bearer token, once
  export KNOT_TOKEN=$(knot user add bob)        the token is the only thing on stdout
  knot user list
  knot user remove bob
  knot user whoami                              who KNOT_TOKEN is, for the running runtime
"""


def register(sub: Subparsers) -> None:
    p = add_command(sub, "user", None, "Add, list and remove users (bearer tokens).", EXAMPLES)
    actions = p.add_subparsers(title="actions", metavar="ACTION")

    q = add_command(
        actions,
        "add",
        _add,
        "Add a user and print its bearer token (once).",
        "  knot user add alice --manage-global-sinks\n"
        "  export KNOT_TOKEN=$(knot user add bob)        the token is the only thing on stdout\n",
    )
    q.add_argument("--project", default=".", help="project folder (default: .)")
    q.add_argument("name", help="the user's name (their id)")
    q.add_argument("--manage-global-sinks", action="store_true", help='"Manage Global Event Sinks"')
    q.add_argument("--manage-users", action="store_true", help='"Manage Users" (add, remove)')
    q.add_argument("--no-own-sinks", action="store_true", help='without "Manage Own Event Sinks"')

    q = add_command(
        actions,
        "list",
        _list,
        "List the users (never their tokens).",
        "  knot user list\n  knot user list --json --project ./my-project\n",
    )
    q.add_argument("--project", default=".", help="project folder (default: .)")
    q.add_argument("--json", action="store_true", help="one JSON object per line")

    q = add_command(
        actions,
        "remove",
        _remove,
        "Remove a user; their token stops working at once.",
        "  knot user remove bob\n",
    )
    q.add_argument("--project", default=".", help="project folder (default: .)")
    q.add_argument("name", help="the user's name (their id)")

    q = add_command(
        actions,
        "whoami",
        _whoami,
        "Who KNOT_TOKEN stands for at the running runtime.",
        "  KNOT_TOKEN=... knot user whoami\n",
    )
    q.add_argument("--project", default=".", help="ignored: whoami asks the running runtime")


def _store(args: argparse.Namespace) -> tuple[Path, tuple[User, ...]]:
    project = project_folder(args.project)
    config = load_config(project).raise_for_errors()
    path = Path(config.store.path)
    return (path if path.is_absolute() else project / path), config.users


def _add(args: argparse.Namespace) -> int:
    flags = {
        "manage_own_sinks": not args.no_own_sinks,
        "manage_global_sinks": args.manage_global_sinks,
        "manage_users": args.manage_users,
    }
    path, config_users = _store(args)
    try:
        with offline_users(path, config_users) as users:
            user, token = asyncio.run(users.add(args.name, **flags))
        record, where = user.to_dict(), f"the store {path}"
    except StoreLocked:
        with Client() as client:
            record, token = client.add_user(args.name, **flags)
            where = f"the runtime at {client.url}"
    permissions = ", ".join(record["permissions"]) or "no permissions"
    print(f"Added user {record['name']} ({permissions}) to {where}.", file=sys.stderr)
    print(
        "Its bearer token follows; it is shown this once (use it as KNOT_TOKEN):", file=sys.stderr
    )
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    path, config_users = _store(args)
    rows: list[JSONObject]
    try:
        if not path.exists():
            rows = [u.to_dict() for u in config_users]
        else:
            with offline_users(path, config_users) as users:
                rows = [u.to_dict() for u in users.all()]
    except StoreLocked:
        with Client() as client:
            rows = client.users()
    if args.json:
        for row in rows:
            print(json_text(row))
        return 0
    for row in rows:
        row["permissions"] = ", ".join(row["permissions"])
    print_table(rows, [("name", "NAME"), ("origin", "FROM"), ("permissions", "PERMISSIONS")])
    return 0


def _remove(args: argparse.Namespace) -> int:
    path, config_users = _store(args)
    try:
        if not path.exists():
            raise NotFound(f"There is no user named {args.name!r}.", what=args.name)
        with offline_users(path, config_users) as users:
            asyncio.run(users.remove(args.name))
    except StoreLocked:
        with Client() as client:
            client.remove_user(args.name)
    print(f"Removed user {args.name}; their token no longer works.")
    return 0


def _whoami(args: argparse.Namespace) -> int:
    with Client() as client:
        me = client.whoami()
    print(json_text(me))
    return 0
