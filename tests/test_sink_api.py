"""`/api/event-sinks` on a real `knot serve` (no users: the local user may do everything)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .helpers import KnotServer, wait_until
from .receiver import Receiver

CONFIG = """
[delivery]
backoff = 0.01
attempts = 2
[[sinks]]
name = "toml_sink"
type = "recording"
events = "custom.toml.*"
"""


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("sinkapi")
    (project / "knot.toml").write_text(CONFIG)
    srv = KnotServer(project)
    yield srv
    srv.kill()


@pytest.fixture
def http(server: KnotServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def names(http: httpx.Client, route: str = "/api/event-sinks") -> set[str]:
    return {s["name"] for s in http.get(route).json()["sinks"]}


def webhook(receiver: Receiver, name: str, path: str, **extra: Any) -> dict[str, Any]:
    base = {"name": name, "type": "webhook", "events": "custom.api.*", "url": receiver.url(path)}
    return base | extra


def test_create_list_get_update_delete(http: httpx.Client, module_receiver: Receiver) -> None:
    r = http.post("/api/event-sinks", json=webhook(module_receiver, "crud", "/crud"))
    assert r.status_code == 201
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["origin"] == "api"
    assert created["owner"] == ""  # the local user creates global sinks
    listing = http.get("/api/event-sinks").text
    assert "crud" in listing
    assert secret not in listing
    assert names(http, "/api/sinks") == names(http)  # the alias lists the same sinks
    got = http.get("/api/event-sinks/crud").json()
    assert got["url"] == module_receiver.url("/crud")
    assert secret not in json.dumps(got)

    patched = http.patch("/api/event-sinks/crud", json={"events": "custom.api.one"})
    assert patched.status_code == 200
    assert patched.json()["events"] == "custom.api.one"
    http.post("/event", json={"type": "api.two", "payload": {}})
    one = http.post("/event", json={"type": "api.one", "payload": {"n": 1}}).json()["id"]
    (hit,) = module_receiver.wait_for(1, "/crud")
    assert hit.headers["x-knot-event-id"] == one
    expected = "sha256=" + hmac.new(secret.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["x-knot-signature"] == expected  # the update kept the secret
    assert http.get("/api/event-sinks/crud/secret").json() == {"sink": "crud", "secret": secret}

    put = http.put("/api/event-sinks/crud", json={"type": "recording", "events": "custom.api.put"})
    assert put.status_code == 200
    assert put.json()["type"] == "recording"
    assert "url" not in put.json()

    deleted = http.delete("/api/event-sinks/crud")
    assert deleted.status_code == 200
    assert deleted.json()["removed"]["name"] == "crud"
    assert "crud" not in names(http)
    assert http.get("/api/event-sinks/crud").status_code == 404
    assert http.delete("/api/event-sinks/crud").status_code == 404


def test_sinks_created_at_run_time_survive_a_restart(
    server_factory: type[KnotServer], tmp_path: Any, module_receiver: Receiver
) -> None:
    project = tmp_path / "restart"
    project.mkdir()
    first = server_factory(project)
    with first.client() as http:
        secret = http.post(
            "/api/event-sinks", json=webhook(module_receiver, "kept", "/kept")
        ).json()["secret"]
    first.terminate()
    second = server_factory(project)
    with second.client() as http:
        assert "kept" in names(http)
        assert http.get("/api/event-sinks/kept/secret").json()["secret"] == secret
        http.post("/event", json={"type": "api.kept", "payload": {}})
    (hit,) = module_receiver.wait_for(1, "/kept")
    expected = "sha256=" + hmac.new(secret.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["x-knot-signature"] == expected


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ({"name": "x", "type": "webhook", "events": "*"}, "The sink name 'x' is not valid"),
        (
            {"name": "bad_pat", "type": "webhook", "events": "*.created", "url": "http://h/"},
            "*.created",
        ),
        (
            {"name": "bad_url", "type": "webhook", "events": "*", "url": "file:///etc"},
            "http:// or https://",
        ),
        (
            {
                "name": "bad_tpl",
                "type": "webhook",
                "events": "*",
                "url": "http://h/",
                "body_template": "${{ json }}",
            },
            "line 1, column 5: json takes 1 argument",
        ),
        (
            {"name": "bad_type", "type": "carrier-pigeon", "events": "*"},
            "unknown type 'carrier-pigeon'",
        ),
        (
            {
                "name": "rpc_str",
                "type": "json-rpc",
                "events": "*",
                "body_template": '"just a string"',
            },
            'The body_template renders str params ("just a string" for a test event); '
            "JSON-RPC params are an object or an array.",
        ),
        (
            {
                "name": "rpc_num",
                "type": "json-rpc",
                "events": "*",
                "body_template": "${{ json .event.data.test }}",
            },
            "renders bool params (true for a test event)",
        ),
    ],
)
def test_invalid_definitions_are_400_and_change_nothing(
    http: httpx.Client, definition: dict[str, Any], words: str
) -> None:
    before = names(http)
    r = http.post("/api/event-sinks", json=definition)
    assert r.status_code == 400
    assert words in r.json()["error"]
    assert names(http) == before


def test_json_rpc_templates_that_depend_on_the_event_are_accepted(http: httpx.Client) -> None:
    # The test event has no data.params: null (or no JSON at all) is the data's doing.
    for name, template in (("rpc_data", "${{ json .event.data.params }}"), ("rpc_obj", "[1]")):
        definition = {"name": name, "type": "json-rpc", "events": "*", "body_template": template}
        assert http.post("/api/event-sinks", json=definition).status_code == 201
        http.delete(f"/api/event-sinks/{name}")


def test_duplicates_and_config_sinks_are_409(http: httpx.Client, module_receiver: Receiver) -> None:
    dup = http.post("/api/event-sinks", json=webhook(module_receiver, "toml_sink", "/x"))
    assert dup.status_code == 409
    assert "in knot.toml" in dup.json()["error"]
    for method in ("PATCH", "DELETE"):
        r = http.request(method, "/api/event-sinks/toml_sink", json={"events": "*"})
        assert r.status_code == 409
        assert "defined in knot.toml ([[sinks]]); change it there" in r.json()["error"]
    assert http.get("/api/event-sinks/toml_sink").json()["events"] == "custom.toml.*"
    assert (
        http.post("/api/event-sinks", json=webhook(module_receiver, "twice", "/t")).status_code
        == 201
    )
    again = http.post("/api/event-sinks", json=webhook(module_receiver, "twice", "/t"))
    assert again.status_code == 409
    assert http.patch("/api/event-sinks/twice", json={"name": "renamed"}).status_code == 400


def test_the_test_action_shows_the_receivers_answer(
    http: httpx.Client, module_receiver: Receiver
) -> None:
    http.post("/api/event-sinks", json=webhook(module_receiver, "tested", "/tested"))
    before = len(http.get("/api/events", params={"n": 1000}).json()["events"])
    answer = http.post("/api/event-sinks/tested/test").json()
    assert answer["delivered"] is True
    assert answer["detail"] == 'HTTP 200 OK: {"received": "/tested", "status": 200}'
    assert answer["event"]["type"] == "custom.knot.test"
    (hit,) = module_receiver.at("/tested")
    assert hit.json()["data"] == {"test": True, "sink": "tested"}
    custom = http.post(
        "/api/event-sinks/tested/test", json={"type": "custom.api.x", "payload": {"k": 1}}
    ).json()
    assert custom["delivered"] is True
    assert module_receiver.at("/tested")[-1].json()["data"] == {"k": 1}
    # A test is one direct delivery: nothing is journaled or routed to other sinks.
    assert len(http.get("/api/events", params={"n": 1000}).json()["events"]) == before

    module_receiver.plan("/failing", [500])
    http.post("/api/event-sinks", json=webhook(module_receiver, "failing", "/failing"))
    failed = http.post("/api/event-sinks/failing/test").json()
    assert failed["delivered"] is False
    assert "answered HTTP 500 Internal Server Error: " in failed["error"]
    assert len(module_receiver.at("/failing")) == 1  # one attempt, no retries


def test_the_test_action_on_a_closed_port(http: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    http.post(
        "/api/event-sinks", json={"name": "nobody", "type": "webhook", "events": "*", "url": url}
    )
    answer = http.post("/api/event-sinks/nobody/test").json()
    assert answer["delivered"] is False
    assert answer["error"] == f"Cannot connect to {url}: connection refused."
    http.delete("/api/event-sinks/nobody")


def test_webhook_deliveries_are_audited_and_listed(
    http: httpx.Client, module_receiver: Receiver
) -> None:
    module_receiver.plan("/down", [503, 503])
    http.post(
        "/api/event-sinks", json=webhook(module_receiver, "down", "/down", events="custom.down")
    )
    event_id = http.post("/event", json={"type": "down", "payload": {}}).json()["id"]

    def given_up() -> bool:
        audit = http.get("/api/audit", params={"sink": "down"}).json()["audit"]
        return any(e["event_id"] == event_id for e in audit)

    wait_until(given_up)
    (entry,) = http.get("/api/audit", params={"sink": "down"}).json()["audit"]
    assert entry["title"] == "Event Sink Delivery Failed"
    assert "answered HTTP 503" in entry["message"]
    status = http.get("/api/event-sinks/down").json()
    assert status["failed"] == 1
    assert status["last_status"] == 503
    assert "answered HTTP 503" in status["last_error"]
