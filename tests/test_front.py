"""The hot ingress paths answered up front (server/front.py) answer exactly as the starlette
stack does: the same statuses, bodies, headers and metrics labels, for good requests and for
every refusal (browser guard, identity, body limits, bad input), with users and without.

Each request goes once through `KnotApp` and once through the same app's starlette stack alone
(`Starlette.__call__`, what every request went through before), against one runtime.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from knot import Runtime
from knot.server import create_app

pytestmark = pytest.mark.anyio

TOKEN = "front-token-0123456789abcdef"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LIMIT = 8192
SINK = 'name = "rec"\ntype = "recording"\nevents = "*"\n'


@dataclass
class Both:
    """One runtime's app, reachable up front and through the starlette stack alone."""

    runtime: Runtime
    front: httpx.AsyncClient
    stack: httpx.AsyncClient
    answered: list[tuple[str, int]]


@pytest.fixture(params=["no users", "users"])
async def both(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Both]:
    text = f"[server]\nmax_body_bytes = {LIMIT}\n[[sinks]]\n{SINK}"
    if request.param == "users":
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        text += f'[users.ops]\ntoken_sha256 = "{digest}"\nmanage_global_sinks = true\n'
    (tmp_path / "knot.toml").write_text(text)
    async with Runtime(tmp_path) as rt:
        await rt.channels.create(eci="front", name="front")
        app = create_app(rt)
        answered: list[tuple[str, int]] = []
        rt.hooks.on_request(lambda route, status, seconds: answered.append((route, status)))

        async def stack(scope: Scope, receive: Receive, send: Send) -> None:
            await Starlette.__call__(app, scope, receive, send)

        headers = {"Authorization": f"Bearer {TOKEN}"} if request.param == "users" else {}
        base = "http://127.0.0.1"
        front_t, stack_t = httpx.ASGITransport(app=app), httpx.ASGITransport(app=stack)
        async with (
            httpx.AsyncClient(transport=front_t, base_url=base, headers=headers) as front,
            httpx.AsyncClient(transport=stack_t, base_url=base, headers=headers) as plain,
        ):
            yield Both(rt, front, plain, answered)


def _shown(r: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """What a client sees, with generated ids made comparable."""
    try:
        body: Any = json.loads(UUID.sub("<id>", r.text))
    except ValueError:
        body = r.text
    kept = ("content-type", "access-control-allow-origin", "www-authenticate", "allow")
    return r.status_code, body, {k: r.headers[k] for k in kept if k in r.headers}


async def _chunks(size: int) -> AsyncIterator[bytes]:
    """A body sent in pieces without a Content-Length (only what arrives can be counted)."""
    yield b'{"type": "x", "payload": {"s": "'
    yield b"a" * size
    yield b'"}}'


SKY = "/sky/event/front/none/shop/order"
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/event", {"json": {"type": "front.ok", "payload": {"n": 1}}}),
    ("POST", "/event", {"json": {"type": "front.ok"}}),
    ("POST", "/event", {"content": b""}),
    ("POST", "/event", {"content": b"{not json"}),
    ("POST", "/event", {"content": b"[1, 2]"}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": NaN}'}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": {"s": "\\ud800"}}'}),
    ("POST", "/event", {"content": b"\xff\xfe"}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": ' + b"[" * 150 + b"]" * 150}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": {"n": ' + b"9" * 5000 + b"}}"}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": {"n": ' + b"9" * 4000 + b"}}"}),
    ("POST", "/event", {"content": b'{"type": "x", "payload": {"n": 1e999}}'}),
    ("POST", "/event", {"content": '{"type": "x", "payload": {"é": "\u00e9"}}'.encode()}),
    ("POST", "/event", {"content": b'\xef\xbb\xbf{"type": "x"}'}),
    ("POST", "/event", {"json": {"type": "x", "extra": 1, "more": 2}}),
    ("POST", "/event", {"json": {"payload": {}}}),
    ("POST", "/event", {"json": {"type": "bad type!"}}),
    ("POST", "/event", {"json": {"type": "x", "payload": [1]}}),
    ("POST", "/event", {"json": {"type": "x", "id": "not-a-uuid"}}),
    ("POST", "/event", {"content": b"x" * (LIMIT + 1)}),
    ("POST", "/event", {"content": _chunks}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Host": "evil.example"}}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Origin": "http://evil.example"}}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Sec-Fetch-Site": "cross-site"}}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Origin": "http://localhost:3000"}}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Authorization": "Bearer wrong"}}),
    ("POST", "/event", {"json": {"type": "x"}, "headers": {"Authorization": "Basic abc"}}),
    ("GET", "/event", {}),
    ("POST", "/event/", {"json": {"type": "x"}}),
    ("POST", SKY, {"json": {"name": "a"}}),
    ("GET", SKY + "?name=b&_async=1", {}),
    ("POST", SKY, {"json": {"name": "a"}, "headers": {"Origin": "http://evil.example"}}),
    ("POST", SKY, {"content": b"name=c", "headers": {"Content-Type": "text/plain"}}),
    ("POST", SKY, {"content": b"[1]"}),
    ("POST", SKY, {"content": b"x" * (LIMIT + 1)}),
    ("POST", SKY, {"json": {"a": 1}, "headers": {"Authorization": "Bearer wrong"}}),
    ("POST", SKY, {"json": {"a": 1}, "headers": {"Host": "evil.example"}}),
    ("GET", "/sky/event/nosuch/none/shop/order", {}),
    ("GET", "/sky/event/front/none", {}),
    ("GET", "/sky/event/front/none/shop/order?_rids=nobody", {}),
    ("GET", "/sky/event", {}),
    ("GET", "/sky/event/", {}),
    ("GET", "/sky/events/front/none/shop/order", {}),
    ("HEAD", SKY, {}),
    ("OPTIONS", SKY, {"headers": {"Access-Control-Request-Headers": "X-A"}}),
    ("PUT", SKY, {}),
]


@pytest.mark.parametrize(("method", "path", "options"), REQUESTS)
async def test_the_front_answers_as_the_starlette_stack(
    both: Both, method: str, path: str, options: dict[str, Any]
) -> None:
    chunked = options.get("content") is _chunks
    if chunked:
        options = {**options, "content": _chunks(LIMIT)}
    front = await both.front.request(method, path, **options)
    answered_front = both.answered[:]
    both.answered.clear()
    if chunked:
        options = {**options, "content": _chunks(LIMIT)}
    stack = await both.stack.request(method, path, **options)
    assert _shown(front) == _shown(stack)
    assert answered_front == both.answered


async def test_events_raised_up_front_are_journaled_and_routed(both: Both) -> None:
    fixed = "0190c2d6-6a4e-7cc0-8000-000000000001"
    for client in (both.front, both.stack):
        r = await client.post("/event", json={"type": "front.twice", "id": fixed})
        assert r.status_code == 202
    assert r.json() == {"id": fixed, "duplicate": True}
    await both.runtime.wait_idle()
    sink = next(s for s in both.runtime.sinks() if s.name == "rec")
    assert sink.delivered == 1
    event = await both.runtime.get_event(fixed)
    assert event is not None
    assert event.type == "custom.front.twice"


async def test_a_number_of_more_digits_than_python_reads_is_a_bad_request(both: Both) -> None:
    """It was a 500: json.loads raises a plain ValueError past 4300 digits."""
    body = b'{"type": "x", "payload": {"n": ' + b"9" * 5000 + b"}}"
    r = await both.front.post("/event", content=body)
    assert r.status_code == 400
    assert r.json()["error"] == (
        "The request body holds a number with more than 4300 digits, more than knot reads."
    )
    ok = await both.front.post("/event", content=body.replace(b"9" * 5000, b"9" * 4000))
    assert ok.status_code == 202
