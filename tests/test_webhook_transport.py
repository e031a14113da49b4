"""The httpx transport is the seam: an embedder's transport sees every webhook request."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from knot import Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings

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
