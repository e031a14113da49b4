"""Raise Sky events by both encodings and print the directives that come back.

    python examples/sky/client.py [--url http://127.0.0.1:12201] [--eci demo] [NAME]

The first event uses the path encoding (`/sky/event/<eci>/<eid>/<domain>/<type>`, a GET with
the attribute in the query string), the second the KRE encoding (`/sky/event/<eci>/<eid>?
_domain=...&_type=...`, a POST with a JSON body). Both become `custom.greet.hello` events.

Like the `knot` commands, it finds the runtime at KNOT_URL, else 127.0.0.1:KNOT_API_PORT
(default 12201), and sends KNOT_TOKEN as a bearer token: once the runtime has users, raising
on a channel takes the token of its owner (or of a user who manages global sinks).
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from knot._env import api_token_from_env, api_url_from_env


def show(label: str, response: httpx.Response) -> bool:
    if response.status_code != 200:
        print(f"{label}: HTTP {response.status_code}: {response.json().get('error')}")
        return False
    answer = response.json()
    print(f"{label}: eid {answer['eid']}, {len(answer['directives'])} directive(s)")
    for directive in answer["directives"]:
        options = json.dumps(directive["options"])
        print(f"  {directive['meta']['rid']}: {directive['name']} {options}")
    for sink in answer.get("pending", []):
        print(f"  {sink}: still running when the answer was sent")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", default="Ada", help="who to greet")
    parser.add_argument(
        "--url", default=None, help="the knot runtime (default: KNOT_URL or KNOT_API_PORT)"
    )
    parser.add_argument("--eci", default="demo", help="the channel (knot channel create)")
    args = parser.parse_args()
    token = api_token_from_env()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = args.url or api_url_from_env()
    with httpx.Client(base_url=url, headers=headers, timeout=15) as http:
        ok = show(
            "path encoding (GET)",
            http.get(f"/sky/event/{args.eci}/client-1/greet/hello", params={"name": args.name}),
        )
        ok &= show(
            "query encoding (POST, JSON body)",
            http.post(
                f"/sky/event/{args.eci}/client-2",
                params={"_domain": "greet", "_type": "hello"},
                json={"name": args.name},
            ),
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
