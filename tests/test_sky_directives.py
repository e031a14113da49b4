"""Sky answers with directives: a runtime with sinks written in Python, served by a real
uvicorn on loopback (the same app `knot serve` runs), called over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn

from knot import (
    Actor,
    Config,
    DeliveryFailed,
    DeliveryResult,
    Directive,
    Event,
    Runtime,
    Sink,
    SinkOrigin,
    SinkSpec,
    parse_patterns,
)
from knot._config import DeliverySettings
from knot.server import create_app
from knot.server.app import bind_socket
from knot.server.auth import Caller

pytestmark = pytest.mark.anyio

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


class Greeter(Sink):
    """Answers every event with a `say` directive built from its `name` attribute."""

    type: ClassVar[str] = "greeter"

    async def deliver(self, event: Event) -> DeliveryResult | None:
        name = event.data.get("name", "world")
        return DeliveryResult(
            directives=(
                Directive("say", {"text": f"hello {name}"}, sink=self.name),
                Directive("count", {"n": len(event.data)}, sink=self.name),
            )
        )


class Slow(Sink):
    type: ClassVar[str] = "slow"

    async def deliver(self, event: Event) -> DeliveryResult | None:
        await asyncio.sleep(float(event.data.get("sleep", 1.0)))
        return DeliveryResult(directives=(Directive("late", {}, sink=self.name),))


class Broken(Sink):
    type: ClassVar[str] = "broken"

    async def deliver(self, event: Event) -> DeliveryResult | None:
        raise DeliveryFailed("the receiver is down", sink=self.name, event=event.id)


def make(cls: type[Sink], name: str, events: str, owner: str = "") -> Sink:
    return cls(
        SinkSpec(name, cls.type, parse_patterns(events), owner=owner, origin=SinkOrigin.BUILTIN)
    )


def with_test_users(app: ASGI) -> ASGI:
    """Stand in for the auth layer: `X-Test-User: NAME` becomes the request's caller (the seam
    `caller(request)` reads). `admin` has Manage Global Event Sinks; other users do not."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"x-test-user":
                    user = value.decode()
                    scope.setdefault("state", {})["caller"] = Caller(
                        actor=Actor(user, user),
                        owner=user,
                        manage_own_sinks=True,
                        manage_global_sinks=user == "admin",
                    )
        await app(scope, receive, send)

    return wrapped


@dataclass
class Sky:
    runtime: Runtime
    http: httpx.AsyncClient

    async def channel(self, **fields: Any) -> str:
        r = await self.http.post("/api/channels", json=fields)
        assert r.status_code == 201, r.text
        eci: str = r.json()["eci"]
        return eci


async def serve(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(
        with_test_users(create_app(runtime)), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    server.should_exit = True
    await task


@pytest.fixture
async def sky(project: Path) -> AsyncIterator[Sky]:
    config = Config(delivery=DeliverySettings(attempts=1, backoff=(0.01,), sync_timeout=1.0))
    async with Runtime(project, config=config) as runtime:
        await runtime.add_sink(make(Greeter, "greeter", "custom.greet.*"))
        await runtime.add_sink(make(Greeter, "another", "custom.greet.twice"))
        await runtime.add_sink(make(Slow, "slowpoke", "custom.slow.*"))
        await runtime.add_sink(make(Greeter, "quick", "custom.slow.*"))
        await runtime.add_sink(make(Broken, "broken", "custom.broken.*"))
        await runtime.add_sink(make(Greeter, "quick_too", "custom.broken.*"))
        await runtime.add_sink(make(Greeter, "alices", "custom.mine.*", owner="alice"))
        async for client in serve(runtime):
            yield Sky(runtime, client)


async def test_answer_has_every_directive_with_rid_and_eid(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/my-eid/greet/hello", json={"name": "ada"})
    assert r.status_code == 200
    answer = r.json()
    assert answer == {
        "eid": "my-eid",
        "id": answer["id"],
        "directives": [
            {
                "type": "directive",
                "name": "say",
                "options": {"text": "hello ada"},
                "meta": {"rid": "greeter", "eid": "my-eid"},
            },
            {
                "type": "directive",
                "name": "count",
                "options": {"n": 1},
                "meta": {"rid": "greeter", "eid": "my-eid"},
            },
        ],
    }
    event = await sky.runtime.get_event(answer["id"])
    assert event is not None
    assert event.eid == "my-eid"


async def test_query_encoding_answers_the_same_way(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.get(
        f"/sky/event/{eci}/q", params={"_domain": "greet", "_name": "hi", "name": "bo"}
    )
    assert [d["options"] for d in r.json()["directives"]] == [{"text": "hello bo"}, {"n": 1}]


async def test_directives_of_several_sinks_come_in_sink_name_order(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/two/greet/twice")
    rids = [d["meta"]["rid"] for d in r.json()["directives"]]
    assert rids == ["another", "another", "greeter", "greeter"]


async def test_generated_eid_is_the_event_id_everywhere(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/none/greet/hello")
    answer = r.json()
    assert answer["eid"] == answer["id"]
    assert {d["meta"]["eid"] for d in answer["directives"]} == {answer["id"]}


async def test_no_matching_sink_answers_an_empty_list(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/e/nobody/listens")
    assert r.json()["directives"] == []
    assert "pending" not in r.json()
    assert "failed" not in r.json()


async def test_rids_limit_which_sinks_answer(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/e/greet/twice", params={"_rids": "another"})
    assert {d["meta"]["rid"] for d in r.json()["directives"]} == {"another"}


async def test_rids_that_match_no_sink_are_named_with_the_reason(sky: Sky) -> None:
    # `_rids=nosuch` answered 200 with no directives and not a word about the typo.
    eci = await sky.channel()
    idle = SinkSpec("idle", "greeter", parse_patterns("*"), active=False, origin=SinkOrigin.BUILTIN)
    await sky.runtime.add_sink(Greeter(idle))
    rids = "nosuch;another;greeter;alices;idle"
    r = await sky.http.post(f"/sky/event/{eci}/e/greet/hello", params={"_rids": rids})
    assert r.status_code == 200
    answer = r.json()
    assert {d["meta"]["rid"] for d in answer["directives"]} == {"greeter"}
    assert answer["unmatched"] == [
        {"rid": "nosuch", "reason": "There is no sink named 'nosuch'."},
        {
            "rid": "another",
            "reason": "The sink another does not take this event, custom.greet.hello (its "
            "events: custom.greet.twice).",
        },
        {
            "rid": "alices",
            "reason": "The sink alices does not take this event, custom.greet.hello (its "
            "events: custom.mine.*; and only events of alice).",
        },
        {"rid": "idle", "reason": "The sink idle is inactive."},
    ]
    r = await sky.http.post(
        f"/sky/event/{eci}/e/greet/hello", params={"_rids": "nosuch", "_async": "1"}
    )
    assert r.status_code == 202
    assert r.json()["unmatched"] == [
        {"rid": "nosuch", "reason": "There is no sink named 'nosuch'."}
    ]
    r = await sky.http.post(f"/sky/event/{eci}/e/greet/hello", params={"_rids": "greeter"})
    assert "unmatched" not in r.json()


async def test_timeout_answers_what_arrived_and_lists_the_rest(sky: Sky) -> None:
    eci = await sky.channel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await sky.http.post(
        f"/sky/event/{eci}/e/slow/call", params={"_timeout": "0.3"}, json={"sleep": 2.0}
    )
    assert loop.time() - started < 1.8
    answer = r.json()
    assert answer["pending"] == ["slowpoke"]
    assert {d["meta"]["rid"] for d in answer["directives"]} == {"quick"}


async def test_timeout_is_capped_by_the_configured_sync_timeout(sky: Sky) -> None:
    eci = await sky.channel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await sky.http.post(
        f"/sky/event/{eci}/e/slow/call", params={"_timeout": "60"}, json={"sleep": 3.0}
    )
    assert loop.time() - started < 2.5  # sync_timeout = 1 s
    assert r.json()["pending"] == ["slowpoke"]


async def test_a_sink_that_gave_up_is_listed_as_failed(sky: Sky) -> None:
    eci = await sky.channel()
    r = await sky.http.post(f"/sky/event/{eci}/e/broken/call")
    answer = r.json()
    assert answer["failed"] == [
        {"rid": "broken", "status": "failed", "error": "the receiver is down"}
    ]
    assert {d["meta"]["rid"] for d in answer["directives"]} == {"quick_too"}


async def test_async_answers_202_and_the_sinks_still_run(sky: Sky) -> None:
    eci = await sky.channel()
    seen: list[str] = []
    unsubscribe = sky.runtime.on_outcome(lambda event, outcome: seen.append(outcome.sink))
    try:
        r = await sky.http.post(f"/sky/event/{eci}/a/greet/hello", params={"_async": "true"})
        assert r.status_code == 202
        assert set(r.json()) == {"eid", "id"}
        await sky.runtime.wait_idle(5)
    finally:
        unsubscribe()
    assert "greeter" in seen


async def test_concurrent_requests_each_get_their_own_answer(sky: Sky) -> None:
    eci = await sky.channel()

    async def one(i: int) -> None:
        r = await sky.http.post(f"/sky/event/{eci}/e{i}/greet/hello", json={"name": f"n{i}"})
        answer = r.json()
        assert answer["eid"] == f"e{i}"
        assert answer["directives"][0]["options"] == {"text": f"hello n{i}"}

    await asyncio.gather(*(one(i) for i in range(60)))


async def test_a_users_channel_fires_that_users_sinks(sky: Sky) -> None:
    mine = await sky.channel(owner="alice")
    everyone = await sky.channel()
    r = await sky.http.post(f"/sky/event/{mine}/e/mine/thing")
    assert [d["meta"]["rid"] for d in r.json()["directives"]] == ["alices", "alices"]
    r = await sky.http.post(f"/sky/event/{everyone}/e/mine/thing")
    assert r.json()["directives"] == []


async def test_only_the_owner_or_a_global_manager_may_raise_on_a_channel(sky: Sky) -> None:
    eci = await sky.channel(owner="alice")
    url = f"/sky/event/{eci}/e/mine/thing"
    r = await sky.http.post(url, headers={"X-Test-User": "bob"})
    assert r.status_code == 403
    assert "belongs to user alice" in r.json()["error"]
    assert r.headers["access-control-allow-origin"] == "*"
    r = await sky.http.post(url, headers={"X-Test-User": "alice"})
    assert r.status_code == 200
    event = await sky.runtime.get_event(r.json()["id"])
    assert event is not None
    assert (event.owner, event.actor.username) == ("alice", "alice")
    assert (await sky.http.post(url, headers={"X-Test-User": "admin"})).status_code == 200


async def test_channel_api_shows_users_only_their_own_channels(sky: Sky) -> None:
    alice = {"X-Test-User": "alice"}
    bob = {"X-Test-User": "bob"}
    r = await sky.http.post("/api/channels", json={}, headers=alice)
    assert r.status_code == 201
    eci = r.json()["eci"]
    assert r.json()["owner"] == "alice"  # a user's channel is their own by default
    r = await sky.http.post("/api/channels", json={"owner": "alice"}, headers=bob)
    assert r.status_code == 403
    r = await sky.http.post("/api/channels", json={"owner": ""}, headers=bob)
    assert r.status_code == 403
    listed = (await sky.http.get("/api/channels", headers=bob)).json()["channels"]
    assert eci not in {c["eci"] for c in listed}
    assert (await sky.http.get(f"/api/channels/{eci}", headers=bob)).status_code == 404
    assert (await sky.http.delete(f"/api/channels/{eci}", headers=bob)).status_code == 404
    listed = (await sky.http.get("/api/channels", headers=alice)).json()["channels"]
    assert [c["eci"] for c in listed] == [eci]
    admin = (await sky.http.get("/api/channels", headers={"X-Test-User": "admin"})).json()
    assert eci in {c["eci"] for c in admin["channels"]}
    assert (await sky.http.delete(f"/api/channels/{eci}", headers=alice)).status_code == 200


async def test_channels_survive_a_restart(project: Path) -> None:
    async with Runtime(project) as runtime:
        channel = await runtime.channels.create(owner="alice", name="phone", deny=["custom.x.*"])
    async with Runtime(project) as runtime:
        again = runtime.channels.find(channel.eci)
        assert again == channel
        await runtime.channels.delete(channel.eci)
    async with Runtime(project) as runtime:
        assert runtime.channels.get(channel.eci) is None
