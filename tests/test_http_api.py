"""The agent API and /api routes of a real `knot serve` on loopback."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import KnotServer, wait_until

CONFIG = """
zone = "testzone"
[delivery]
backoff = 0.01
attempts = 2
[[sinks]]
name = "all_events"
type = "recording"
events = "*"
[[sinks]]
name = "broken"
type = "recording"
events = "custom.fail.*"
fail_attempts = 9
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("api")
    (project / "knot.toml").write_text(CONFIG)
    srv = KnotServer(project)
    yield srv
    srv.kill()


@pytest.fixture
def http(server: KnotServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def count_events(http: httpx.Client) -> int:
    return len(http.get("/api/events", params={"n": 10000}).json()["events"])


def test_post_event_answers_202_with_the_id(http: httpx.Client, server: KnotServer) -> None:
    r = http.post("/event", json={"type": "myapp.deployed", "payload": {"version": "1.2"}})
    assert r.status_code == 202
    event_id = r.json()["id"]
    assert uuid.UUID(event_id).version == 7
    got = http.get(f"/api/events/{event_id}").json()
    assert got["type"] == "custom.myapp.deployed"
    assert got["zone"] == "testzone"
    assert got["data"] == {"version": "1.2"}
    server.wait_for_line(rf"custom\.myapp\.deployed {event_id} → all_events")


def test_system_types_cannot_be_forged_over_http(http: httpx.Client) -> None:
    event_id = http.post("/event", json={"type": "space.created", "payload": {}}).json()["id"]
    assert http.get(f"/api/events/{event_id}").json()["type"] == "custom.space.created"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"payload": {}}', "no 'type'"),
        (b'{"type": "a b"}', "not valid"),
        (b'{"type": "ok", "payload": [1]}', "an array"),
        (b'{"type": "ok", "payload": "s"}', "a string"),
        (b'{"type": 7}', "string"),
        (b'{"type": "ok", "extra": 1}', "Unknown field"),
        (b'{"type": "ok", "id": "nope"}', "not a UUID"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_input_is_400_with_a_reason_and_changes_nothing(
    http: httpx.Client, body: bytes, words: str
) -> None:
    before = count_events(http)
    r = http.post("/event", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert words in r.json()["error"]
    assert count_events(http) == before


def test_oversized_body_is_413(http: httpx.Client) -> None:
    before = count_events(http)
    big = json.dumps({"type": "x", "payload": {"s": "a" * (3 * 1024 * 1024)}})
    r = http.post("/event", content=big)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    assert count_events(http) == before


def test_oversized_payload_is_400(http: httpx.Client) -> None:
    r = http.post("/event", json={"type": "x", "payload": {"s": "a" * (1024 * 1024 + 10)}})
    assert r.status_code == 400
    assert "1048576 bytes" in r.json()["error"]


def test_duplicate_id_is_ignored(http: httpx.Client) -> None:
    fixed = str(uuid.uuid4())
    first = http.post("/event", json={"type": "dup.x", "payload": {"n": 1}, "id": fixed})
    second = http.post("/event", json={"type": "dup.x", "payload": {"n": 2}, "id": fixed})
    assert first.status_code == second.status_code == 202
    assert second.json() == {"id": fixed, "duplicate": True}
    events = http.get("/api/events", params={"pattern": "custom.dup.*"}).json()["events"]
    assert [e["data"] for e in events] == [{"n": 1}]


def test_healthz(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "zone": "testzone"}


def test_events_listing_filters_by_pattern(http: httpx.Client) -> None:
    for kind in ("flt.a", "flt.b", "other.c"):
        http.post("/event", json={"type": kind, "payload": {}})
    events = http.get("/api/events", params={"pattern": "custom.flt.*"}).json()["events"]
    assert [e["type"] for e in events][-2:] == ["custom.flt.a", "custom.flt.b"]
    assert all(e["type"].startswith("custom.flt.") for e in events)
    bad = http.get("/api/events", params={"pattern": "*.a"})
    assert bad.status_code == 400
    assert "'*.a'" in bad.json()["error"]
    assert http.get("/api/events", params={"n": "x"}).status_code == 400


def test_unknown_event_is_404(http: httpx.Client) -> None:
    r = http.get(f"/api/events/{uuid.uuid4()}")
    assert r.status_code == 404
    assert "no event" in r.json()["error"]


def test_sinks_listing_and_give_up_audit(http: httpx.Client) -> None:
    http.post("/event", json={"type": "fail.now", "payload": {}})

    def audited() -> bool:
        entries = http.get("/api/audit").json()["audit"]
        return any(e["sink"] == "broken" for e in entries)

    wait_until(audited)
    entry = next(e for e in http.get("/api/audit").json()["audit"] if e["sink"] == "broken")
    assert entry["title"] == "Event Sink Delivery Failed"
    sinks = {s["name"]: s for s in http.get("/api/sinks").json()["sinks"]}
    assert set(sinks) == {"all_events", "broken"}
    assert sinks["broken"]["failed"] >= 1
    assert sinks["all_events"]["delivered"] >= 1
    assert http.get("/api/sinks/broken").json()["events"] == "custom.fail.*"
    assert http.get("/api/sinks/nope").status_code == 404


def test_event_stream_delivers_routed_events(server: KnotServer, http: httpx.Client) -> None:
    received: list[dict[str, object]] = []
    connected = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(base_url=server.url, timeout=10) as c,
            c.stream("GET", "/api/events/stream", params={"pattern": "custom.live.*"}) as r,
        ):
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert connected.wait(10)
    http.post("/event", json={"type": "other.skip", "payload": {}})
    sent = http.post("/event", json={"type": "live.one", "payload": {"k": 1}}).json()["id"]
    thread.join(10)
    assert [e["id"] for e in received] == [sent]
    assert received[0]["sinks"] == ["all_events"]


def test_knot_serve_log_line_per_routed_event(server: KnotServer, http: httpx.Client) -> None:
    event_id = http.post("/event", json={"type": "logme", "payload": {}}).json()["id"]
    line = server.wait_for_line(event_id)
    assert "INFO:" in line
    assert "custom.logme" in line


def test_store_lives_under_the_project(server: KnotServer) -> None:
    assert (Path(server.project) / ".knot" / "knot.db").exists()


def test_unknown_routes_and_methods_are_json_errors(http: httpx.Client) -> None:
    """Found by fuzzing: starlette answered these in plain text."""
    missing = http.get("/api/nothing")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "There is no route /api/nothing; see the HTTP API in docs/reference/http.md."
    }
    wrong = http.put("/event", json={})
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "/event does not take PUT requests."}
    assert wrong.headers["allow"] == "POST"


def test_a_declared_body_over_the_limit_is_413_on_any_route(http: httpx.Client) -> None:
    big = b"x" * (3 * 1024 * 1024)
    for method, path in [("POST", "/api/spaces/nope/start"), ("GET", "/healthz")]:
        r = http.request(method, path, content=big)
        assert r.status_code == 413, (path, r.text)
        assert "the limit is 2097152 bytes (server.max_body_bytes)" in r.json()["error"]


def test_nan_in_a_body_is_not_json(http: httpx.Client) -> None:
    r = http.post("/event", content=b'{"type": "x", "payload": {"n": NaN}}')
    assert r.status_code == 400
    assert r.json() == {"error": "The request body is not valid JSON: NaN is not a JSON value."}


def test_a_lone_surrogate_is_not_text_and_breaks_nothing(http: httpx.Client) -> None:
    # It once reached SQLite, which could not encode it: 500, and the whole write batch lost.
    r = http.post("/event", content=b'{"type": "x", "payload": {"a": "\\ud800"}}')
    assert r.status_code == 400
    assert "lone surrogate" in r.json()["error"]
    pair = http.post("/event", content=b'{"type": "x", "payload": {"a": "\\ud83d\\ude00"}}')
    assert pair.status_code == 202  # a surrogate pair is one character, and welcome


@pytest.mark.parametrize("route", ["/event", "/json-rpc", "/api/event-sinks"])
def test_json_nested_past_the_limit_is_refused_and_the_connection_lives(
    http: httpx.Client, route: str
) -> None:
    deep = "[" * 3000 + "]" * 3000
    r = http.post(route, content=f'{{"type": "x", "payload": {{"n": {deep}}}}}'.encode())
    if route == "/json-rpc":
        assert r.status_code == 200
        assert r.json()["error"]["code"] == -32700
    else:
        assert r.status_code == 400, r.text
        assert "nests deeper than 100 levels" in r.json()["error"]
    assert http.get("/healthz").status_code == 200  # the same keep-alive connection
    shallow = "[" * 98 + "]" * 98  # with the body's two objects: 100 levels, the most allowed
    ok = http.post("/event", content=f'{{"type": "x", "payload": {{"n": {shallow}}}}}'.encode())
    assert ok.status_code == 202
    assert http.post("/event", json={"type": "x", "payload": {"n": [[[]]] * 2}}).status_code == 202
