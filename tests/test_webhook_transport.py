"""The httpx transport is the seam: an embedder's transport sees every webhook request."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import httpx
import pytest

from knot import Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings
from knot.sinks.webhook_aiohttp import httpx_error

pytestmark = pytest.mark.anyio


async def test_webhook_requests_go_through_the_given_transport(project: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204 if len(seen) > 1 else 503, text="not yet")

    config = Config(delivery=DeliverySettings(backoff=(0.01,)))
    async with Runtime(project, config=config, http_transport=httpx.MockTransport(handler)) as rt:
        await rt.add_sink(
            {
                "name": "hook",
                "type": "webhook",
                "events": "custom.deploy.*",
                "url": "http://127.0.0.1:9/never-dialled",
                "secret": "s3cret",
            }
        )
        report = await rt.emit_and_wait("deploy.done", {"v": 2}, timeout=30)
    outcome = report.outcomes["hook"]
    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.attempts == 2  # the 503 was a failed attempt, retried
    assert len(seen) == 2
    request = seen[-1]
    assert request.headers["X-Knot-Event-Id"] == report.id
    body = request.content
    assert json.loads(body)["data"] == {"v": 2}
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert request.headers["X-Knot-Signature"] == f"sha256={expected}"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("truncated"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ServerTimeoutError("read timed out"), httpx.ReadTimeout),
        (aiohttp.InvalidURL("nope://"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("anything else"), httpx.TransportError),
    ],
)
def test_aiohttp_errors_become_the_httpx_errors_the_sink_handles(
    raised: aiohttp.ClientError, expected: type[httpx.TransportError]
) -> None:
    mapped = httpx_error(raised)
    assert type(mapped) is expected
    assert str(mapped)


def _garbage_server(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TCP server on loopback that answers every connection with `answer`, then closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    "answer",
    [b"this is not HTTP\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", b""],
)
async def test_a_receiver_that_breaks_http_is_a_failed_attempt_with_a_reason(
    project: Path, answer: bytes
) -> None:
    server, thread = _garbage_server(answer)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    try:
        config = Config(delivery=DeliverySettings(attempts=1))
        async with Runtime(project, config=config) as rt:
            await rt.add_sink({"name": "hook", "type": "webhook", "events": "*", "url": url})
            report = await rt.emit_and_wait("x.garbage", {}, timeout=30)
            (status,) = rt.sinks()
    finally:
        server.close()
        thread.join(5)
    assert report.outcomes["hook"].status is DeliveryStatus.FAILED
    assert status.last_error.startswith(f"The connection to {url} broke before an answer came")


def test_import_knot_leaves_aiohttp_for_the_first_webhook() -> None:
    # Every CLI command imports knot; aiohttp (and the TLS contexts it makes on import) costs
    # about 0.1 s, needed only once a webhook is delivered.
    code = "import sys, knot, knot.cli; print('aiohttp' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
