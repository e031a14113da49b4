"""`knot check` and `knot run`: scripts checked, and sink scripts tried, without a runtime."""

from __future__ import annotations

import argparse
import sys

from .._config import load_config
from ..scripts.tools import CheckReport, check_paths, dry_run, kv_lines, request_lines
from .common import Subparsers, add_command, json_text, parse_json_object, project_folder

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "check",
        _check,
        "Check scripts against the sandbox rules (nothing runs); exit 1 on any violation. "
        "Scripts in a methods/ folder are checked as method scripts.",
        "  knot check scripts/sinks/deploy_notify.py\n"
        "  knot check scripts/                  every *.py below, sinks and methods\n",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="script files or folders")

    p = add_command(
        sub,
        "run",
        _run,
        "Dry-run a sink script on one event: print its output, the events it would emit, its "
        "directives, the HTTP requests it would make (checked against http_allow, sent only "
        "with --live) and the knot.kv keys it would change (in a scratch copy). Nothing is "
        "delivered and secrets are redacted; no runtime is needed.",
        "  knot run scripts/sinks/deploy_notify.py --event custom.myapp.deployed \\\n"
        '      --data \'{"version": "1.2", "commit": "abc123"}\' --space web\n'
        "  knot run scripts/sinks/on_start.py --event space.started --json\n",
    )
    p.add_argument("script", help="the sink script to run")
    p.add_argument("--event", required=True, metavar="TYPE", help="the event type to hand it")
    p.add_argument(
        "--data", default=None, metavar="JSON", help="the event's payload (a JSON object)"
    )
    p.add_argument("--space", default=None, metavar="NAME", help="give the event a space")
    p.add_argument(
        "--project",
        default=".",
        help="project whose knot.toml applies: limits, http_allow, secrets (default: .)",
    )
    p.add_argument(
        "--live", action="store_true", help="send the script's HTTP requests (if allowed)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _check(args: argparse.Namespace) -> int:
    report = check_paths(args.paths)
    for missing in report.missing:
        print(f"{missing}: no such file or folder", file=sys.stderr)
    for problem in report.problems:
        print(problem)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(_summary(report), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


EMITS_SHOWN = 20  # a script emitting in a loop would otherwise fill the terminal


def _run(args: argparse.Namespace) -> int:
    data = parse_json_object(args.data, what="--data payload")
    project = project_folder(args.project)
    config = load_config(project).raise_for_errors()
    result = dry_run(
        args.script,
        args.event,
        data,
        space=args.space,
        config=config,
        project=project,
        live=args.live,
    )
    if args.json:
        print(json_text(result.to_dict(), indent=2))
        return 0 if result.ok else 1
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.problems:
        return 1
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"--- output ({_count(len(result.output), 'line')})")
    for line in result.output:
        print(line)
    print(f"--- emitted ({_count(len(result.emitted), 'event')}, not delivered)")
    for emitted in result.emitted[:EMITS_SHOWN]:
        print(f"{emitted.type} {json_text(emitted.payload)}")
    if len(result.emitted) > EMITS_SHOWN:
        print(f"... {len(result.emitted) - EMITS_SHOWN} more not shown (--json lists them all)")
    print(f"--- directives ({_count(len(result.directives), 'directive')})")
    for directive in result.directives:
        print(f"{directive['name']} {json_text(directive['options'])}")
    if result.requests:
        sent = "sent" if args.live else "not sent: --live sends them"
        print(f"--- HTTP requests ({_count(len(result.requests), 'request')}, {sent})")
        for request in result.requests:
            print("\n".join(request_lines(request.to_dict())))
    if result.kv:
        print(f"--- knot.kv ({_count(len(result.kv), 'key')} changed, in a scratch copy)")
        print("\n".join(kv_lines(result.kv)))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _summary(report: CheckReport) -> str:
    """The report's summary, unless it would claim more than was checked."""
    missing = len(report.missing)
    if not report.loads:
        if missing:
            paths = "the path given does not" if missing == 1 else "none of the paths given"
            return f"Nothing was checked: {paths} exist{'' if missing == 1 else 's'}."
        return "Nothing was checked: no scripts (*.py) were found."
    if missing:
        paths = "1 path given does" if missing == 1 else f"{missing} paths given do"
        return f"{report.summary()[:-1]}; {paths} not exist."
    return report.summary()
