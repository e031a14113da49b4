"""`requests` in scripts, with real parts: sandbox workers, a runtime, loopback HTTP servers.

What is allowed reaches the server and answers; what `http_allow` does not list never leaves
the runtime (the servers count what arrives), raises in the script naming the host and the
setting, and is audited. Every bypass tried by hand while building this is here: redirects,
names and wildcards that lead to loopback, IPv6 and IPv4-mapped forms, other spellings of
127.0.0.1, credentials in the URL, a Host header, huge and compressed answers, slow servers.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knot import AuditKind, DeliveryStatus
from knot._exceptions import MethodFailed
from knot.scriptlib.service import RunUse, ScriptLibraries, ScriptRef, ScriptRefusal

from .origin import Origin
from .scripting import output, reach_config, scripted

pytestmark = pytest.mark.anyio


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[Origin]:
    """A second server, never listed: nothing may ever arrive here."""
    server = Origin()
    yield server
    server.close()


# Scripts cannot ask an exception for its class name (no type(), no dunders): they map it.
KIND = """
import requests
def kind(e):
    for name in ["RequestDenied", "TooManyRedirects", "ResponseTooLarge", "Timeout",
                 "ConnectionError", "HTTPError", "RequestException"]:
        if isinstance(e, getattr(requests, name)):
            return name
    return "ValueError" if isinstance(e, ValueError) else "other"
"""


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_an_allowed_post_reaches_the_server_and_its_answer_comes_back(
    tmp_path: Path, origin: Origin
) -> None:
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        outcome = await s.run(
            KIND
            + f"""
import requests
r = requests.post({origin.url("/echo")!r}, json={{"n": 1}}, params={{"q": "a b"}},
                  headers={{"X-Team": "infra"}}, auth=("ada", "pw"))
seen = r.json()
print(r.status_code, r.ok, r.reason, r.headers["Content-Type"], r["status_code"])
print(seen["method"], seen["path"], seen["body"])
print(seen["headers"]["x-team"], seen["headers"]["authorization"], seen["headers"]["content-type"])
print(r.url)
g = requests.get({origin.url("/status/404")!r})
try:
    g.raise_for_status()
except requests.HTTPError as e:
    print("raised", e.response.status_code)
"""
        )
    lines = output(outcome)
    assert lines[0] == "200 True OK application/json 200"
    assert lines[1] == 'POST /echo?q=a+b {"n":1}'
    assert lines[2] == "infra Basic YWRhOnB3 application/json"
    assert lines[3] == origin.url("/echo?q=a+b")
    assert lines[4] == "raised 404"
    (seen,) = origin.at("/echo")
    assert seen.headers["user-agent"].startswith("knot-runtime")
    assert "cookie" not in seen.headers


async def test_a_host_the_list_does_not_name_is_refused_named_and_audited_once(
    tmp_path: Path, origin: Origin, other: Origin
) -> None:
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        outcome = await s.run(
            KIND
            + f"""
import requests
for attempt in range(3):
    try:
        requests.get({other.url()!r})
    except requests.RequestDenied as e:
        print(e)
"""
        )
        report_id = outcome.event_id
        await s.rt.flush()
        audits = [
            a for a in await s.rt.audit_entries(limit=20) if a.kind is AuditKind.REQUEST_DENIED
        ]
    lines = output(outcome)
    assert len(lines) == 3
    assert lines[0] == (
        f'the host {other.netloc} is not in scripts.http_allow (add "{other.netloc}" there to '
        "let scripts reach it)"
    )
    assert other.requests == []
    assert len(audits) == 1  # once per host and run, however often the script tries
    assert audits[0].event_id == report_id
    assert audits[0].sink.startswith("script")
    assert f"tried GET {other.url()}" in audits[0].message


async def test_nothing_is_allowed_when_the_list_is_empty(tmp_path: Path, origin: Origin) -> None:
    async with scripted(tmp_path, reach_config()) as s:
        outcome = await s.run(f"import requests\nrequests.get({origin.url()!r})\n")
    assert outcome.status is DeliveryStatus.FAILED
    assert "raised RequestDenied" in outcome.error
    assert "scripts.http_allow, which lists no host" in outcome.error
    assert origin.requests == []


async def test_redirects_are_checked_at_every_hop(
    tmp_path: Path, origin: Origin, other: Origin
) -> None:
    third = Origin()
    try:
        allow = [origin.netloc, third.netloc]
        async with scripted(tmp_path, reach_config(allow)) as s:
            out = output(
                await s.run(
                    KIND
                    + f"""
import requests
def attempt(url, **kw):
    try:
        r = requests.post(url, data="body", headers={{"Authorization": "Bearer t"}}, **kw)
        print(r.status_code, r.url)
    except requests.RequestException as e:
        print(kind(e), e)
attempt({origin.url("/redirect?to=" + other.url())!r})
attempt({origin.url("/redirect?to=/echo&code=307")!r})
attempt({origin.url("/redirect?to=" + third.url())!r})
attempt({origin.url("/redirect?to=/echo")!r}, allow_redirects=False)
attempt({origin.url("/redirect?to=file:///etc/passwd")!r})
attempt({origin.url("/loop")!r})
"""
                )
            )
    finally:
        third.close()
    assert out[0].startswith(f"RequestDenied the host {other.netloc} is not in scripts.http_allow")
    assert other.requests == []
    assert out[1] == f"200 {origin.url('/echo')}"
    kept = [r for r in origin.at("/echo") if r.method == "POST"]
    assert [r.body for r in kept] == [b"body"]  # 307 keeps the method and the body
    assert kept[0].headers["authorization"] == "Bearer t"  # same origin: credentials kept
    assert out[2] == f"200 {third.url()}"
    (moved,) = third.at("/echo")
    assert moved.method == "GET"  # a 302 after POST is a GET
    assert "authorization" not in moved.headers  # another origin: credentials dropped
    assert out[3] == f"302 {origin.url('/redirect?to=/echo')}"
    assert out[4].startswith("RequestException only http and https URLs")
    assert out[5].startswith("TooManyRedirects")


async def test_a_wildcard_never_leads_to_a_loopback_address(tmp_path: Path, origin: Origin) -> None:
    config = reach_config([f"*:{origin.port}", f"*.localhost:{origin.port}"])
    async with scripted(tmp_path, config) as s:
        out = output(
            await s.run(
                KIND
                + f"""
import requests
for url in ["http://127.0.0.1:{origin.port}/echo", "http://localhost:{origin.port}/echo",
            "http://sub.localhost:{origin.port}/echo"]:
    try:
        requests.get(url)
        print("reached", url)
    except requests.RequestException as e:
        print(kind(e), e)
"""
            )
        )
    assert out[0].startswith("RequestDenied 127.0.0.1 resolves to 127.0.0.1, a loopback address")
    assert "names exactly (not through a wildcard)" in out[0]
    assert out[1].startswith("RequestDenied localhost resolves to")
    assert out[2].startswith(("RequestDenied sub.localhost resolves to", "ConnectionError"))
    assert origin.requests == []


async def test_a_name_listed_exactly_may_lead_to_loopback(tmp_path: Path, origin: Origin) -> None:
    async with scripted(tmp_path, reach_config([f"localhost:{origin.port}"])) as s:
        out = output(
            await s.run(
                f"import requests\nprint(requests.get('http://localhost:{origin.port}/echo').status_code)\n"
            )
        )
    assert out == ["200"]  # ::1 refused the connection, 127.0.0.1 answered


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:{port}@other.example/echo", "RequestException the URL holds a user"),
        ("http://user:pw@127.0.0.1:{port}/echo", "RequestException the URL holds a user"),
        ("http://2130706433:{port}/echo", "RequestDenied the host 2130706433:{port}"),
        ("http://0x7f.0.0.1:{port}/echo", "RequestDenied the host 0x7f.0.0.1:{port}"),
        ("http://127.1:{port}/echo", "RequestDenied the host 127.1:{port}"),
        ("http://[::ffff:127.0.0.1]:{port}/echo", "RequestDenied the host [::ffff:7f00:1]:{port}"),
        ("http://[::1]:{port}/echo", "RequestDenied the host [::1]:{port}"),
        ("http://127.0.0.1:{port}/echo", "RequestDenied the host 127.0.0.1:{port}"),  # other port
        ("file:///etc/passwd", "RequestException only http and https URLs"),
        ("gopher://127.0.0.1:{port}/", "RequestException only http and https URLs"),
        ("http://127.0.0.%31:{port}/echo", "RequestException the URL's host is not valid"),
    ],
)
async def test_other_spellings_of_a_listed_host_are_refused(
    tmp_path: Path, origin: Origin, url: str, expected: str
) -> None:
    # The listed port is one nobody serves: each spelling would reach the origin if it passed.
    config = reach_config([f"127.0.0.1:{origin.port + 1 if origin.port < 65535 else 1}"])
    target = url.format(port=origin.port)
    async with scripted(tmp_path, config) as s:
        out = output(
            await s.run(
                KIND
                + f"""
import requests
try:
    requests.get({target!r})
except requests.RequestException as e:
    print(kind(e), e)
"""
            )
        )
    assert out[0].startswith(expected.format(port=origin.port)), out
    assert origin.requests == []


async def test_headers_the_runtime_sets_cannot_be_set_by_a_script(
    tmp_path: Path, origin: Origin
) -> None:
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        out = output(
            await s.run(
                KIND
                + f"""
import requests
for headers in [{{"Host": "admin.internal"}}, {{"Transfer-Encoding": "chunked"}},
                {{"X-Split": "a\\r\\nInjected: yes"}}]:
    try:
        requests.get({origin.url()!r}, headers=headers)
    except (requests.RequestException, ValueError) as e:
        print(kind(e), e)
try:
    requests.get({origin.url()!r}, verify=False)
except TypeError as e:
    print("TypeError", e)
"""
            )
        )
    assert out[0] == (
        "RequestException the header Host is set by the runtime; a script may not set it"
    )
    assert out[1].startswith("RequestException the header Transfer-Encoding is set")
    assert out[2].startswith("ValueError the header 'X-Split' holds a line break")
    assert out[3] == (
        "TypeError requests: verify= is not supported (TLS certificates are always verified)"
    )
    assert origin.requests == []


async def test_answers_and_bodies_stop_at_http_max_bytes(tmp_path: Path, origin: Origin) -> None:
    config = reach_config([origin.netloc], http_max_bytes=100_000)
    async with scripted(tmp_path, config) as s:
        name = await s.add(
            KIND
            + f"""
import requests, knot.event
path = knot.event.get_string("path")
try:
    r = requests.request(knot.event.get_string("method", "GET"), {origin.url("")!r} + path,
                         data="x" * knot.event.get_int("send"))
    print("got", len(r.content))
except requests.RequestException as e:
    print(kind(e), e)
"""
        )
        tracemalloc.start()
        try:
            results = {}
            for path in [
                "/big?bytes=50000",
                "/big?bytes=200000",
                "/chunked?bytes=10000000",
                "/gzip?bytes=300000000",
            ]:
                results[path] = output(await s.run("", {"path": path}, name=name))[0]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = output(
            await s.run("", {"path": "/echo", "method": "POST", "send": 100_001}, name=name)
        )
    assert results["/big?bytes=50000"] == "got 50000"
    too_large = (
        "ResponseTooLarge the response's body is larger than scripts.http_max_bytes (100000 bytes)"
    )
    assert results["/big?bytes=200000"] == too_large
    assert results["/chunked?bytes=10000000"] == too_large
    assert results["/gzip?bytes=300000000"] == too_large
    # 300 MB of zeros arrived as ~300 KB of gzip: decoded a bounded piece at a time.
    assert peak < 40 * 1024 * 1024, peak
    assert sent == [
        "ResponseTooLarge the request body has 100001 bytes, more than scripts.http_max_bytes "
        "(100000)"
    ]
    assert [r.method for r in origin.at("/echo")] == []


async def test_a_slow_server_runs_into_the_scripts_time_limit(
    tmp_path: Path, origin: Origin
) -> None:
    config = reach_config([origin.netloc], timeout=1.0)
    async with scripted(tmp_path, config) as s:
        for path in ("/slow?seconds=30", "/trickle"):
            started = time.monotonic()
            outcome = await s.run(
                f"import requests\nrequests.get({origin.url(path)!r}, timeout=60)\n"
            )
            took = time.monotonic() - started
            assert outcome.status is DeliveryStatus.FAILED
            assert "ran longer than 1.0 s (scripts.timeout) and was stopped" in outcome.error
            assert took < 3.0
        # The runtime hung up on the server when the script's time ran out.
        origin.wait_closed(2)
        # A request's own timeout, shorter than the script's limit, is the script's to catch.
        out = output(
            await s.run(
                KIND
                + f"""
import requests
try:
    requests.get({origin.url("/slow?seconds=30")!r}, timeout=0.2)
except requests.Timeout as e:
    print("Timeout", e)
"""
            )
        )
    assert out[0].startswith("Timeout GET http://")
    assert "did not finish in time" in out[0]


async def test_requests_per_run_are_capped(tmp_path: Path, origin: Origin) -> None:
    config = reach_config([origin.netloc], http_max_requests=3)
    async with scripted(tmp_path, config) as s:
        outcome = await s.run(
            KIND
            + f"""
import requests
for n in range(10):
    try:
        requests.get({origin.url()!r})
    except Exception:
        pass
"""
        )
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.error.endswith(
        "tried to make more than 3 HTTP requests while handling one event "
        "(scripts.http_max_requests = 3)."
    )
    assert len(origin.at("/echo")) == 3


async def test_no_cookie_jar_is_shared_between_scripts(tmp_path: Path, origin: Origin) -> None:
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        first = output(
            await s.run(
                f"import requests\nr = requests.get({origin.url('/cookie')!r})\n"
                "print(r.headers['set-cookie'])\n"
            )
        )
        await s.run(f"import requests\nrequests.get({origin.url('/echo')!r})\n")
    assert first == ["sid=s1"]
    (echo,) = origin.at("/echo")
    assert "cookie" not in echo.headers


async def test_a_sink_table_grants_hosts_to_that_sink_only(
    tmp_path: Path, origin: Origin, other: Origin
) -> None:
    config = reach_config([origin.netloc], sinks={"granted": [other.netloc]})
    body = (
        KIND
        + f"""
import requests
try:
    print(requests.get({other.url()!r}).status_code)
except requests.RequestDenied as e:
    print(e)
"""
    )
    async with scripted(tmp_path, config) as s:
        await s.add(body, name="granted")
        await s.add(body, name="plain")
        granted = output(await s.run("", name="granted"))
        plain = output(await s.run("", name="plain"))
    assert granted == ["200"]
    assert plain[0].startswith(f"the host {other.netloc} is not in scripts.http_allow")
    assert len(other.requests) == 1


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback on this machine")
async def test_ipv6_hosts_are_listed_in_brackets(tmp_path: Path) -> None:
    v6 = Origin("::1")
    try:
        async with scripted(tmp_path, reach_config([v6.netloc])) as s:
            out = output(
                await s.run(f"import requests\nprint(requests.get({v6.url()!r}).status_code)\n")
            )
    finally:
        v6.close()
    assert out == ["200"]


async def test_method_scripts_make_requests_too(
    tmp_path: Path, origin: Origin, other: Origin
) -> None:
    source = f"""
import knot.methods, requests, knot.kv

@knot.methods.method
def post(params):
    r = requests.post({origin.url("/echo")!r}, json=params)
    knot.kv.incr("posts")
    return {{"status": r.status_code, "body": r.json()["body"], "posts": knot.kv.get("posts")}}

@knot.methods.method
def stray(params):
    return requests.get({other.url()!r}).status_code
"""
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        loaded = await s.rt.methods.load("hooks", source)
        assert loaded.ok, loaded.problems
        first = await s.rt.methods.call("hooks", "post", {"n": 1})
        second = await s.rt.methods.call("hooks", "post", {"n": 2})
        with pytest.raises(MethodFailed) as refused:
            await s.rt.methods.call("hooks", "stray")
        await s.rt.flush()
        audits = [a for a in await s.rt.audit_entries() if a.kind is AuditKind.REQUEST_DENIED]
    assert first == {"status": 200, "body": '{"n":1}', "posts": 1}
    assert second["posts"] == 2
    assert "raised RequestDenied" in refused.value.message
    assert f"the host {other.netloc} is not in scripts.http_allow" in refused.value.message
    assert [a.sink for a in audits] == ["methods/hooks"]
    assert "method script hooks" in audits[0].message
    assert other.requests == []
    assert [json.loads(r.body) for r in origin.at("/echo")] == [{"n": 1}, {"n": 2}]


async def test_redirects_without_a_scheme_are_checked_too(
    tmp_path: Path, origin: Origin, other: Origin
) -> None:
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        out = output(
            await s.run(
                KIND
                + f"""
for to in ["//{other.netloc}/echo", "http://user@{origin.netloc}/echo"]:
    try:
        requests.get({origin.url("/redirect?to=")!r} + to)
    except requests.RequestException as e:
        print(kind(e), e)
"""
            )
        )
    assert out[0].startswith(f"RequestDenied the host {other.netloc} is not in")
    assert out[1].startswith("RequestException the URL holds a user name or password")
    assert other.requests == []


async def test_proxy_settings_of_the_runtimes_environment_are_not_used(
    tmp_path: Path, origin: Origin, other: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, other.url(""))
    async with scripted(tmp_path, reach_config([origin.netloc])) as s:
        out = output(
            await s.run(f"import requests\nprint(requests.get({origin.url()!r}).status_code)\n")
        )
    assert out == ["200"]
    assert len(origin.at("/echo")) == 1
    assert other.requests == []


async def test_a_certificate_nobody_trusts_is_refused(tmp_path: Path) -> None:
    import trustme

    from .receiver import Receiver

    authority = trustme.CA()
    context = ssl_server_context(authority)
    server = Receiver(tls=context)
    try:
        netloc = f"127.0.0.1:{server.port}"
        async with scripted(tmp_path, reach_config([netloc])) as s:
            out = output(
                await s.run(
                    KIND
                    + f"""
try:
    requests.post("https://{netloc}/hook", json={{}})
except requests.RequestException as e:
    print(kind(e), e)
"""
                )
            )
    finally:
        server.close()
    assert out[0].startswith("ConnectionError POST https://")
    assert "CERTIFICATE_VERIFY_FAILED" in out[0]
    assert server.requests == []


def ssl_server_context(authority: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"method": "CONNECT", "url": "http://127.0.0.1/"}, "invalid"),
        ({"method": "GET\r\nX: y", "url": "http://127.0.0.1/"}, "invalid"),
        ({"method": "GET", "url": 5}, "invalid"),
        (
            {"method": "GET", "url": "http://h/", "headers": [["X-A", "b\r\nInjected: 1"]]},
            "invalid",
        ),
        ({"method": "GET", "url": "http://h/", "headers": [["Bad Name", "v"]]}, "invalid"),
        ({"method": "GET", "url": "http://h/", "headers": [["Host", "x"]]}, "invalid"),
        ({"method": "GET", "url": "http://h/", "timeout": -1}, "invalid"),
        ({"method": "POST", "url": "http://h/", "body_b64": "!!not base64!!"}, "invalid"),
        ({"method": "POST", "url": "http://h/", "body_b64": "eHh4" * 1000}, "too_large"),
        ({"method": "GET", "url": "http://not-listed.example/"}, "denied"),
    ],
)
async def test_a_lying_worker_gets_no_further_than_an_honest_one(
    tmp_path: Path, params: dict[str, Any], kind: str
) -> None:
    """The runtime checks a worker's `http` request itself: as if a script got past the
    sandbox and wrote the request by hand."""
    audits: list[Any] = []
    config = reach_config(["h"], http_max_bytes=1024)
    libraries = ScriptLibraries(
        config=lambda: config, project=tmp_path, kv=_no_kv, audit=audits.append
    )
    try:
        with pytest.raises(ScriptRefusal) as refused:
            await libraries.serve(ScriptRef("sinks", "liar"), "http", params, RunUse("e1"))
    finally:
        await libraries.close()
    assert refused.value.data == {"kind": kind}
    assert len(audits) == (1 if kind == "denied" else 0)


async def _no_kv(operation: Any) -> Any:
    raise AssertionError("no key-value operation expected")
