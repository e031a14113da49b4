"""`knot event`, `knot events`, `knot audit`: raise and inspect events of a running runtime."""

from __future__ import annotations

import argparse
import sys

from .._client import Client
from .._json import JSONObject
from .._patterns import reading_pattern
from ..observe.trace import render_text
from .common import (
    REDELIVER_TIMEOUT,
    Subparsers,
    add_command,
    count,
    json_text,
    parse_json_object,
    takes_json_words,
)

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "event",
        _event,
        "Raise a custom event (the type gets the 'custom.' prefix).",
        '  knot event myapp.deployed \'{"version": "1.2"}\'\n'
        "  echo '{\"n\": 1}' | knot event myapp.tick\n",
    )
    p.add_argument("type", help="event type, e.g. myapp.deployed")
    p.add_argument("payload", nargs="?", help="JSON object (default: read stdin if piped, else {})")
    takes_json_words(p, "payload", "payload")
    p.add_argument("--id", default=None, help="event id (UUID) for idempotent retries")

    p = add_command(
        sub,
        "events",
        _events,
        "Show recent events, optionally filtered by a pattern.",
        "  knot events\n  knot events 'custom.myapp.*' -n 100\n  knot events --follow\n",
    )
    p.add_argument(
        "pattern",
        nargs="?",
        default=None,
        help="'*', 'prefix.*' or an exact type; 'custom.' is prefixed as for `knot event` "
        "unless it matches system events (space.*)",
    )
    p.add_argument(
        "-n", type=count(0), default=20, help="how many past events (default 20; 0: none)"
    )
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = add_command(
        sub,
        "trace",
        _trace,
        "Show the chain an event belongs to: from its root, every event its sinks raised and "
        "every delivery attempt, as a tree.",
        "  knot trace 0192f6a4-...                the tree, the event asked about marked ◀\n"
        "  knot trace 0192f6a4-... --json         the same as GET /api/events/ID/trace\n"
        "  knot trace 0192f6a4-... --deliveries   only that event's attempts, per sink\n",
    )
    p.add_argument("event_id", help="any event of the chain (the id `knot event` printed)")
    p.add_argument("--json", action="store_true", help="the trace as one JSON object")
    p.add_argument("--deliveries", action="store_true", help="only this event's delivery attempts")

    p = add_command(
        sub,
        "redeliver",
        _redeliver,
        "Deliver a journaled event to a sink again (a given-up or dropped one, or any other), "
        "through the normal delivery path; waits until it is delivered or given up.",
        "  knot redeliver 0192f6a4-... --sink deploy_hook\n",
    )
    p.add_argument("event_id", help="the event's id (see `knot events`, `knot audit`)")
    p.add_argument("--sink", required=True, help="the sink to deliver it to")
    p.add_argument("--json", action="store_true", help="the outcome as one JSON object")

    p = add_command(
        sub,
        "audit",
        _audit,
        "Show the audit log: drops, give-ups, rejected scripts.",
        "  knot audit\n  knot audit -n 100 --json\n",
    )
    p.add_argument("-n", type=count(1), default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _event(args: argparse.Namespace) -> int:
    raw = args.payload
    if raw is None and not sys.stdin.isatty():
        raw = sys.stdin.read()
    payload = parse_json_object(raw)
    with Client() as client:
        raised = client.submit(args.type, payload, id=args.id)
    print(raised.id)
    if raised.duplicate:  # still exit 0: a retry with the same id is the point of --id
        print(
            f"knot: An event with id {raised.id} was raised before; this one was ignored "
            "(the first stands, nothing new was journaled or delivered).",
            file=sys.stderr,
        )
    return 0


def _events(args: argparse.Namespace) -> int:
    pattern = reading_pattern(args.pattern).text if args.pattern else None
    with Client() as client:
        for event in client.events(pattern, limit=args.n) if args.n > 0 else []:
            _print_event(event, as_json=args.json)
        if args.follow:
            # A runtime that stops or restarts is waited for, and what it routed meanwhile is
            # shown first; each turn is said on stderr, so stdout stays the events alone.
            for event in client.follow(pattern, reconnect=True, on_status=_say):
                _print_event(event, as_json=args.json)
    return 0


def _say(message: str, away: bool) -> None:
    shown = f"{message.removesuffix('.')}; Ctrl-C stops." if away else message
    print(f"knot: {shown}", file=sys.stderr, flush=True)


def _print_event(event: JSONObject, *, as_json: bool) -> None:
    if as_json:
        print(json_text(event), flush=True)
        return
    data = json_text(event.get("data", {}), compact=True)
    if len(data) > 80:
        data = data[:77] + "..."
    line = f"{event['seq']:>7}  {event['ts']}  {event['type']:<32}  {event['id']}  {data}"
    print(line, flush=True)


def _trace(args: argparse.Namespace) -> int:
    with Client() as client:
        if args.deliveries:
            answer = client.deliveries(args.event_id)
        else:
            answer = client.trace(args.event_id)
    if args.json:
        print(json_text(answer))
    elif args.deliveries:
        event = answer["event"]
        shown = {"event": event["id"], "root": event["id"], "tree": [{**event, **answer}]}
        print(render_text(shown))
    else:
        print(render_text(answer))
    return 0


def _redeliver(args: argparse.Namespace) -> int:
    # The whole retry schedule may pass before the answer (5 s + 15 s of backoff by default).
    with Client(timeout=REDELIVER_TIMEOUT) as client:
        outcome = client.redeliver(args.event_id, args.sink)
    if args.json:
        print(json_text(outcome))
        return 0 if outcome.get("status") == "delivered" else 1
    attempts = outcome.get("attempts", 0)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome.get("status") == "delivered":
        print(f"{args.sink} ✓ {args.event_id} delivered ({tries})")
        return 0
    error = f": {outcome['error']}" if outcome.get("error") else ""
    print(
        f"{args.sink} ✗ {args.event_id} {outcome.get('status')} ({tries}){error}", file=sys.stderr
    )
    return 1


def _audit(args: argparse.Namespace) -> int:
    with Client() as client:
        entries = client.audit_entries(limit=args.n)
    for entry in entries:
        if args.json:
            print(json_text(entry))
        else:
            sink = f"[{entry['sink']}] " if entry["sink"] else ""
            print(f"{entry['ts']}  {entry['title']:<28}  {sink}{entry['message']}")
    if not entries and not args.json:
        print("(the audit log is empty)")
    return 0
