"""`knot replay`: a sink's current script on journaled events, diffed against what ran then."""

from __future__ import annotations

import argparse
import sys
import time

from .._client import Client
from .._patterns import reading_pattern
from .._replay import MAX_SEQ, ReplayStatus
from .common import REDELIVER_TIMEOUT, Subparsers, add_command, count, json_text

__all__ = ["register"]

DIFFERS = 3  # --exit-code: some event's run differs from its record (1 stays for errors)
QUIET_SECONDS = 1.0  # a replay shorter than this shows no progress


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "replay",
        _replay,
        "Run a script sink's current version again on journaled events (in the sandbox: "
        "nothing delivered or journaled, no real HTTP, knot.kv in a scratch copy) and compare "
        "each run with what ran then: a summary (same, changed, now failing, now passing, no "
        "record) and a unified diff per event that differs.",
        "  knot replay greeter                    the sink's newest 100 events\n"
        "  knot replay greeter --since 7d         the last week's (at most --limit)\n"
        "  knot replay greeter --since 2026-11-25T09:00:00Z --events 'deploy.*'\n"
        "  knot replay greeter --from 1200 --limit 500 --json\n"
        "  knot replay greeter --since 1d --apply    and deliver what now differs again\n",
    )
    p.add_argument("sink", help="a script sink's name (scripts/sinks/NAME.py)")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--since",
        metavar="TIME",
        help="events since TIME: ISO 8601 (2026-11-25, 2026-11-25T13:00:00Z) or ago (30m, 7d)",
    )
    start.add_argument(
        "--from",
        dest="from_seq",
        type=count(0, MAX_SEQ),
        metavar="SEQ",
        help="from journal position",
    )
    p.add_argument(
        "--events",
        metavar="PATTERN",
        help="only events matching PATTERN ('custom.' is prefixed as for `knot events`) "
        "instead of the sink's own patterns",
    )
    p.add_argument(
        "--limit", "-n", type=count(1), default=100, help="at most N events (default 100)"
    )
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.add_argument(
        "--all", action="store_true", help="show every event, not only those that differ"
    )
    p.add_argument(
        "--apply",
        action="store_true",
        help="then deliver again, for real, each event whose run differs (changed, now "
        "failing, now passing), oldest first, through the sink's usual path",
    )
    p.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit {DIFFERS} when some event's run differs from its record (for CI)",
    )


def _replay(args: argparse.Namespace) -> int:
    pattern = reading_pattern(args.events).text if args.events else None
    shown = _Progress()
    try:
        with Client() as client:
            report = client.replay(
                args.sink,
                since=args.since,
                from_seq=args.from_seq,
                events=pattern,
                limit=args.limit,
                progress=shown,
            )
    finally:
        shown.done()
    if args.json:
        print(json_text(report.to_dict(), indent=2))
    else:
        print(report.render_text(all_events=args.all))
    if args.apply:
        _apply(args.sink, [e.id for e in report.events if e.status in APPLIED], quiet=args.json)
    return DIFFERS if args.exit_code and report.differs else 0


# What `--apply` delivers again: the runs the current version does differently.
APPLIED = frozenset({ReplayStatus.CHANGED, ReplayStatus.NOW_FAILING, ReplayStatus.NOW_PASSING})


def _apply(sink: str, event_ids: list[str], *, quiet: bool) -> None:
    """Deliver each event again (in journal order, one at a time: the sink's order) and say
    how each went, on stderr when stdout carries the JSON report."""
    out = sys.stderr if quiet else sys.stdout
    if not event_ids:
        print("knot: nothing to deliver again: no run differs.", file=out)
        return
    with Client(timeout=REDELIVER_TIMEOUT) as client:
        for done, event_id in enumerate(event_ids, start=1):
            outcome = client.redeliver(event_id, sink)
            error = f": {outcome['error']}" if outcome.get("error") else ""
            print(
                f"delivered again {done}/{len(event_ids)} {event_id} {outcome['status']}{error}",
                file=out,
                flush=True,
            )


class _Progress:
    """`replayed 64/500 events` on stderr, once a replay has taken a second: in place on a
    terminal, a line every few seconds elsewhere."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0.0
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        every = 0.2 if self.tty else 5.0
        if now - self.started < QUIET_SECONDS or (now - self.shown < every and done < total):
            return
        self.shown = now
        text = f"knot: replayed {done}/{total} events"
        if self.tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
            self.drawn = True
        else:
            print(text, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.drawn:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
