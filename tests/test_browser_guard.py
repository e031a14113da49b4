"""No web page may drive a loopback runtime through the user's browser (server/guard.py).

Found in review: a runtime on loopback without users lets every request act as the local user,
and nothing told a browser's request from the CLI's. Any page the user had open could send a
"simple" cross-site POST (Content-Type text/plain, no preflight) to 127.0.0.1 and create and
start a space running any shell command; DNS rebinding let a page read the API too. These
requests are what a browser sends; a real `knot serve` must refuse them and change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from knot import Runtime
from knot.server import create_app

from .helpers import KnotServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    srv = KnotServer(tmp_path_factory.mktemp("guard"), quiet=True)
    yield srv
    srv.terminate()


def spaces(server: KnotServer) -> list[str]:
    with server.client() as client:
        return [s["name"] for s in client.get("/api/spaces").json()["spaces"]]


def test_a_cross_site_simple_post_cannot_run_a_command(server: KnotServer, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    body = json.dumps({"name": "pwn", "cmd": f"touch {marker}", "start": True})
    with server.client() as client:
        r = client.post(
            "/api/spaces",
            content=body,
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
    assert r.status_code == 403
    assert r.json()["error"].startswith("A web page (http://evil.example) may not call")
    assert spaces(server) == []
    assert not marker.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},  # a sandboxed iframe, a file:// page
        {"Origin": "https://127.0.0.1.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},  # an embed or navigation from another site
    ],
)
def test_other_cross_site_requests_are_refused(server: KnotServer, headers: dict[str, str]) -> None:
    with server.client() as client:
        event = client.post("/event", json={"type": "csrf.x"}, headers=headers)
        listing = client.get("/api/events", headers=headers)
        assert (event.status_code, listing.status_code) == (403, 403)
        assert client.get("/api/events", params={"pattern": "custom.csrf.*"}).json() == {
            "events": []
        }


@pytest.mark.parametrize("host", ["evil.example:12201", "evil.example", "127.0.0.1.nip.io:80"])
def test_a_rebound_host_is_refused(server: KnotServer, host: str) -> None:
    """DNS rebinding: the page's own hostname now resolves to 127.0.0.1; Host still names it."""
    with server.client() as client:
        r = client.get("/api/spaces", headers={"Host": host})
        sky = client.get("/sky/event/x/none/a/b", headers={"Host": host})
    assert r.status_code == 403
    assert f"The Host header {host!r} does not name this machine" in r.json()["error"]
    assert sky.status_code == 403


def test_what_the_cli_and_local_pages_send_is_served(server: KnotServer) -> None:
    with server.client() as client:
        eci = client.post("/api/channels", json={"name": "page"}).json()["eci"]
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
            assert client.get("/api/sinks", headers={"Host": host}).status_code == 200
        local_page = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
        assert client.get("/api/sinks", headers=local_page).status_code == 200
        typed = {"Sec-Fetch-Site": "none"}  # the user typed the URL
        assert client.get("/api/sinks", headers=typed).status_code == 200
        # The Sky routes are made for web pages: any origin, CORS answered.
        sky = client.get(
            f"/sky/event/{eci}/none/page/clicked", headers={"Origin": "https://app.example"}
        )
        assert sky.status_code == 200
        assert sky.headers["access-control-allow-origin"] == "*"


async def test_beyond_loopback_any_host_may_call_with_a_token(tmp_path: Path) -> None:
    """Bound beyond loopback, names are the point (and tokens are required): no Host check."""
    async with Runtime(tmp_path) as rt:
        _, token = await rt.users.add("ops", manage_global_sinks=True)
        app = create_app(rt, loopback=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://knot.example.internal"
        ) as client:
            answer = await client.get("/api/sinks", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200
            cross = await client.post(
                "/event",
                json={"type": "x"},
                headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
            )
            assert cross.status_code == 403


async def test_beyond_loopback_the_dashboards_own_pages_may_act(tmp_path: Path) -> None:
    """The dashboard's pages come from the server itself (Origin = the Host it was reached
    at): their actions pass the guard; a page of any other origin is still refused."""
    async with Runtime(tmp_path) as rt:
        _, token = await rt.users.add("ops", manage_global_sinks=True)
        app = create_app(rt, loopback=False)
        transport = httpx.ASGITransport(app=app)
        base = "http://knot.example.internal:12201"
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            login = await client.post("/ui/login", data={"token": token, "next": "/ui/sinks"})
            assert login.status_code == 303
            page = await client.get("/ui/sinks")
            csrf = page.text.split('"X-CSRF-Token": "')[1].split('"')[0]
            made = {"name": "hook", "events": "*", "url": "http://127.0.0.1:9/"}
            foreign = await client.post(
                "/ui/sinks/save", data=made, headers={"X-CSRF-Token": csrf, "Origin": "http://x"}
            )
            assert foreign.status_code == 403
            assert "hook" not in rt.registry
            own = await client.post(
                "/ui/sinks/save", data=made, headers={"X-CSRF-Token": csrf, "Origin": base}
            )
            assert own.status_code == 200
            assert "hook" in rt.registry
            other_port = await client.post(
                "/event",
                json={"type": "x"},
                headers={"Authorization": f"Bearer {token}", "Origin": base.replace("12201", "1")},
            )
            assert other_port.status_code == 403
