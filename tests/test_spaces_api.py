"""/api/spaces in process: identity comes from the `caller()` seam, which a stand-in for the
users layer fills from a test header, so ownership and visibility are checked end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from knot import Actor, Config, RecordingSink, Runtime
from knot._config import SpaceSettings
from knot.server import create_app
from knot.server.auth import Caller

from .conftest import recording

pytestmark = pytest.mark.anyio


def acting_as_header_user(app: ASGIApp) -> ASGIApp:
    """What the users layer does for real: set request.state.caller for a known user."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        user = headers.get(b"x-test-user")
        if scope["type"] == "http" and user:
            name = user.decode()
            only_own = headers.get(b"x-test-only-own-sinks") == b"1"
            scope.setdefault("state", {})["caller"] = Caller(
                Actor(name, name), owner=name, manage_global_sinks=not only_own
            )
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def rt(project: Path) -> AsyncIterator[Runtime]:
    async with Runtime(project, config=Config(spaces=SpaceSettings(stop_grace=2))) as runtime:
        yield runtime


@pytest.fixture
async def http(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=acting_as_header_user(create_app(rt)))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


ALICE = {"X-Test-User": "alice"}
BOB = {"X-Test-User": "bob"}


async def test_a_space_belongs_to_the_user_who_creates_it(
    rt: Runtime, http: httpx.AsyncClient
) -> None:
    alices = RecordingSink(replace(recording("alices", "space.*").spec, owner="alice"))
    await rt.add_sink(alices)
    r = await http.post(
        "/api/spaces",
        json={"name": "a1", "cmd": "echo up; exec sleep 60", "urls": ["http://127.0.0.1:9"]},
        headers=ALICE,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["owner"], body["state"]) == ("a1", "alice", "stopped")
    r = await http.post("/api/spaces/a1/start", headers=ALICE)
    assert r.status_code == 200
    assert r.json()["state"] == "running"
    assert r.json()["pid"] > 0

    # Bob sees nothing of Alice's, and cannot touch it.
    assert (await http.get("/api/spaces", headers=BOB)).json() == {"spaces": []}
    for method, path in [
        ("GET", "/api/spaces/a1"),
        ("POST", "/api/spaces/a1/stop"),
        ("DELETE", "/api/spaces/a1"),
        ("GET", "/api/spaces/a1/log"),
    ]:
        r = await http.request(method, path, headers=BOB)
        assert r.status_code == 404, (method, path)
        assert r.json()["error"] == "There is no space named 'a1'."
    # Nor can he create one in her name.
    r = await http.post("/api/spaces", json={"name": "b1", "owner": "alice"}, headers=BOB)
    assert r.status_code == 403
    assert [s.name for s in rt.spaces.list()] == ["a1"]

    # The local user (no users configured) sees every space.
    listed = (await http.get("/api/spaces")).json()["spaces"]
    assert [(s["name"], s["owner"]) for s in listed] == [("a1", "alice")]

    async def log() -> list[str]:
        r = await http.get("/api/spaces/a1/log", params={"n": 5}, headers=ALICE)
        lines: list[str] = r.json()["lines"]
        return lines

    async with asyncio.timeout(10):
        while "up" not in await log():  # what the process printed, once it has run
            await asyncio.sleep(0.01)
    r = await http.post("/api/spaces/a1/stop", headers=ALICE)
    assert r.json()["state"] == "stopped"
    r = await http.delete("/api/spaces/a1", headers=ALICE)
    assert r.status_code == 200
    assert (await http.get("/api/spaces/a1", headers=ALICE)).status_code == 404

    await alices.wait_for(4)
    await rt.wait_idle()
    assert [e.type for e in alices.events] == [
        "space.created",
        "space.started",
        "space.stopped",
        "space.deleted",
    ]
    assert {e.owner for e in alices.events} == {"alice"}


async def test_running_commands_needs_the_global_sinks_permission(
    rt: Runtime, http: httpx.AsyncClient
) -> None:
    carol = {"X-Test-User": "carol", "X-Test-Only-Own-Sinks": "1"}
    for body in (
        {"name": "c1", "cmd": "sleep 60"},
        {"name": "c2", "health": "test -f /etc/hostname"},
    ):
        r = await http.post("/api/spaces", json=body, headers=carol)
        assert r.status_code == 403, body
        assert "Manage Global Event Sinks" in r.json()["error"]
    assert rt.spaces.list() == []
    # A record, or an HTTP health check, runs nothing here: allowed.
    r = await http.post(
        "/api/spaces", json={"name": "c3", "health": "http://127.0.0.1:9/"}, headers=carol
    )
    assert r.status_code == 201, r.text
    assert [s.name for s in rt.spaces.list()] == ["c3"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "no spaces"}, "is not valid"),
        ({"name": "w", "health": "http://192.0.2.1/"}, "must point at this machine"),
        ({"name": "w", "interval": -1, "health": "true"}, "interval must be a number"),
        ({"name": "w", "start": "yes"}, "'start' must be true or false"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_requests_are_400_with_a_sentence(
    http: httpx.AsyncClient, body: object, words: str
) -> None:
    r = await http.post("/api/spaces", json=body)
    assert r.status_code == 400
    assert words in r.json()["error"]


async def test_a_taken_name_and_an_unknown_space(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/spaces", json={"name": "w"})).status_code == 201
    r = await http.post("/api/spaces", json={"name": "w"})
    assert r.status_code == 400
    assert r.json()["error"] == "A space named 'w' already exists."
    r = await http.post("/api/spaces/nope/start")
    assert r.status_code == 404


async def test_system_events_cannot_be_forged_over_http(
    rt: Runtime, http: httpx.AsyncClient
) -> None:
    system = recording("system", "space.*")
    await rt.add_sink(system)
    r = await http.post("/event", json={"type": "space.created", "payload": {}}, headers=ALICE)
    assert r.status_code == 202
    event = await rt.get_event(r.json()["id"])
    assert event is not None
    assert event.type == "custom.space.created"
    await rt.wait_idle()
    assert list(system.events) == []
