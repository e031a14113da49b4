"""Fuzz every HTTP route of a real `knot serve` on loopback.

The routes come from the app itself (`create_app(...).routes`), so a route added later is
fuzzed without touching this file. For each request: never a 5xx, never a traceback in the
server's log, every rejection a 4xx with a JSON `error` that says something, and a rejected
request changes nothing: the journal, the audit log and every persisted record (sinks,
channels, spaces, users...) are counted from the store before and after. The one change a
rejection may make is the security audit entry of a refused (403) request: recording refusals
is the point of that log.

A write can be acknowledged before the audit entries it causes are committed; each check
therefore first sends a barrier event, journaled after everything before it, and counts once
that is acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Route

from knot import Runtime
from knot.server import create_app

from .fuzz_server import MAX_BODY, TOKENS, FuzzTarget
from .fuzzing import bodies, event_types, fuzz, json_objects, json_values, queries, texts


def app_routes() -> list[Route]:
    """Every route of the app `knot serve` runs, but the dashboard's: it answers HTML to
    browser sessions, not JSON to bearer tokens (tests/test_ui.py fuzzes it)."""
    app = create_app(Runtime(Path("/nonexistent-knot-fuzz-project")))
    routes = []
    for route in app.routes:
        if getattr(route, "path", "").startswith("/ui"):
            continue
        assert isinstance(route, Route), f"a route type the fuzzer does not know: {route!r}"
        routes.append(route)
    return routes


# HEAD is starlette's echo of GET, answered without a body: left out.
ROUTES = [
    (route.path, method)
    for route in app_routes()
    for method in sorted(route.methods or ())
    if method != "HEAD"
]
BODY_ROUTES = [(t, m) for t, m in ROUTES if m in ("POST", "PUT", "PATCH", "DELETE")]
READS_BODY = {  # these must count a chunked body (others may, or may ignore it)
    ("/event", "POST"),
    ("/api/channels", "POST"),
    ("/api/spaces", "POST"),
    ("/sky/event/{rest:path}", "POST"),
    ("/sky/event/{rest:path}", "GET"),
}


def path_values(target: FuzzTarget, param: str) -> st.SearchStrategy[str]:
    known = {
        "event_id": [target.event_id],
        "name": ["rec", "echo"],
        "eci": [target.eci, target.strict_eci],
        "script": ["fuzzm"],
        "function": ["echo", "count", "boom"],
    }.get(param, [])
    return st.one_of(st.sampled_from(known), texts) if known else texts


def sky_rest(target: FuzzTarget) -> st.SearchStrategy[str]:
    """What follows /sky/event/: eci/eid/domain/type, with every part fuzzed or left out."""
    part = st.one_of(texts.map(lambda t: quote(t, safe="")), st.sampled_from(["", "none", "fuzz"]))
    eci = st.sampled_from([target.eci, target.strict_eci, "nope"]) | part
    return st.builds(lambda e, rest: "/".join([e, *rest]), eci, st.lists(part, max_size=4))


def fill_path(target: FuzzTarget, template: str, data: st.DataObject) -> str:
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name, _, kind = path[start + 1 : end].partition(":")
        if kind == "path":
            value = data.draw(sky_rest(target) if template.startswith("/sky/") else texts)
        else:
            value = quote(data.draw(path_values(target, name)), safe="")
        path = path[:start] + value + path[end + 1 :]
    return path


def check_answer(target: FuzzTarget, response: httpx.Response, body: bytes) -> None:
    status = response.status_code
    where = f"{response.request.method} {response.request.url} -> {status}: {body[:300]!r}"
    if status == 502 and response.request.url.path.startswith("/sky/cloud/"):
        # The method itself failed (it raised): the Sky Cloud API's "bad gateway", with the
        # JSON-RPC error code of the failure.
        assert isinstance(json.loads(body).get("code"), int), where
        return
    assert status < 500, where
    if status >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), where
        answer = json.loads(body)
        assert isinstance(answer, dict), where
        assert isinstance(answer.get("error"), str), where
        assert len(answer["error"]) > 10, where
    elif 300 <= status < 400:
        # starlette's trailing-slash redirect (/api/spaces/ -> /api/spaces): stays on this host
        assert response.headers["location"].startswith(str(target.client.base_url)), where
    elif response.request.url.path == "/metrics":  # Prometheus' text format
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4"), where
        assert b"# TYPE knot_events_journaled_total counter" in body, where
    elif status != 204 and not response.headers.get("content-type", "").startswith(
        "text/event-stream"
    ):
        json.loads(body)  # every other answer is JSON


def send(
    target: FuzzTarget,
    method: str,
    url: str,
    body: bytes | None,
    content_type: str | None,
    who: str = "admin",
) -> tuple[httpx.Response, bytes]:
    headers = {"content-type": content_type} if content_type is not None else {}
    headers["authorization"] = f"Bearer {TOKENS[who]}" if TOKENS[who] else ""
    request = target.client.build_request(method, url, content=body, headers=headers)
    response = target.client.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response, b""  # the live stream: its answer is the open stream itself
        return response, response.read()
    finally:
        response.close()


@pytest.mark.parametrize(("template", "method"), ROUTES)
def test_route_survives_fuzzed_requests(
    fuzz_target: FuzzTarget, template: str, method: str
) -> None:
    target = fuzz_target
    target.restore()

    @fuzz(25)
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        path = fill_path(target, template, data)
        query = data.draw(queries)
        body, content_type = data.draw(bodies())
        who = data.draw(st.sampled_from(["admin", "admin", "admin", "bob", "none", "wrong"]))
        url = f"{path}?{query}" if query else path
        before = target.state()
        mark = target.log_mark()
        response, raw = send(target, method, url, body, content_type, who)
        check_answer(target, response, raw)
        # Open without a token: /healthz, and a Sky CORS preflight (it acts on nothing).
        preflight = method == "OPTIONS" and template.startswith("/sky/")
        if who in ("none", "wrong") and template != "/healthz" and not preflight:
            assert response.status_code == 401, (who, url, raw)
        if response.status_code >= 400:
            after = target.state()
            allowed = before.copy()
            if response.status_code in (401, 403):
                grown = after["security_audit"] - before["security_audit"]
                assert grown <= 1, (url, before, after)
                allowed["audit"] += grown
                allowed["security_audit"] += grown
            assert after == allowed, (method, url, body, who, before, after)
        assert target.log_problems(mark) == []

    one()


def test_the_fuzzer_reaches_every_route(fuzz_target: FuzzTarget) -> None:
    """With known names filled in, each route answers itself (not "there is no route")."""
    target = fuzz_target
    target.restore()
    for template, method in ROUTES:
        path = known_path(target, template)
        response, raw = send(target, method, path, b"{}", "application/json")
        check_answer(target, response, raw)
        assert b"There is no route" not in raw, (method, path)
    unknown, raw = send(target, "GET", "/api/nothing-here", None, None)
    check_answer(target, unknown, raw)
    assert (unknown.status_code, b"There is no route /api/nothing-here" in raw) == (404, True)


@fuzz(40)
@given(event_type=event_types, payload=st.none() | st.dictionaries(texts, texts, max_size=3))
def test_sky_event_both_forms_agree(
    fuzz_target: FuzzTarget, event_type: str, payload: dict[str, str] | None
) -> None:
    """The query form and the path form of one Sky event get the same status."""
    target = fuzz_target
    target.restore()
    domain, _, kind = event_type.partition(".")
    attrs = payload or {}
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in attrs.items())
    by_query = target.client.post(
        f"/sky/event/{target.eci}/none?_domain={quote(domain, safe='')}&_type="
        f"{quote(kind, safe='')}&_async=1" + (f"&{query}" if query else "")
    )
    by_path = target.client.post(
        f"/sky/event/{target.eci}/none/{quote(domain, safe='')}/{quote(kind, safe='')}"
        f"?_async=1" + (f"&{query}" if query else "")
    )
    check_answer(target, by_query, by_query.content)
    check_answer(target, by_path, by_path.content)
    if not any(k.startswith("_") for k in attrs) and domain.strip() and kind.strip():
        assert by_query.status_code == by_path.status_code, (by_query.text, by_path.text)


def known_path(target: FuzzTarget, template: str) -> str:
    path = template
    for param, value in [
        ("{event_id}", target.event_id),
        ("{name}", "rec"),
        ("{eci}", target.eci),
        ("{rest:path}", f"{target.eci}/none/fuzz/probe"),
        ("{script}", "fuzzm"),
        ("{function}", "echo"),
    ]:
        path = path.replace(param, value)
    return path


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("template", "method"), [*BODY_ROUTES, ("/sky/event/{rest:path}", "GET")])
def test_a_body_over_the_limit_is_413_and_changes_nothing(
    fuzz_target: FuzzTarget, template: str, method: str, chunked: bool
) -> None:
    target = fuzz_target
    target.restore()
    body = b'{"type": "fuzz.big", "payload": {"x": "' + b"x" * MAX_BODY + b'"}}'
    content: bytes | Iterator[bytes] = iter([body[:1000], body[1000:]]) if chunked else body
    before = target.state()
    request = target.client.build_request(
        method,
        known_path(target, template),
        content=content,
        headers={"content-type": "application/json"},
    )
    response = target.client.send(request)
    if chunked and (template, method) not in READS_BODY and response.status_code != 413:
        # Without a declared size, only a route that reads the body can see it is too big;
        # the others answer as they would with no body at all.
        check_answer(target, response, response.content)
        return
    assert response.status_code == 413, (template, response.text)
    assert f"limit of {MAX_BODY} bytes" in response.json()["error"] or (
        f"the limit is {MAX_BODY} bytes" in response.json()["error"]
    )
    assert target.state() == before


rpc_ids = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.floats(), st.lists(st.none()))
rpc_calls = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]),
        "method": st.one_of(
            st.sampled_from(["fuzzm.echo", "fuzzm.count", "fuzzm.boom", "fuzzm.nope", "rpc.x"]),
            texts,
        ),
        "params": st.one_of(json_values, json_objects, st.just({"space": "web"})),
        "id": rpc_ids,
    },
)
rpc_bodies = st.one_of(
    rpc_calls.map(json.dumps),
    st.lists(rpc_calls, max_size=4).map(json.dumps),
    st.sampled_from(["", "[]", "[1]", "{", "null", '{"jsonrpc": "2.0", "method": 1}']),
)


def check_rpc_response(answer: object, where: str) -> None:
    assert isinstance(answer, dict), where
    assert answer.get("jsonrpc") == "2.0", where
    assert "id" in answer, where
    assert ("result" in answer) != ("error" in answer), where
    if "error" in answer:
        error = answer["error"]
        assert isinstance(error["code"], int), where
        assert isinstance(error["message"], str), where
        assert error["message"], where


@fuzz(60)
@given(body=rpc_bodies, who=st.sampled_from(["admin", "bob"]))
def test_json_rpc_answers_every_call_by_the_specification(
    fuzz_target: FuzzTarget, body: str, who: str
) -> None:
    """200 with a response (or a batch of them), or 204 for notifications only; a call refused
    by the protocol (parse, invalid request, no such method, bad params) changes nothing."""
    target = fuzz_target
    before = target.state()
    mark = target.log_mark()
    response, raw = send(target, "POST", "/json-rpc", body.encode(), "application/json", who)
    where = f"{body!r} -> {response.status_code}: {raw[:300]!r}"
    assert response.status_code in (200, 204), where
    if response.status_code == 204:
        assert raw == b"", where
        return
    answer = json.loads(raw)
    answers = answer if isinstance(answer, list) else [answer]
    assert answers, where
    for one in answers:
        check_rpc_response(one, where)
    refused = {-32700, -32600, -32601, -32602}
    if all(one.get("error", {}).get("code") in refused for one in answers):
        assert target.state() == before, where
    assert target.log_problems(mark) == [], where
