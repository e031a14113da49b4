"""`knot init [DIR]` and `knot new sink|method NAME`: a thin layer over knot.scripts.scaffold."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .._config import CONFIG_FILE
from ..scripts.scaffold import Scaffold, init_project, new_method, new_sink
from .common import Subparsers, add_command

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "init",
        _init,
        "Make a project: knot.toml, scripts/sinks/hello.py (an example sink), scripts/methods/, "
        "tests/test_hello.py (its tests, with knot.testing) and a .gitignore. Never overwrites "
        "a file: if one exists, nothing is written.",
        "  knot init myproject             a new folder\n"
        "  knot init                       this folder\n",
    )
    p.add_argument("project", nargs="?", default=".", metavar="DIR", help="the folder (default: .)")

    group = add_command(
        sub,
        "new",
        None,
        "Start a sink script or a method script from a commented template that passes "
        "`knot check`. Never overwrites a file.",
        "  knot new sink deploy_notify --events 'custom.myapp.deployed'\n"
        "  knot new method deploys\n",
    )
    actions = group.add_subparsers(title="actions", metavar="ACTION")
    p = add_command(
        actions,
        "sink",
        _new_sink,
        "Write scripts/sinks/NAME.py, a script sink for the events given.",
        "  knot new sink deploy_notify --events 'custom.myapp.deployed'\n"
        "  knot new sink on_start --events 'space.started, space.healthy' "
        "--description 'Say hello'\n",
    )
    p.add_argument("name", help="the sink's name, and its file's (letters, digits, _)")
    p.add_argument(
        "--events",
        required=True,
        metavar="PATTERNS",
        help="comma-separated: '*', 'prefix.*' or exact types (custom.myapp.deployed)",
    )
    p.add_argument("--description", default="", help="one line for its header")
    p.add_argument("--project", default=".", metavar="DIR", help="the project (default: .)")
    p = add_command(
        actions,
        "method",
        _new_method,
        "Write scripts/methods/NAME.py, a method script with two methods to call.",
        "  knot new method deploys\n  knot new method deploys --project myproject\n",
    )
    p.add_argument("name", help="the method script's name, and its file's (letters, digits, _)")
    p.add_argument("--project", default=".", metavar="DIR", help="the project (default: .)")


def _init(args: argparse.Namespace) -> int:
    done = init_project(args.project)
    print(f"Created a knot project in {done.root}:")
    for path in done.created:
        print(f"  {done.shown(path)}{'/' if path.is_dir() else ''}")
    _next(done, cd=Path(args.project) != Path("."))
    return 0


def _new_sink(args: argparse.Namespace) -> int:
    done = new_sink(args.name, args.events, project=args.project, description=args.description)
    _created(done, args.project)
    return 0


def _new_method(args: argparse.Namespace) -> int:
    done = new_method(args.name, project=args.project)
    _created(done, args.project)
    return 0


def _created(done: Scaffold, project: str) -> None:
    (path,) = done.created
    print(f"Created {done.shown(path) if project == '.' else path}.")
    if not (done.root / CONFIG_FILE).is_file():
        print(
            f"note: {done.root} has no {CONFIG_FILE}; is it the project folder? "
            "(`knot init` makes one)",
            file=sys.stderr,
        )
    _next(done, cd=Path(project) != Path("."))


def _next(done: Scaffold, *, cd: bool) -> None:
    print("Next:")
    if cd:
        print(f"  cd {shlex.quote(str(done.root))}")
    for step in done.next_steps:
        print(f"  {step}")
