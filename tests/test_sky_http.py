"""The Sky Event API of a real `knot serve` on loopback: both encodings, attributes, eids,
reserved keys, errors, CORS and owner routing through channels."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .helpers import KnotServer, wait_until

CONFIG = """
[delivery]
backoff = 0.01
attempts = 1
sync_timeout = 5.0

[[sinks]]
name = "everything"
type = "recording"
events = "custom.*"

[[sinks]]
name = "slow"
type = "recording"
events = "custom.slow.*"
delay = 1.5

[[sinks]]
name = "rid_one"
type = "recording"
events = "custom.rids.*"

[[sinks]]
name = "rid_two"
type = "recording"
events = "custom.rids.*"

[[sinks]]
name = "alice_sink"
type = "recording"
events = "custom.owned.*"
owner = "alice"

[[sinks]]
name = "bob_sink"
type = "recording"
events = "custom.owned.*"
owner = "bob"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("sky")
    (project / "knot.toml").write_text(CONFIG)
    srv = KnotServer(project, quiet=True)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def http(server: KnotServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def eci(http: httpx.Client) -> str:
    r = http.post("/api/channels", json={"name": "tests"})
    assert r.status_code == 201, r.text
    value: str = r.json()["eci"]
    return value


def stored(http: httpx.Client, answer: httpx.Response) -> dict[str, Any]:
    """The journaled event a Sky answer talks about."""
    assert answer.status_code in (200, 202), answer.text
    r = http.get(f"/api/events/{answer.json()['id']}")
    assert r.status_code == 200
    event: dict[str, Any] = r.json()
    return event


def delivered(http: httpx.Client, sink: str) -> int:
    count: int = http.get(f"/api/sinks/{sink}").json()["delivered"]
    return count


# -- both encodings ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_path_encoding_raises_custom_domain_type(http: httpx.Client, eci: str, method: str) -> None:
    r = http.request(method, f"/sky/event/{eci}/e1/myapp/hello", params={"name": "ada"})
    assert r.status_code == 200
    assert r.json()["eid"] == "e1"
    assert r.json()["directives"] == []
    event = stored(http, r)
    assert event["type"] == "custom.myapp.hello"
    assert event["data"] == {"name": "ada"}
    assert event["eid"] == "e1"
    assert uuid.UUID(event["id"]).version == 7


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("type_key", ["_type", "_name"])
def test_query_encoding_takes_domain_and_type_or_name(
    http: httpx.Client, eci: str, method: str, type_key: str
) -> None:
    params = {"_domain": "myapp", type_key: "ping", "n": "1"}
    r = http.request(method, f"/sky/event/{eci}/q1", params=params)
    event = stored(http, r)
    assert event["type"] == "custom.myapp.ping"
    assert event["data"] == {"n": "1"}  # reserved keys are not attributes


def test_query_encoding_without_an_eid_generates_one(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}", params={"_domain": "myapp", "_type": "noeid"})
    event = stored(http, r)
    assert r.json()["eid"] == event["id"]
    assert "eid" not in event


def test_type_wins_over_name_and_attributes_override_the_path(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/o1/pathdomain/pathtype",
        params={"_domain": "querydomain", "_name": "fromname", "_type": "fromtype"},
    )
    assert stored(http, r)["type"] == "custom.querydomain.fromtype"
    r = http.post(
        f"/sky/event/{eci}/o2/pathdomain/pathtype",
        json={"_type": "bodytype"},
    )
    assert stored(http, r)["type"] == "custom.pathdomain.bodytype"


def test_dotted_domain_and_a_custom_domain_keep_the_prefix_once(
    http: httpx.Client, eci: str
) -> None:
    r = http.post(f"/sky/event/{eci}/d1/my.app/deployed")
    assert stored(http, r)["type"] == "custom.my.app.deployed"
    r = http.post(f"/sky/event/{eci}/d2/custom/x")
    assert stored(http, r)["type"] == "custom.custom.x"


# -- attributes ------------------------------------------------------------------------------


def test_kre_docs_json_body_example(http: httpx.Client, eci: str) -> None:
    # The Sky Event API docs: "to send the attributes temperature and node_id".
    body = {"temperature": 67, "node_id": "2392029d003a:1"}
    r = http.post(f"/sky/event/{eci}/kre/sensor/reading", json=body)
    event = stored(http, r)
    assert event["data"] == {"temperature": 67, "node_id": "2392029d003a:1"}
    assert event["type"] == "custom.sensor.reading"


def test_form_body(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/f1/sensor/reading",
        data={"temperature": "67", "node_id": "2392029d003a:1", "_rids": ""},
    )
    assert stored(http, r)["data"] == {"temperature": "67", "node_id": "2392029d003a:1"}


def test_vendor_json_media_type_is_read_as_json(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/v1/sensor/reading",
        content=json.dumps({"nested": {"a": [1, 2]}}),
        headers={"Content-Type": "application/vnd.x+json; charset=utf-8"},
    )
    assert stored(http, r)["data"] == {"nested": {"a": [1, 2]}}


def test_body_wins_over_query_and_both_are_merged(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/m1/merge/test", params={"a": "query", "b": "query"}, json={"a": 2}
    )
    assert stored(http, r)["data"] == {"a": 2, "b": "query"}
    r = http.post(f"/sky/event/{eci}/m2/merge/test", params={"a": "query"}, data={"a": "form"})
    assert stored(http, r)["data"] == {"a": "form"}


def test_attribute_keys_and_values_are_not_trimmed(http: httpx.Client, eci: str) -> None:
    # pico-engine's cleanEvent: "don't trim these".
    attrs = {" foo ": " don't trim these   "}
    r = http.post(f"/sky/event/{eci}/t1/foo/bar", json=attrs)
    assert stored(http, r)["data"] == attrs


def test_reserved_keys_never_become_attributes(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/r1/foo/bar",
        params={"_epi": "x", "_anything": "y"},
        json={"_async": 0, "_private": 1, "kept": True},
    )
    assert stored(http, r)["data"] == {"kept": True}


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[1, 2]", "an array"), ("1", "a number"), ('"{\\"one\\":1}"', "a string")],
)
def test_attributes_that_are_not_a_json_object_are_400(
    http: httpx.Client, eci: str, body: str, kind: str
) -> None:
    # pico-framework's cleanEvent refuses these with "Expected a JSON map".
    r = http.post(
        f"/sky/event/{eci}/bad/foo/bar",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert kind in r.json()["error"]
    assert "JSON object" in r.json()["error"]


def test_bad_json_body_is_400_with_position(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/bad/foo/bar",
        content=b'{"a": ',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]
    assert "line 1" in r.json()["error"]


def test_unsupported_body_type_is_400_naming_the_accepted_types(
    http: httpx.Client, eci: str
) -> None:
    # DESIGN.md (Sky): "bad body → 400". The answer names what we read, and a web page can read it.
    r = http.post(
        f"/sky/event/{eci}/bad/foo/bar", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert "text/plain" in error
    assert "application/json" in error
    assert "application/x-www-form-urlencoded" in error
    assert r.headers["access-control-allow-origin"] == "*"


def test_body_over_the_limit_is_413(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}/big/foo/bar", json={"x": "a" * (3 * 1024 * 1024)})
    assert r.status_code == 413


# -- eid --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "kept"), [("%20foo%20", "foo"), ("3%203%203%203", "3 3 3 3")])
def test_eid_is_trimmed_and_kept(http: httpx.Client, eci: str, raw: str, kept: str) -> None:
    r = http.post(f"/sky/event/{eci}/{raw}/foo/bar")
    assert r.json()["eid"] == kept
    assert stored(http, r)["eid"] == kept


@pytest.mark.parametrize("raw", ["none", "null", "NULL", "None", "%20%20", ""])
def test_empty_none_and_null_eids_are_generated(http: httpx.Client, eci: str, raw: str) -> None:
    r = http.post(f"/sky/event/{eci}/{raw}/foo/bar")
    event = stored(http, r)
    assert r.json()["eid"] == event["id"]  # the generated eid is the event's UUIDv7 id
    assert "eid" not in event


def test_eid_may_carry_an_encoded_slash(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}/a%2Fb/foo/bar")
    assert r.json()["eid"] == "a/b"


# -- reserved keys -----------------------------------------------------------------------------


def test_rids_limit_delivery_to_the_named_sinks(http: httpx.Client, eci: str) -> None:
    one, two = delivered(http, "rid_one"), delivered(http, "rid_two")
    r = http.post(f"/sky/event/{eci}/r/rids/go", params={"_rids": "rid_one;everything"})
    assert stored(http, r)["rids"] == ["rid_one", "everything"]
    assert delivered(http, "rid_one") == one + 1
    assert delivered(http, "rid_two") == two
    r = http.post(f"/sky/event/{eci}/r/rids/go", json={"_rids": ["rid_two"]})
    assert r.status_code == 200
    assert delivered(http, "rid_one") == one + 1
    assert delivered(http, "rid_two") == two + 1


def test_async_answers_202_without_waiting_for_sinks(http: httpx.Client, eci: str) -> None:
    started = time.monotonic()
    r = http.post(f"/sky/event/{eci}/as1/slow/thing", params={"_async": "1"})
    elapsed = time.monotonic() - started
    assert r.status_code == 202
    assert r.json()["eid"] == "as1"
    assert elapsed < 1.0  # the slow sink takes 1.5 s
    assert stored(http, r)["type"] == "custom.slow.thing"  # journaled before the answer


def test_timeout_lists_the_sinks_that_did_not_finish(http: httpx.Client, eci: str) -> None:
    started = time.monotonic()
    r = http.post(f"/sky/event/{eci}/to1/slow/thing", params={"_timeout": "0.2"})
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.json()["pending"] == ["slow"]
    assert "everything" not in r.json()["pending"]
    assert elapsed < 1.4


def test_without_timeout_the_answer_waits_for_slow_sinks(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}/to2/slow/thing")
    assert r.status_code == 200
    assert "pending" not in r.json()


def test_timestamp_sets_the_event_time(http: httpx.Client, eci: str) -> None:
    r = http.post(
        f"/sky/event/{eci}/ts1/foo/bar", params={"_timestamp": "2024-05-01T14:00:00.5+02:00"}
    )
    assert stored(http, r)["ts"] == "2024-05-01T12:00:00.500000Z"


@pytest.mark.parametrize("bad", ["yesterday", "2024-05-01", "2024-13-01T00:00:00Z"])
def test_bad_timestamp_is_400(http: httpx.Client, eci: str, bad: str) -> None:
    r = http.post(f"/sky/event/{eci}/ts2/foo/bar", params={"_timestamp": bad})
    assert r.status_code == 400
    assert "_timestamp" in r.json()["error"]


@pytest.mark.parametrize(("key", "value"), [("_async", "maybe"), ("_timeout", "-1")])
def test_bad_reserved_values_are_400(http: httpx.Client, eci: str, key: str, value: str) -> None:
    r = http.post(f"/sky/event/{eci}/x/foo/bar", params={key: value})
    assert r.status_code == 400
    assert key in r.json()["error"]


# -- errors -----------------------------------------------------------------------------------


def test_unknown_eci_is_404(http: httpx.Client) -> None:
    r = http.post("/sky/event/no-such-eci/e/foo/bar")
    assert r.status_code == 404
    assert "no-such-eci" in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "missing"),
    [
        ("/e", {"_type": "t"}, "domain"),
        ("/e", {"_domain": "d"}, "type"),
        ("/e/d", {}, "type"),
        ("", {}, "domain"),
    ],
)
def test_missing_domain_or_type_is_400(
    http: httpx.Client, eci: str, path: str, params: dict[str, str], missing: str
) -> None:
    r = http.get(f"/sky/event/{eci}{path}", params=params)
    assert r.status_code == 400
    assert f"no {missing}" in r.json()["error"]


def test_invalid_domain_is_400_naming_it(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}/e/my%20app/bar")
    assert r.status_code == 400
    assert "domain 'my app'" in r.json()["error"]


def test_too_many_path_parts_is_404(http: httpx.Client, eci: str) -> None:
    r = http.post(f"/sky/event/{eci}/e/a/b/c")
    assert r.status_code == 404
    assert "not a Sky event URL" in r.json()["error"]


def test_head_raises_nothing(http: httpx.Client, eci: str) -> None:
    before = len(http.get("/api/events", params={"pattern": "custom.head.*"}).json()["events"])
    r = http.head(f"/sky/event/{eci}/e/head/x")
    assert r.status_code == 405
    after = len(http.get("/api/events", params={"pattern": "custom.head.*"}).json()["events"])
    assert after == before


# -- CORS -------------------------------------------------------------------------------------


def test_cors_header_on_answers_and_errors(http: httpx.Client, eci: str) -> None:
    for r in (
        http.get(f"/sky/event/{eci}/c/foo/bar"),
        http.get(f"/sky/event/{eci}/c/foo"),
        http.get("/sky/event/nope/c/foo/bar"),
        http.post(f"/sky/event/{eci}/c/foo/bar", params={"_async": "1"}),
    ):
        assert r.headers["access-control-allow-origin"] == "*", r.status_code


def test_options_answers_a_preflight(http: httpx.Client, eci: str) -> None:
    r = http.options(
        f"/sky/event/{eci}/c/foo/bar",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-custom",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "content-type, x-custom"
    before = http.get("/api/events", params={"pattern": "custom.foo.bar"}).json()["events"]
    r = http.options(f"/sky/event/{eci}/c/foo/bar")
    assert r.status_code == 204
    after = http.get("/api/events", params={"pattern": "custom.foo.bar"}).json()["events"]
    assert len(after) == len(before)


# -- channels: owners and policies ------------------------------------------------------------


def test_events_on_a_users_channel_fire_that_users_sinks(http: httpx.Client) -> None:
    alice = http.post("/api/channels", json={"owner": "alice"}).json()["eci"]
    a, b = delivered(http, "alice_sink"), delivered(http, "bob_sink")
    r = http.post(f"/sky/event/{alice}/o/owned/thing")
    assert stored(http, r)["owner"] == "alice"
    assert delivered(http, "alice_sink") == a + 1
    assert delivered(http, "bob_sink") == b
    assert delivered(http, "everything") > 0  # global sinks still fire


def test_global_channel_fires_no_user_sinks(http: httpx.Client, eci: str) -> None:
    a, b = delivered(http, "alice_sink"), delivered(http, "bob_sink")
    r = http.post(f"/sky/event/{eci}/o/owned/thing")
    assert stored(http, r)["owner"] == ""
    assert (delivered(http, "alice_sink"), delivered(http, "bob_sink")) == (a, b)


def test_channel_policy_refuses_with_403_and_audits(http: httpx.Client) -> None:
    channel = http.post(
        "/api/channels", json={"allow": ["custom.myapp.*"], "deny": ["custom.myapp.admin.*"]}
    ).json()
    eci = channel["eci"]
    assert channel["policy"] == {"allow": ["custom.myapp.*"], "deny": ["custom.myapp.admin.*"]}
    assert http.post(f"/sky/event/{eci}/p/myapp/hello").status_code == 200
    r = http.post(f"/sky/event/{eci}/p/other/hello")
    assert r.status_code == 403
    assert "allows only custom.myapp.*" in r.json()["error"]
    assert r.headers["access-control-allow-origin"] == "*"
    r = http.post(f"/sky/event/{eci}/p/myapp.admin/reset")
    assert r.status_code == 403
    assert "denies 'custom.myapp.admin.*'" in r.json()["error"]

    def audited() -> bool:
        audit: list[dict[str, str]] = http.get("/api/audit", params={"n": 10}).json()["audit"]
        return sum(e["title"] == "Access Denied" and eci in e["message"] for e in audit) == 2

    wait_until(audited)


def test_deleted_channel_is_404(http: httpx.Client) -> None:
    eci = http.post("/api/channels", json={}).json()["eci"]
    assert http.post(f"/sky/event/{eci}/x/foo/bar").status_code == 200
    assert http.delete(f"/api/channels/{eci}").status_code == 200
    assert http.post(f"/sky/event/{eci}/x/foo/bar").status_code == 404
    assert http.get(f"/api/channels/{eci}").status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"eci": "has space"}, "eci 'has space' is not valid"),
        ({"owner": "no spaces please"}, "not a valid user id"),
        ({"allow": ["sp*"]}, "'sp*' is not supported"),
        ({"colour": "red"}, "Unknown field"),
    ],
)
def test_bad_channel_definitions_are_400(
    http: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    r = http.post("/api/channels", json=body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]


def test_duplicate_eci_is_refused(http: httpx.Client) -> None:
    assert http.post("/api/channels", json={"eci": "fixed-eci"}).status_code == 201
    r = http.post("/api/channels", json={"eci": "fixed-eci"})
    assert r.status_code == 400
    assert "already exists" in r.json()["error"]
