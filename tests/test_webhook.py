"""Webhook sinks against a real loopback receiver: headers, both signatures, bodies, failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
import trustme

from knot import AuditKind, Config, DeliveryStatus, Runtime, SinkError
from knot._config import DeliverySettings
from knot.sinks import WebhookSink

from .conftest import write_config
from .receiver import CLOSE, HANG, Receiver

pytestmark = pytest.mark.anyio


def fast(**delivery: Any) -> Config:
    settings: dict[str, Any] = {"backoff": (0.01,), "attempts": 3, **delivery}
    return Config(delivery=DeliverySettings(**settings))


def hook(
    receiver: Receiver, name: str = "hook", path: str = "/hook", **options: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "events": "custom.*",
        "url": receiver.url(path),
        **options,
    }


def knot_signature_ok(body: bytes, header: str, secret: str) -> bool:
    """The receiver side, exactly as Knot's documentation writes it."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def webhook_secret(rt: Runtime, name: str) -> str:
    sink = rt.sink(name)
    assert isinstance(sink, WebhookSink)
    return sink.secret


async def test_headers_signatures_and_default_body(project: Path, receiver: Receiver) -> None:
    async with Runtime(project, config=fast()) as rt:
        await rt.add_sink(hook(receiver, headers={"X-Team": "infra"}))
        report = await rt.emit_and_wait("myapp.deployed", {"version": "1.2", "q": 'a"b'})
        (got,) = receiver.requests
        secret = webhook_secret(rt, "hook")
        event = report.event

    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-knot-event-id"] == event.id
    assert got.headers["x-knot-event-type"] == "custom.myapp.deployed"
    assert got.headers["x-knot-event-ts"] == event.ts
    assert got.headers["x-team"] == "infra"
    assert knot_signature_ok(got.body, got.headers["x-knot-signature"], secret)
    assert not knot_signature_ok(got.body + b" ", got.headers["x-knot-signature"], secret)
    # Standard Webhooks, checked by its own reference library (timestamp tolerance included).
    verified = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert verified == {
        "event_id": event.id,
        "event_type": "custom.myapp.deployed",
        "event_ts": event.ts,
        "data": {"version": "1.2", "q": 'a"b'},
    }
    assert got.headers["webhook-id"] == event.id
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    outcome = report.outcomes["hook"]
    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.result is not None
    assert outcome.result.detail.startswith('HTTP 200 OK: {"received": "/hook"')


async def test_a_given_secret_keys_both_signatures(project: Path, receiver: Receiver) -> None:
    async with Runtime(project, config=fast()) as rt:
        await rt.add_sink(hook(receiver, secret="plain-secret"))
        await rt.emit_and_wait("x.y", {"n": 1})
        (got,) = receiver.requests
    assert knot_signature_ok(got.body, got.headers["x-knot-signature"], "plain-secret")
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    expected = hmac.new(b"plain-secret", signed, hashlib.sha256).digest()
    assert got.headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


async def test_custom_template_body(project: Path, receiver: Receiver) -> None:
    template = (
        '{"text": "${{ toUpper .actor.kind }} deployed ${{ quote .event.data.version }}", '
        '"meta": ${{ json (map "type" .event.type "space" .space.name) }}}'
    )
    async with Runtime(project, config=fast()) as rt:
        await rt.add_sink(hook(receiver, body_template=template))
        await rt.emit_and_wait("app.up", {"version": 'v"2'})
        (got,) = receiver.requests
    assert got.body.decode() == (
        '{"text": "USER deployed v\\"2", "meta": {"type":"custom.app.up","space":""}}'
    )
    assert got.json()["text"] == 'USER deployed v"2'


async def test_per_sink_order_across_two_receivers(project: Path, receiver: Receiver) -> None:
    async with Runtime(project, config=fast(queue_size=1000)) as rt:
        await rt.add_sink(hook(receiver, "first", "/a"))
        await rt.add_sink(hook(receiver, "second", "/b", events="custom.even"))
        ids = [await rt.emit("even" if i % 2 == 0 else "odd", {"i": i}) for i in range(120)]
        await rt.wait_idle()
    assert [r.headers["webhook-id"] for r in receiver.at("/a")] == ids
    assert [r.headers["webhook-id"] for r in receiver.at("/b")] == ids[::2]
    assert [r.json()["data"]["i"] for r in receiver.at("/b")] == list(range(0, 120, 2))


async def test_retries_a_500_then_delivers(project: Path, receiver: Receiver) -> None:
    receiver.plan("/hook", [500, 503, 200])
    async with Runtime(project, config=fast()) as rt:
        await rt.add_sink(hook(receiver))
        report = await rt.emit_and_wait("x.retry", {})
        (status,) = rt.sinks()
    got = receiver.at("/hook")
    assert len(got) == 3
    assert {r.headers["webhook-id"] for r in got} == {report.id}
    assert report.outcomes["hook"].attempts == 3
    assert report.outcomes["hook"].status is DeliveryStatus.DELIVERED
    assert status.retries == 2
    assert "answered HTTP 503 Service Unavailable" in status.last_error


async def test_gives_up_after_the_last_500_with_an_audit_entry(
    project: Path, receiver: Receiver
) -> None:
    receiver.plan("/hook", [500, 500])
    async with Runtime(project, config=fast(attempts=2)) as rt:
        await rt.add_sink(hook(receiver))
        report = await rt.emit_and_wait("x.fail", {})
        await rt.flush()
        audit = await rt.audit_entries()
        (status,) = rt.sinks()
    assert report.outcomes["hook"].status is DeliveryStatus.FAILED
    (entry,) = audit
    assert entry.kind is AuditKind.DELIVERY_FAILED
    assert entry.sink == "hook"
    assert entry.event_id == report.id
    assert "gave up" in entry.message
    assert "after 2 attempts" in entry.message
    assert f"The receiver at {receiver.url()} answered HTTP 500" in entry.message
    assert '"status": 500' in entry.message  # the receiver's answer, excerpted
    assert status.failed == 1
    assert status.to_dict()["last_status"] == 500


async def test_a_hanging_receiver_times_out(project: Path, receiver: Receiver) -> None:
    receiver.plan("/slow", [HANG, HANG])
    async with Runtime(project, config=fast(attempts=2)) as rt:
        await rt.add_sink(hook(receiver, path="/slow", timeout=0.2))
        report = await rt.emit_and_wait("x.slow", {}, timeout=10)
        await rt.flush()
        audit = await rt.audit_entries()
    assert report.outcomes["hook"].status is DeliveryStatus.FAILED
    assert len(receiver.at("/slow")) == 2
    assert "did not answer within 0.2 s" in audit[-1].message


async def test_a_closed_port_is_a_failed_attempt(project: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    async with Runtime(project, config=fast(attempts=2)) as rt:
        await rt.add_sink({"name": "gone", "type": "webhook", "events": "*", "url": url})
        report = await rt.emit_and_wait("x.nobody", {})
        await rt.flush()
        audit = await rt.audit_entries()
        (status,) = rt.sinks()
    assert report.outcomes["gone"].status is DeliveryStatus.FAILED
    assert f"Cannot connect to {url}: " in audit[-1].message
    assert "refused" in audit[-1].message.lower()
    assert status.last_error.startswith(f"Cannot connect to {url}")


async def test_stale_keep_alive_connections_are_not_failures(
    project: Path, receiver: Receiver
) -> None:
    receiver.plan("/hook", [CLOSE] * 30)
    async with Runtime(project, config=fast(queue_size=100, backoff=(5.0,))) as rt:
        await rt.add_sink(hook(receiver))
        for i in range(30):
            report = await rt.emit_and_wait("x.close", {"i": i})
            assert report.outcomes["hook"].attempts == 1
    assert len(receiver.at("/hook")) == 30
    assert len({r.connection for r in receiver.at("/hook")}) == 30


async def test_no_cookie_is_kept_between_deliveries(project: Path, receiver: Receiver) -> None:
    receiver.set_cookie = "session=secret-of-sink-a; Path=/"
    # By name, not address: cookie jars ignore cookies from bare IP addresses anyway.
    by_name = f"http://localhost:{receiver.port}"
    async with Runtime(project, config=fast()) as rt:
        await rt.add_sink(hook(receiver, "sink_a", url=f"{by_name}/a"))
        await rt.add_sink(hook(receiver, "sink_b", url=f"{by_name}/b"))
        for i in range(3):
            await rt.emit_and_wait("x.cookie", {"i": i})
    assert len(receiver.requests) == 6
    assert [r.headers.get("cookie") for r in receiver.requests] == [None] * 6


async def test_proxies_from_the_environment_are_not_used(
    project: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a proxy address where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with Runtime(project, config=fast(attempts=1)) as rt:
        await rt.add_sink(hook(receiver))
        report = await rt.emit_and_wait("x.direct", {})
    assert report.outcomes["hook"].status is DeliveryStatus.DELIVERED
    assert len(receiver.at("/hook")) == 1


@pytest.fixture
def tls_receiver() -> Iterator[Receiver]:
    ca = trustme.CA()  # a CA nobody trusts: the receiver's certificate is "self-signed"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = Receiver(tls=context)
    yield server
    server.close()


async def test_tls_verification_and_skip_tls_verify(project: Path, tls_receiver: Receiver) -> None:
    async with Runtime(project, config=fast(attempts=1)) as rt:
        await rt.add_sink(hook(tls_receiver, "strict"))
        await rt.add_sink(hook(tls_receiver, "lenient", "/lenient", skip_tls_verify=True))
        report = await rt.emit_and_wait("x.tls", {"n": 1})
    assert report.outcomes["lenient"].status is DeliveryStatus.DELIVERED
    assert [r.json()["data"] for r in tls_receiver.at("/lenient")] == [{"n": 1}]
    strict = report.outcomes["strict"]
    assert strict.status is DeliveryStatus.FAILED
    assert f"The TLS handshake with {tls_receiver.url()} failed" in strict.error
    assert "certificate verify failed" in strict.error
    assert "skip_tls_verify" in strict.error
    assert tls_receiver.at("/hook") == []


async def test_https_to_a_plain_http_receiver_is_a_tls_failure(
    project: Path, receiver: Receiver
) -> None:
    url = receiver.url().replace("http://", "https://")
    async with Runtime(project, config=fast(attempts=1)) as rt:
        await rt.add_sink({"name": "mixed", "type": "webhook", "events": "*", "url": url})
        report = await rt.emit_and_wait("x.tls", {})
    error = report.outcomes["mixed"].error
    assert report.outcomes["mixed"].status is DeliveryStatus.FAILED
    assert url in error
    assert "TLS" in error or "SSL" in error


async def test_a_template_that_fails_on_an_event_gives_up(
    project: Path, receiver: Receiver
) -> None:
    async with Runtime(project, config=fast(attempts=1)) as rt:
        await rt.add_sink(hook(receiver, body_template="${{ index .event.data.items 3 }}"))
        report = await rt.emit_and_wait("x.items", {"items": [1]})
    assert report.outcomes["hook"].status is DeliveryStatus.FAILED
    assert "The body template of hook failed on event" in report.outcomes["hook"].error
    assert "index 3 out of range (length 1)" in report.outcomes["hook"].error
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "is not an http:// or https:// URL"),
        ({"url": "http:///nohost"}, "with a host"),
        ({"url": "http://127.0.0.1:99999/"}, "port that is not a number"),
        ({"url": None}, "needs a url"),
        (
            {"body_template": '{"id": "${{ .event.idd }}"}'},
            "line 1, column 13: .event has no field",
        ),
        ({"headers": {"X-Knot-Signature": "forged"}}, "X-Knot-Signature is set by the runtime"),
        ({"headers": {"webhook-id": "x"}}, "webhook-id is set by the runtime"),
        ({"headers": {"content-type": "text/plain"}}, "content-type is set by the runtime"),
        ({"headers": {"X-N": 1}}, "must be a string"),
        ({"headers": {"Bad Name": "x"}}, "not a valid HTTP header name"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "line breaks"),
        ({"headers": ["X-A"]}, "must be a table"),
        ({"skip_tls_verify": "yes"}, "skip_tls_verify must be true or false"),
        ({"timeout": 0}, "timeout must be a number of seconds above 0"),
        ({"timeout": 1000}, "at most 300"),
        ({"secret": ""}, "secret must be a non-empty string"),
        ({"secret": "whsec_!!notbase64"}, "must continue in base64"),
        ({"retries": 3}, "The option 'retries' is not known"),
    ],
)
async def test_definitions_are_validated(
    project: Path, receiver: Receiver, options: dict[str, Any], words: str
) -> None:
    async with Runtime(project, config=fast()) as rt:
        with pytest.raises(SinkError) as info:
            await rt.add_sink(hook(receiver, **options))
        assert words in info.value.message
        assert info.value.message.startswith("The sink 'hook' is not valid: ")
        assert rt.sinks() == []


async def test_generated_secrets_persist_and_never_show(project: Path, receiver: Receiver) -> None:
    write_config(
        project,
        f"""
[delivery]
backoff = 0.01
[[sinks]]
name = "from_toml"
type = "webhook"
events = "*"
url = "{receiver.url("/toml")}"
headers = {{ "Authorization" = "Bearer receiver-token", "X-Team" = "infra" }}
""",
    )
    secrets: list[str] = []
    for _ in range(2):
        async with Runtime(project) as rt:
            await rt.add_sink(hook(receiver, "from_api", "/api"))
            secrets.append(webhook_secret(rt, "from_toml"))
            secrets.append(webhook_secret(rt, "from_api"))
            listing = json.dumps([s.to_dict() for s in rt.sinks()])
            await rt.emit("x.z", {})
            await rt.wait_idle()
    assert secrets[0] == secrets[2]
    assert secrets[1] == secrets[3]
    assert secrets[0] != secrets[1]
    for secret in secrets:
        assert secret not in listing
    assert "receiver-token" not in listing
    assert '"X-Team": "infra"' in listing
    for got in receiver.requests:
        key = secrets[0] if got.path == "/toml" else secrets[1]
        assert knot_signature_ok(got.body, got.headers["x-knot-signature"], key)
    assert receiver.at("/toml")[0].headers["authorization"] == "Bearer receiver-token"
    async with Runtime(project) as rt:  # removing an API sink forgets its secret
        await rt.remove_sink("from_api")
        await rt.add_sink(hook(receiver, "from_api", "/api"))
        assert webhook_secret(rt, "from_api") != secrets[1]


async def test_a_knot_toml_sink_with_a_bad_template_is_listed_with_the_position(
    project: Path, receiver: Receiver
) -> None:
    write_config(
        project,
        f"""
[[sinks]]
name = "broken_hook"
type = "webhook"
events = "*"
url = "{receiver.url()}"
body_template = '{{"a": ${{{{ toUpper }}}}}}'
""",
    )
    async with Runtime(project) as rt:
        (status,) = rt.sinks()
        await rt.emit_and_wait("x.y", {})
    assert status.name == "broken_hook"
    assert status.spec.active is False
    assert status.problem == (
        f"{project / 'knot.toml'}:2: The sink 'broken_hook' is not valid: The body_template is "
        "not valid: The template does not parse at line 1, column 11: toUpper takes 1 "
        "argument, not 0."
    )
    assert receiver.requests == []


async def test_a_password_in_the_url_is_used_but_never_shown(
    project: Path, receiver: Receiver
) -> None:
    receiver.plan("/hook", [500])
    url = receiver.url().replace("http://", "http://deploy:hunter2@")
    async with Runtime(project, config=fast(attempts=1)) as rt:
        await rt.add_sink({"name": "authed", "type": "webhook", "events": "*", "url": url})
        report = await rt.emit_and_wait("x.auth", {})
        await rt.flush()
        audit = await rt.audit_entries()
        listing = json.dumps([s.to_dict() for s in rt.sinks()])
    (got,) = receiver.requests
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"deploy:hunter2").decode()
    assert "hunter2" not in report.outcomes["authed"].error
    assert "deploy:********@127.0.0.1" in report.outcomes["authed"].error
    assert "hunter2" not in audit[-1].message
    assert "hunter2" not in listing
    assert "deploy:********@" in listing
