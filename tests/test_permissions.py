"""Users and permissions on a real `knot serve`: 401/403 on every route, and nothing changed."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import KnotServer, run_knot, wait_until
from .receiver import Receiver

pytestmark = pytest.mark.anyio

CONFIG_TOKEN = "cfg-token-0123456789abcdef"


knot = run_knot


def add_user(project: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> str:
    result = knot("user", "add", name, *flags, "--project", str(project), env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Setup:
    server: KnotServer
    receiver: Receiver
    tokens: dict[str, str]
    http: httpx.Client | None = None

    def call(self, who: str | None, method: str, path: str, body: Any = None) -> httpx.Response:
        if self.http is None:
            self.http = httpx.Client(base_url=self.server.url, timeout=10)
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.http.request(method, path, json=body, headers=headers)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    project = tmp_path_factory.mktemp("perms")
    digest = hashlib.sha256(CONFIG_TOKEN.encode()).hexdigest()
    (project / "knot.toml").write_text(
        f'[delivery]\nbackoff = 0.01\n[users.cfg]\ntoken_sha256 = "{digest}"\n'
    )
    tokens = {
        "admin": add_user(project, "admin"),  # the first user: may manage users
        "own": add_user(project, "own"),
        "glob": add_user(project, "glob", "--manage-global-sinks"),
        "bare": add_user(project, "bare", "--no-own-sinks"),
        "cfg": CONFIG_TOKEN,
    }
    receiver = Receiver()
    server = KnotServer(project)
    made = Setup(server, receiver, tokens)
    yield made
    if made.http is not None:
        made.http.close()
    server.kill()
    receiver.close()


def sink(setup: Setup, name: str, owner: str, events: str = "custom.owned.*") -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "events": events,
        "url": setup.receiver.url(f"/{name}"),
        "owner": owner,
    }


@pytest.fixture(scope="module")
def sinks(setup: Setup) -> dict[str, str]:
    """One global sink and one per user, created by the users allowed to."""
    made = {
        "g_sink": ("glob", ""),
        "own_sink": ("own", "own"),
        "glob_sink": ("glob", "glob"),
    }
    for name, (who, owner) in made.items():
        r = setup.call(who, "POST", "/api/event-sinks", sink(setup, name, owner))
        assert r.status_code == 201, r.text
    return {name: owner for name, (_, owner) in made.items()}


def state(setup: Setup) -> tuple[str, str]:
    """Everything a denied request could have changed: every sink, every user."""
    sinks = setup.call("glob", "GET", "/api/event-sinks").json()["sinks"]
    for s in sinks:  # counters move with traffic; definitions must not
        for key in ("pending", "delivered", "failed", "dropped", "retries", "last_error"):
            s.pop(key, None)
    users = setup.call("admin", "GET", "/api/users").json()["users"]
    return json.dumps(sinks, sort_keys=True), json.dumps(users, sort_keys=True)


def every_route() -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the HTTP API but /healthz: none left out."""
    from starlette.routing import Route

    from knot import Runtime
    from knot.server import create_app

    app = create_app(Runtime("."))  # not started: only its routes are read
    out: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Route) and route.path != "/healthz":
            path = re.sub(r"\{[^}]+\}", "g_sink", route.path)
            out.extend((method, path) for method in sorted((route.methods or set()) - {"HEAD"}))
    return out


EVERY_ROUTE = every_route()
# A CORS preflight on a Sky route is open (browsers send it without credentials).
SKY_PREFLIGHTS = [(m, p) for m, p in EVERY_ROUTE if m == "OPTIONS" and p.startswith("/sky/")]
# The dashboard keeps browser sessions of its own (a cookie from its login page, not a bearer
# token): tested apart, below.
UI_ROUTES = [(m, p) for m, p in EVERY_ROUTE if p == "/ui" or p.startswith("/ui/")]
GUARDED_ROUTES = [r for r in EVERY_ROUTE if r not in SKY_PREFLIGHTS and r not in UI_ROUTES]


def test_the_route_list_covers_the_api() -> None:
    routes = set(EVERY_ROUTE)
    for expected in [
        ("POST", "/event"),
        ("GET", "/api/events/stream"),
        ("POST", "/api/event-sinks"),
        ("PUT", "/api/event-sinks/g_sink"),
        ("POST", "/api/event-sinks/g_sink/test"),
        ("DELETE", "/api/users/g_sink"),
        ("GET", "/api/whoami"),
        ("GET", "/api/spaces"),
    ]:
        assert expected in routes


@pytest.mark.parametrize(("method", "path"), GUARDED_ROUTES)
@pytest.mark.parametrize("token", [None, "knot_not-a-real-token", "Basic dXNlcjpwYXNz"])
def test_every_route_needs_a_valid_token(
    setup: Setup, sinks: dict[str, str], method: str, path: str, token: str | None
) -> None:
    before = state(setup)
    received = len(setup.receiver.requests)
    headers = {}
    if token is not None:
        headers["Authorization"] = token if token.startswith("Basic") else f"Bearer {token}"
    body = {"name": "sneaky", "type": "webhook", "events": "*", "payload": {}}
    assert setup.http is not None
    r = setup.http.request(method, path, json=body if method != "GET" else None, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="knot"'
    assert "Bearer" in r.json()["error"] or "not valid" in r.json()["error"]
    # A web page calling a Sky route must be able to read the 401 (docs/sky.md: every Sky answer,
    # errors included, carries CORS); the rest of the API is not for web pages.
    cors = r.headers.get("access-control-allow-origin")
    assert cors == ("*" if path.startswith("/sky/") else None)
    assert state(setup) == before
    assert len(setup.receiver.requests) == received


@pytest.mark.parametrize(("method", "path"), UI_ROUTES)
@pytest.mark.parametrize("token", [None, "knot_not-a-real-token"])
def test_every_dashboard_route_sends_to_its_login_and_changes_nothing(
    setup: Setup, sinks: dict[str, str], method: str, path: str, token: str | None
) -> None:
    before = state(setup)
    received = len(setup.receiver.requests)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert setup.http is not None
    data = {"name": "sneaky", "events": "*", "url": setup.receiver.url(), "sink": "g_sink"}
    r = setup.http.request(method, path, data=data if method == "POST" else None, headers=headers)
    if path == "/ui/login":  # the way in: its form, or a refused token
        assert r.status_code == (200 if method == "GET" else 401)
    elif path == "/ui/logout":
        assert r.status_code == 303
    else:
        assert r.status_code == 303
        assert r.headers["location"].startswith("/ui/login?next=")
    assert state(setup) == before
    assert len(setup.receiver.requests) == received


def test_sky_preflights_need_no_token_and_act_on_nothing(setup: Setup) -> None:
    assert {p for _, p in SKY_PREFLIGHTS} >= {
        "/sky/event/g_sink",
        "/sky/cloud/g_sink/g_sink/g_sink",
    }
    events_before = setup.call("glob", "GET", "/api/events?n=1000").json()["events"]
    before = state(setup)
    assert setup.http is not None
    for _, path in SKY_PREFLIGHTS:
        r = setup.http.options(
            path,
            headers={
                "Origin": "https://generator.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-headers"] == "authorization, content-type"
        assert "POST" in r.headers["access-control-allow-methods"]
    assert state(setup) == before
    assert setup.call("glob", "GET", "/api/events?n=1000").json()["events"] == events_before
    # The real request still needs its token, and a web page can read why it was refused.
    r = setup.http.post("/sky/event/some-eci/e1/a/b", headers={"Origin": "https://x.example"})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "*"


def test_healthz_is_open(setup: Setup) -> None:
    assert setup.call(None, "GET", "/healthz").status_code == 200


# (who, method, path, body, expected status) for every permission-sensitive route.
MATRIX = [
    # creating sinks
    ("own", "POST", "/api/event-sinks", "global", 403),
    ("own", "POST", "/api/event-sinks", "for:glob", 403),
    ("bare", "POST", "/api/event-sinks", "mine", 403),
    ("glob", "POST", "/api/event-sinks", "global", 201),
    ("glob", "POST", "/api/event-sinks", "for:own", 201),
    ("own", "POST", "/api/event-sinks", "mine", 201),
    # changing, testing and reading secrets of a global sink
    ("own", "PATCH", "/api/event-sinks/g_sink", {"description": "x"}, 403),
    ("own", "PUT", "/api/event-sinks/g_sink", {"type": "recording", "events": "*"}, 403),
    ("own", "DELETE", "/api/event-sinks/g_sink", None, 403),
    ("own", "POST", "/api/event-sinks/g_sink/test", None, 403),
    ("own", "GET", "/api/event-sinks/g_sink/secret", None, 403),
    ("admin", "PATCH", "/api/event-sinks/g_sink", {"description": "x"}, 403),
    ("glob", "PATCH", "/api/event-sinks/g_sink", {"description": "by glob"}, 200),
    ("glob", "GET", "/api/event-sinks/g_sink/secret", None, 200),
    # someone else's sink is invisible, unless one manages global sinks
    ("own", "GET", "/api/event-sinks/glob_sink", None, 404),
    ("own", "PATCH", "/api/event-sinks/glob_sink", {"description": "x"}, 404),
    ("own", "DELETE", "/api/event-sinks/glob_sink", None, 404),
    ("glob", "PATCH", "/api/event-sinks/own_sink", {"description": "by glob"}, 200),
    # one's own sink
    ("own", "PATCH", "/api/event-sinks/own_sink", {"description": "mine"}, 200),
    ("own", "PATCH", "/api/event-sinks/own_sink", {"owner": ""}, 403),
    ("own", "PATCH", "/api/event-sinks/own_sink", {"owner": "glob"}, 403),
    ("glob", "PATCH", "/api/event-sinks/own_sink", {"owner": "ghost"}, 400),
    ("glob", "POST", "/api/event-sinks", "for:ghost", 400),
    # channels: an owner must be a user, as for sinks
    ("glob", "POST", "/api/channels", {"owner": "ghost"}, 400),
    ("glob", "POST", "/api/channels", {"owner": "own"}, 201),
    ("own", "POST", "/api/event-sinks/own_sink/test", None, 200),
    ("own", "GET", "/api/event-sinks/own_sink/secret", None, 200),
    ("bare", "GET", "/api/event-sinks/g_sink", None, 200),
    # users
    ("own", "GET", "/api/users", None, 403),
    ("glob", "POST", "/api/users", {"name": "mallory"}, 403),
    ("own", "DELETE", "/api/users/glob", None, 403),
    ("cfg", "GET", "/api/users", None, 403),
    ("admin", "GET", "/api/users", None, 200),
    ("admin", "DELETE", "/api/users/cfg", None, 409),
    ("admin", "DELETE", "/api/users/nobody", None, 404),
    ("admin", "POST", "/api/users", {"name": "own"}, 409),
    ("admin", "POST", "/api/users", {"name": "bad name"}, 400),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "expected"), MATRIX)
def test_permission_matrix(
    setup: Setup, sinks: dict[str, str], who: str, method: str, path: str, body: Any, expected: int
) -> None:
    if isinstance(body, str):  # a sink to create: "global", "mine" or "for:USER"
        owner = {"global": "", "mine": who}.get(body, body.removeprefix("for:"))
        name = f"m_{who}_{body.replace(':', '_')}"
        body = sink(setup, name, owner)
        if body["owner"] == who:
            del body["owner"]  # a user's sinks are their own by default
    before = state(setup)
    tests_before = len(setup.receiver.requests)
    r = setup.call(who, method, path, body)
    assert r.status_code == expected, r.text
    if expected >= 400:
        assert state(setup) == before, "a refused request changed something"
        assert len(setup.receiver.requests) == tests_before, "a refused test delivered"
        assert r.json()["error"].endswith(".")
    if expected == 403:
        assert f"User {who!r} may not " in r.json()["error"]
        assert '"Manage ' in r.json()["error"]
    if method == "POST" and path == "/api/event-sinks" and expected == 201:
        assert r.json()["owner"] == (body.get("owner", who))
        setup.call("glob", "DELETE", f"/api/event-sinks/{r.json()['name']}")


def test_a_channel_for_a_user_who_does_not_exist_is_refused(setup: Setup) -> None:
    def owners() -> list[str]:
        return [c["owner"] for c in setup.call("glob", "GET", "/api/channels").json()["channels"]]

    before = owners()
    env = {"KNOT_TOKEN": setup.tokens["glob"]}
    done = knot("channel", "create", "--owner", "ghost", port=setup.server.port, env=env)
    assert done.returncode == 1, done.stdout
    assert "There is no user named 'ghost' to own the channel." in done.stderr
    assert owners() == before
    done = knot("channel", "create", "--owner", "own", "-q", port=setup.server.port, env=env)
    assert done.returncode == 0, done.stderr
    assert owners() == [*before, "own"]


def test_listings_show_global_and_own_sinks_only(setup: Setup, sinks: dict[str, str]) -> None:
    def listed(who: str) -> set[str]:
        return {s["name"] for s in setup.call(who, "GET", "/api/event-sinks").json()["sinks"]}

    assert listed("own") == {"g_sink", "own_sink"}
    assert listed("bare") == {"g_sink"}
    assert listed("glob") >= {"g_sink", "own_sink", "glob_sink"}
    assert {s["name"] for s in setup.call("own", "GET", "/api/sinks").json()["sinks"]} == {
        "g_sink",
        "own_sink",
    }


def test_events_raised_with_a_token_belong_to_that_user(
    setup: Setup, sinks: dict[str, str]
) -> None:
    r = setup.call("own", "POST", "/event", {"type": "owned.deploy", "payload": {"v": 1}})
    assert r.status_code == 202
    event_id = r.json()["id"]
    event = setup.call("own", "GET", f"/api/events/{event_id}").json()
    assert event["owner"] == "own"
    assert event["actor"] == {"id": "own", "username": "own", "kind": "User"}

    def hits(name: str) -> list[str]:
        return [h.headers["webhook-id"] for h in setup.receiver.at(f"/{name}")]

    wait_until(lambda: event_id in hits("own_sink"))
    wait_until(lambda: event_id in hits("g_sink"))  # global sinks fire for everyone's events
    theirs = setup.call("glob", "POST", "/event", {"type": "owned.other", "payload": {}}).json()
    wait_until(lambda: theirs["id"] in hits("glob_sink"))
    wait_until(lambda: theirs["id"] in hits("g_sink"))
    assert event_id not in hits("glob_sink")
    assert theirs["id"] not in hits("own_sink")


def test_whoami_and_config_users(setup: Setup) -> None:
    me = setup.call("cfg", "GET", "/api/whoami").json()
    assert me["name"] == "cfg"
    assert me["manage_own_sinks"] is True
    assert me["manage_global_sinks"] is False
    users = setup.call("admin", "GET", "/api/users").json()["users"]
    by_name = {u["name"]: u for u in users}
    assert by_name["cfg"]["origin"] == "config"
    assert by_name["admin"]["permissions"] == ["Manage Own Event Sinks", "Manage Users"]
    assert by_name["glob"]["manage_global_sinks"] is True


def test_tokens_never_show_in_listings_or_logs(setup: Setup, sinks: dict[str, str]) -> None:
    created = setup.call("admin", "POST", "/api/users", {"name": "temp"})
    assert created.status_code == 201
    temp_token = created.json()["token"]
    setup.tokens["temp"] = temp_token
    assert setup.call("temp", "GET", "/api/whoami").json()["name"] == "temp"
    everything = [temp_token, *setup.tokens.values()]
    digests = [hashlib.sha256(t.encode()).hexdigest() for t in everything]
    listings = (
        "".join(
            setup.call("admin", "GET", route).text
            for route in ("/api/users", "/api/events?n=1000", "/api/audit?n=1000")
        )
        + setup.call("glob", "GET", "/api/event-sinks").text
    )
    secrets = [
        setup.call("glob", "GET", f"/api/event-sinks/{name}/secret").json()["secret"]
        for name in sinks
    ]
    setup.call(None, "GET", "/api/events")  # a refused request is logged: without a token
    for leaked in [*everything, *digests, *secrets]:
        assert leaked not in listings
        assert leaked not in setup.server.output()
    removed = setup.call("admin", "DELETE", "/api/users/temp")
    assert removed.status_code == 200
    assert setup.call("temp", "GET", "/api/whoami").status_code == 401
    del setup.tokens["temp"]


def test_user_commands_go_through_the_running_runtime(setup: Setup) -> None:
    project = str(setup.server.project)
    port = {"KNOT_API_PORT": str(setup.server.port)}
    refused = knot("user", "add", "eve", "--project", project, env=port)
    assert refused.returncode == 1
    assert "knot: This runtime has users: send `Authorization: Bearer TOKEN`" in refused.stderr
    forbidden = knot(
        "user", "add", "eve", "--project", project, env={**port, "KNOT_TOKEN": setup.tokens["own"]}
    )
    assert forbidden.returncode == 1
    assert "may not create the user 'eve'" in forbidden.stderr
    admin = {**port, "KNOT_TOKEN": setup.tokens["admin"]}
    token = add_user(Path(project), "eve", "--manage-global-sinks", env=admin)
    assert token.startswith("knot_")
    assert setup.call(None, "GET", "/healthz").status_code == 200
    with httpx.Client(base_url=setup.server.url, timeout=10) as c:
        me = c.get("/api/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["manage_global_sinks"] is True
    listed = knot("user", "list", "--json", "--project", project, env=admin)
    assert "eve" in {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    assert knot("user", "remove", "eve", "--project", project, env=admin).returncode == 0
    whoami = knot("user", "whoami", "--project", project, env=admin)
    assert json.loads(whoami.stdout)["name"] == "admin"


def test_the_first_user_through_a_loopback_runtime(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    project = tmp_path / "first"
    project.mkdir()
    server = server_factory(project)
    with server.client() as http:
        assert http.get("/api/sinks").status_code == 200  # no users: the local user
        env = {"KNOT_API_PORT": str(server.port)}
        token = add_user(project, "root", env=env)
        denied = http.get("/api/sinks")
        assert denied.status_code == 401  # at once, no restart
        me = http.get("/api/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["manage_users"] is True  # the first user may add the next
    assert token not in server.output()


def test_non_loopback_without_users_is_refused_at_start(tmp_path: Path) -> None:
    project = tmp_path / "open"
    project.mkdir()
    result = knot("serve", "--project", str(project), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [
        "knot: Refusing to listen on 0.0.0.0: with no users configured anyone who can reach it "
        "could do everything; add one with `knot user add NAME` (or [users] in knot.toml), or "
        "listen on 127.0.0.1."
    ]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[users.a]\ntoken = "short"\n', "knot.toml:1: users.a token must be a string of at least"),
        ("[users.b]\nmanage_users = true\n", "knot.toml:1: users.b needs exactly one of"),
        ('[users.c]\ntoken_sha256 = "abc"\n', "users.c token_sha256 must be 64 lower-case hex"),
        ('\n[users."bad name"]\ntoken = "0123456789abcdef0"\n', "is not valid"),
        ('[users.d]\ntoken = "0123456789abcdef0"\nmanage_users = "yes"\n', "must be true or false"),
        ('[users.e]\ntoken = "0123456789abcdef0"\nadmin = true\n', "unknown keys admin"),
    ],
)
def test_bad_users_in_knot_toml_are_config_errors(table: str, words: str) -> None:
    from knot import parse_config

    result = parse_config(table, path="knot.toml")
    assert not result.ok
    assert any(words in error for error in result.errors), result.errors


async def test_an_app_beyond_loopback_without_users_admits_nobody(tmp_path: Path) -> None:
    from knot import Runtime
    from knot.server import create_app
    from knot.server.app import is_loopback

    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.com")] == [False] * 4
    async with Runtime(tmp_path) as rt:
        for loopback, expected in ((False, 401), (True, 200)):
            transport = httpx.ASGITransport(app=create_app(rt, loopback=loopback))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                assert (await client.get("/healthz")).status_code == 200
                answer = await client.get("/api/whoami")
                assert answer.status_code == expected
                if expected == 401:
                    assert "listens beyond loopback and has no users" in answer.json()["error"]
                else:
                    assert answer.json()["name"] == "local"


def test_users_added_to_knot_toml_apply_without_a_restart(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    project = tmp_path / "hot"
    project.mkdir()
    server = server_factory(project)
    token = "hot-token-0123456789abcdef"
    with server.client() as http:
        assert http.get("/api/sinks").status_code == 200
        digest = hashlib.sha256(token.encode()).hexdigest()
        (project / "knot.toml").write_text(f'[users.hot]\ntoken_sha256 = "{digest}"\n')
        wait_until(lambda: http.get("/api/sinks").status_code == 401)
        me = http.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["name"] == "hot"
        (project / "knot.toml").write_text("")
        wait_until(lambda: http.get("/api/sinks").status_code == 200)


def test_a_user_reads_only_their_own_events_and_audit(setup: Setup, sinks: dict[str, str]) -> None:
    """Found in review: /api/events, /api/events/{id}, the live stream and /api/audit answered
    everyone's events (payloads included) and the whole audit log to any token holder."""
    setup.receiver.plan("/own_sink", [500] * 3)
    setup.receiver.plan("/glob_sink", [500] * 3)
    mine = setup.call("own", "POST", "/event", {"type": "owned.read", "payload": {"n": 1}})
    theirs = setup.call("glob", "POST", "/event", {"type": "owned.read", "payload": {"n": 2}})
    mine_id, theirs_id = mine.json()["id"], theirs.json()["id"]

    def listed(who: str) -> set[str]:
        answer = setup.call(who, "GET", "/api/events?pattern=custom.owned.read&n=100").json()
        return {e["id"] for e in answer["events"]}

    assert listed("own") == {mine_id}
    assert listed("glob") >= {mine_id, theirs_id}
    assert setup.call("own", "GET", f"/api/events/{theirs_id}").status_code == 404
    assert setup.call("glob", "GET", f"/api/events/{mine_id}").status_code == 200

    def audited(who: str) -> list[dict[str, Any]]:
        return list(setup.call(who, "GET", "/api/audit?n=1000").json()["audit"])

    wait_until(lambda: {"own_sink", "glob_sink"} <= {e["sink"] for e in audited("glob")})
    assert {e["sink"] for e in audited("own")} == {"own_sink"}
    assert setup.call("own", "GET", "/api/audit?sink=glob_sink").json()["audit"] == []


def test_the_live_stream_shows_a_user_only_their_own_events(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.tokens['own']}"}
    with (
        httpx.Client(base_url=setup.server.url, timeout=10) as client,
        client.stream("GET", "/api/events/stream?pattern=custom.owned.*", headers=headers) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines) == ": connected"
        theirs = setup.call("glob", "POST", "/event", {"type": "owned.live", "payload": {}})
        mine = setup.call("own", "POST", "/event", {"type": "owned.live", "payload": {}})
        seen = []
        for line in lines:
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])["id"])
                if seen[-1] == mine.json()["id"]:
                    break
    assert theirs.json()["id"] not in seen
