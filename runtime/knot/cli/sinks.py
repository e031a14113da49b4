"""`knot sinks list|add|remove|test|secret`: the sinks of a running runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._client import Client
from .._exceptions import DeliveryFailed, InvalidInput
from .._json import JSONObject
from .common import (
    Handler,
    Subparsers,
    add_command,
    json_text,
    loads_user_json,
    parse_json_object,
    print_table,
    seconds,
)

__all__ = ["register"]

EXAMPLES = """\
  knot sinks                                    the sinks and their counts
  knot sinks add deploy_hook --events 'custom.myapp.*' --url http://127.0.0.1:9000/hook
  knot sinks add slack --events 'space.*' --url https://hooks.example/x \\
      --template '{"text": "${{ .event.type }} on ${{ .space.name }}"}' --header X-Team=infra
  knot sinks test deploy_hook                   send a test event, show the receiver's answer
  knot sinks secret deploy_hook                 the signing secret (for the receiver)
  knot sinks remove deploy_hook
"""


def register(sub: Subparsers) -> None:
    p = add_command(sub, "sinks", _list, "List, add, remove and test sinks.", EXAMPLES)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = p.add_subparsers(title="actions", metavar="ACTION")

    def action(name: str, handler: Handler, help: str, examples: str) -> argparse.ArgumentParser:
        return add_command(actions, name, handler, help, examples)

    q = action(
        "list",
        _list,
        "List the sinks (the default action).",
        "  knot sinks list\n  knot sinks list --json      one JSON object per sink\n",
    )
    q.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per line"
    )

    q = action(
        "add",
        _add,
        "Add a sink (a webhook unless --type says otherwise).",
        "  knot sinks add deploy_hook --events 'custom.myapp.*' --url http://127.0.0.1:9000/hook\n"
        "  knot sinks add slack --events 'space.*' --url https://hooks.example/x \\\n"
        '      --template \'{"text": "${{ .event.type }}"}\' --header X-Team=infra\n'
        "  knot sinks add deploy_params --type json-rpc --events 'custom.deploy.*' \\\n"
        "      --template '{\"version\": ${{ json .event.data.version }}}'   params for methods\n",
    )
    q.add_argument("name", help="sink name: a letter, then letters, digits or _ (2-64)")
    q.add_argument("--events", required=True, help="patterns, e.g. 'custom.myapp.*, space.*'")
    q.add_argument("--type", default="webhook", help="sink type (default webhook)")
    q.add_argument("--url", help="webhook: where to POST")
    q.add_argument("--secret", help="webhook: signing secret (default: generated, shown once)")
    q.add_argument(
        "--header", action="append", default=[], metavar="NAME=VALUE", help="webhook header"
    )
    group = q.add_mutually_exclusive_group()
    group.add_argument(
        "--template", help="webhook and json-rpc: body template in ${{ }} syntax (body_template)"
    )
    group.add_argument(
        "--template-file", type=Path, help="webhook and json-rpc: read the template from a file"
    )
    q.add_argument("--skip-tls-verify", action="store_true", help="webhook: accept any certificate")
    q.add_argument(
        "--timeout", type=seconds, help="webhook: seconds to wait for a 2xx (default 10)"
    )
    q.add_argument("--description", default="", help="what the sink is for")
    owner = q.add_mutually_exclusive_group()
    owner.add_argument("--owner", help="owning user (default: you)")
    owner.add_argument("--global", dest="is_global", action="store_true", help="fire for everyone")
    q.add_argument("--inactive", action="store_true", help="create it switched off")
    q.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option (VALUE as JSON when it parses, else a string)",
    )

    q = action(
        "remove", _remove, "Remove a sink created at run time.", "  knot sinks remove deploy_hook\n"
    )
    q.add_argument("name", help="the sink's name")

    q = action(
        "test",
        _test,
        "Send one test event to a sink and show what the receiver said.",
        "  knot sinks test deploy_hook\n"
        '  knot sinks test deploy_hook --type myapp.deployed --data \'{"version": "1.2"}\'\n',
    )
    q.add_argument("name", help="the sink's name")
    q.add_argument("--type", default=None, help="event type (default custom.knot.test)")
    q.add_argument("--data", default=None, help="payload JSON object")

    q = action(
        "secret",
        _secret,
        "Print a webhook sink's signing secret.",
        "  knot sinks secret deploy_hook\n",
    )
    q.add_argument("name", help="the sink's name")


def _list(args: argparse.Namespace) -> int:
    with Client() as client:
        sinks = client.sinks()
    if args.json:
        for sink in sinks:
            print(json_text(sink))
        return 0
    print_table(
        sinks,
        [
            ("name", "NAME"),
            ("type", "TYPE"),
            ("events", "EVENTS"),
            ("owner", "OWNER"),
            *([("node", "NODE")] if any("node" in s for s in sinks) else []),  # a cluster
            ("pending", "PENDING"),
            ("delivered", "DELIVERED"),
            ("failed", "FAILED"),
            ("dropped", "DROPPED"),
            ("problem", "PROBLEM"),
        ],
    )
    return 0


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"The {what} {item!r} must look like NAME=VALUE.")
        out[key.strip()] = value.strip()
    return out


def _definition(args: argparse.Namespace) -> JSONObject:
    definition: JSONObject = {
        "name": args.name,
        "type": args.type,
        "events": args.events,
        "description": args.description,
    }
    if args.inactive:
        definition["active"] = False
    if args.is_global:
        definition["owner"] = ""
    elif args.owner is not None:
        definition["owner"] = args.owner
    for key, value in _pairs(args.option, "option").items():
        try:
            definition[key] = loads_user_json(value, subject="The option is")
        except InvalidInput:  # not JSON (or NaN): the text as given
            definition[key] = value
    template = args.template
    if args.template_file is not None:
        try:
            template = args.template_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"Cannot read {args.template_file}: {exc.strerror}.") from None
    webhook = {
        "url": args.url,
        "secret": args.secret,
        "body_template": template,
        "timeout": args.timeout,
        "headers": _pairs(args.header, "header") or None,
        "skip_tls_verify": args.skip_tls_verify or None,
    }
    definition.update((k, v) for k, v in webhook.items() if v is not None)
    return definition


def _add(args: argparse.Namespace) -> int:
    with Client() as client:
        sink = client.add_sink(_definition(args))
    owner = f"owned by {sink['owner']}" if sink.get("owner") else "global"
    print(f"Added sink {sink['name']} ({sink['type']}, {owner}) for events: {sink['events']}")
    if sink.get("secret"):
        print(f"Signing secret (shown once; `knot sinks secret {sink['name']}` shows it again):")
        print(sink["secret"])
    return 0


def _remove(args: argparse.Namespace) -> int:
    with Client() as client:
        removed = client.remove_sink(args.name)
    print(f"Removed sink {removed['name']}.")
    return 0


def _test(args: argparse.Namespace) -> int:
    payload = parse_json_object(args.data) if args.data is not None else None
    with Client() as client:
        answer = client.test_sink(args.name, event_type=args.type, payload=payload)
    event = answer["event"]
    if not answer["delivered"]:
        raise DeliveryFailed(
            f"The test event {event['id']} ({event['type']}) was not delivered to "
            f"{args.name}: {answer['error']}",
            sink=args.name,
            event=str(event["id"]),
        )
    detail = f": {answer['detail']}" if answer.get("detail") else ""
    print(f"Delivered test event {event['id']} ({event['type']}) to {args.name}{detail}")
    for line in answer.get("output", []):
        print(f"  {line}")
    return 0


def _secret(args: argparse.Namespace) -> int:
    with Client() as client:
        print(client.sink_secret(args.name))
    sys.stdout.flush()
    return 0
