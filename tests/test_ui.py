"""The dashboard's server side over HTTP (no browser): pages, filters, sessions, CSRF,
permissions, and hostile input. The browser tests (test_ui_browser.py) drive the same pages
in chromium; the event stream is tested there, on a real server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from knot import Config, Event, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import DeliverySettings
from knot.server.app import create_app
from knot.sinks.base import DeliveryResult
from knot.sinks.recording import RecordingSink
from knot.ui.charts import Counters, Sampler, sparkline
from knot.ui.filters import FILTER_NAMES
from knot.ui.session import Sessions

from .conftest import recording
from .fuzzing import fuzz, texts
from .helpers import KnotServer, run_knot

pytestmark = pytest.mark.anyio

CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def _config() -> Config:
    return Config(delivery=DeliverySettings(attempts=2, backoff=(0.001,)))


@pytest.fixture
async def rt(project: Path) -> AsyncIterator[Runtime]:
    async with Runtime(project, config=_config()) as runtime:
        yield runtime


def _client(rt: Runtime, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(rt, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def _csrf(http: httpx.AsyncClient, path: str = "/ui/sinks") -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def test_every_page_answers_and_links_to_the_others(rt: Runtime) -> None:
    await rt.add_sink(recording("rec", "custom.*"))
    event_id = await rt.emit("app.deployed", {"version": "1"})
    await rt.wait_idle()
    async with _client(rt) as http:
        for path in (
            "/ui",
            "/ui/sinks",
            "/ui/events",
            f"/ui/events/{event_id}",
            "/ui/audit",
            "/ui/scripts",
            "/ui/methods",
            "/ui/spaces",
            "/ui/cluster",
        ):
            page = await http.get(path)
            assert page.status_code == 200, (path, page.text)
            assert 'href="/ui/events"' in page.text
            assert "text/html" in page.headers["content-type"]
        static = await http.get("/ui/static/htmx.min.js")
        assert static.status_code == 200
        assert "htmx" in static.text[:2000]


async def test_a_local_browser_gets_a_strict_httponly_session_cookie(rt: Runtime) -> None:
    async with _client(rt) as http:
        page = await http.get("/ui")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("knot_ui=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie


async def test_actions_need_the_csrf_token_and_nothing_changes_without_it(rt: Runtime) -> None:
    await rt.add_sink(
        {"name": "hook", "type": "webhook", "events": "*", "url": "http://127.0.0.1:9/"}
    )
    async with _client(rt) as http:
        token = await _csrf(http)
        refused = await http.post("/ui/sinks/hook/active", data={"active": "false"})
        wrong = await http.post(
            "/ui/sinks/hook/active", data={"active": "false"}, headers={"X-CSRF-Token": "x"}
        )
        assert rt.registry.spec("hook").active
        done = await http.post(
            "/ui/sinks/hook/active", data={"active": "false"}, headers={"X-CSRF-Token": token}
        )
        in_form = await http.post("/ui/sinks/hook/active", data={"active": "true", "csrf": token})
    for answer in (refused, wrong):
        assert answer.status_code == 403
        assert "CSRF token" in answer.text
    assert done.status_code == 200
    assert "paused" in done.text
    assert in_form.status_code == 200
    assert rt.registry.spec("hook").active


async def test_no_cookie_at_all_is_refused_too(rt: Runtime) -> None:
    async with _client(rt) as http:
        answer = await http.post("/ui/sinks/save", data={"name": "x"})
    assert answer.status_code == 403
    assert rt.sinks() == []


async def test_webhook_sinks_are_added_edited_and_deleted_with_errors_inline(
    rt: Runtime,
) -> None:
    async with _client(rt) as http:
        token = {"X-CSRF-Token": await _csrf(http)}
        bad = await http.post(
            "/ui/sinks/save",
            data={"name": "hook", "events": "space.*.x", "url": "http://127.0.0.1:9/"},
            headers=token,
        )
        assert bad.status_code == 200
        assert "space.*.x" in bad.text
        assert 'role="alert"' in bad.text
        assert 'value="hook"' in bad.text  # what was typed stays in the form
        assert "hook" not in rt.registry
        bad_headers = await http.post(
            "/ui/sinks/save",
            data={"name": "hook", "events": "*", "url": "http://x/", "headers": "[1"},
            headers=token,
        )
        assert "JSON" in bad_headers.text
        made = await http.post(
            "/ui/sinks/save",
            data={
                "name": "hook",
                "events": "custom.app.*",
                "url": "http://127.0.0.1:9/h",
                "headers": '{"X-Team": "infra"}',
            },
            headers=token,
        )
        assert "was added" in made.text
        assert "signing secret" in made.text
        secret = rt.sink("hook").spec.options.get("secret")
        edit = await http.get("/ui/sinks?edit=hook")
        assert 'value="custom.app.*"' in edit.text
        assert "X-Team" in edit.text
        saved = await http.post(
            "/ui/sinks/save",
            data={
                "original": "hook",
                "name": "hook",
                "events": "custom.other.*",
                "url": "http://127.0.0.1:9/h",
            },
            headers=token,
        )
        assert "was saved" in saved.text
        assert rt.registry.spec("hook").events_text == "custom.other.*"
        assert rt.sink("hook").spec.options.get("secret") == secret  # empty: kept
        gone = await http.post("/ui/sinks/hook/delete", headers=token)
        assert "was removed" in gone.text
    assert "hook" not in rt.registry


async def test_the_events_page_filters_and_pages_by_the_query_string(rt: Runtime) -> None:
    await rt.add_sink(recording("rec", "custom.a.*"))
    await rt.add_sink(recording("flaky", "custom.b", fail_attempts=5))
    ids = [await rt.emit("a.x", {"n": n, "text": f"ünïcode {n} 100%"}) for n in range(60)]
    failed = await rt.emit("b", {"n": "b"})
    await rt.wait_idle()
    await rt.flush()  # the give-up's record is committed with the journal's next batch
    async with _client(rt) as http:
        first = await http.get("/ui/events")
        assert first.text.index(failed) < first.text.index(ids[-1])  # newest first
        assert ids[10] not in first.text
        older = re.search(r'href="(/ui/events\?before=\d+)"', first.text)
        assert older is not None
        await rt.emit("a.x", {"n": "late"})  # a new event does not shift the next page
        second = await http.get(older.group(1).replace("&amp;", "&"))
        assert ids[10] in second.text
        assert ids[0] in second.text
        assert ids[11] not in second.text  # it was on the first page
        by_sink = await http.get("/ui/events", params={"sink": "flaky", "outcome": "failed"})
        assert failed in by_sink.text
        assert ids[0] not in by_sink.text
        text = await http.get("/ui/events", params={"q": "ÜNÏCODE 7 100%"})
        assert ids[7] in text.text
        assert ids[8] not in text.text
        typed = await http.get("/ui/events", params={"type": "b"})  # custom. is added
        assert failed in typed.text
        assert ids[0] not in typed.text
        later = await http.get("/ui/events", params={"since": "2999-01-01T00:00"})
        assert ids[0] not in later.text
        hostile = await http.get(
            "/ui/events",
            params={
                "type": "a.*.b",
                "since": "yesterday",
                "outcome": "'; drop",
                "before": "-1",
                "q": "x" * 5000,
                "sink": "<script>",
            },
        )
    assert hostile.status_code == 200
    for said in ("a.*.b", "yesterday", "drop", "-1", "longer than", "no sink named"):
        assert said in hostile.text
    assert "<script>" not in hostile.text


async def test_a_user_sees_only_their_sinks_and_events_after_logging_in(rt: Runtime) -> None:
    _, own_token = await rt.users.add("own")
    await rt.users.add("admin", manage_global_sinks=True)
    await rt.add_sink(recording("mine", "custom.*"))
    await rt.add_sink(
        {
            "name": "theirs",
            "type": "webhook",
            "events": "*",
            "url": "http://127.0.0.1:9/",
            "owner": "admin",
        }
    )
    mine = await rt.emit("a", {"secret": "own's"}, owner="own")
    theirs = await rt.emit("a", {"secret": "admin's"}, owner="admin")
    await rt.wait_idle()
    async with _client(rt) as http:
        away = await http.get("/ui/events")
        assert away.status_code == 303
        assert away.headers["location"].startswith("/ui/login?next=")
        nope = await http.post("/ui/login", data={"token": "wrong", "next": "/ui/events"})
        assert nope.status_code == 401
        assert "not valid" in nope.text
        evil = await http.post("/ui/login", data={"token": own_token, "next": "//evil.example"})
        assert evil.headers["location"] == "/ui"
        events = await http.get("/ui/events")
        assert mine in events.text
        assert theirs not in events.text
        assert (await http.get(f"/ui/events/{theirs}")).status_code == 404
        sinks = await http.get("/ui/sinks")
        assert "mine" in sinks.text
        assert "theirs" not in sinks.text
        scripts = await http.get("/ui/scripts")
        assert scripts.status_code == 403
        token = {"X-CSRF-Token": await _csrf(http)}
        replay = await http.post(
            f"/ui/events/{mine}/redeliver", data={"sink": "theirs"}, headers=token
        )
        assert replay.status_code == 404
        out = await http.post("/ui/logout", headers=token)
        assert out.status_code == 303
        assert (await http.get("/ui/events")).status_code == 303


async def test_other_sites_and_rebound_hosts_are_refused_before_anything(rt: Runtime) -> None:
    async with _client(rt) as http:
        token = {"X-CSRF-Token": await _csrf(http)}
        cross = await http.post(
            "/ui/sinks/save", data={"name": "x"}, headers={**token, "Origin": "http://evil.example"}
        )
        rebound = await http.get("/ui", headers={"Host": "evil.example"})
    assert cross.status_code == 403
    assert rebound.status_code == 403
    assert rt.sinks() == []


async def test_a_runtime_beyond_loopback_without_users_keeps_the_dashboard_closed(
    rt: Runtime,
) -> None:
    async with _client(rt, loopback=False) as http:
        page = await http.get("/ui", headers={"Host": "knot.example"})
    assert page.status_code == 403
    assert "knot user add" in page.text


async def test_the_retry_button_redelivers_and_says_how_it_went(rt: Runtime) -> None:
    sink = recording("flaky", "custom.*", fail_attempts=2)
    await rt.add_sink(sink)
    event_id = await rt.emit("job", {})
    await rt.wait_idle()
    async with _client(rt) as http:
        page = await http.get(f"/ui/events/{event_id}")
        assert "Retry" in page.text
        token = {"X-CSRF-Token": await _csrf(http)}
        answer = await http.post(
            f"/ui/events/{event_id}/redeliver", data={"sink": "flaky"}, headers=token
        )
        assert "flaky: delivered (1 attempt)" in answer.text
        assert answer.headers["hx-trigger"] == "deliveries-changed"
        after = await http.get(f"/ui/events/{event_id}", headers={"HX-Request": "true"})
    assert 'data-status="delivered"' in after.text
    assert len(sink.events) == 1


def test_sessions_are_bounded_and_expire() -> None:
    sessions = Sessions(limit=3, seconds=-1)
    made = [sessions.new("u") for _ in range(5)]
    assert sessions.get(made[0].id) is None  # the oldest went first
    assert sessions.get(made[-1].id) is None  # and every one has expired
    assert len({s.csrf for s in made}) == 5


def test_knot_ui_prints_the_dashboard_address_and_opens_nothing_without_a_display(
    project: Path, server_factory: type[KnotServer]
) -> None:
    server = server_factory(project)
    env = {"KNOT_URL": server.url, "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    shown = run_knot("ui", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"{server.url}/ui"
    assert server.client().get(shown.stdout.strip()).status_code == 200
    nobody = run_knot("ui", "--no-open", env={"KNOT_URL": "http://127.0.0.1:9"})
    assert nobody.returncode != 0
    assert "No knot runtime answers" in nobody.stderr


# -- fuzzing: whatever a person (or a script) puts in the query string or a form ---------------

UI_PAGES = [
    "/ui",
    "/ui/sinks",
    "/ui/events",
    "/ui/audit",
    "/ui/scripts",
    "/ui/spaces",
    "/ui/methods",
    "/ui/events/rows",
    "/ui/sinks/rows",
]
UI_KEYS = (
    st.sampled_from(
        [*FILTER_NAMES, "before", "live", "edit", "view", "log", "n", "owner", "method", "next"]
    )
    | texts
)
UI_ACTIONS = [
    "/ui/sinks/save",
    "/ui/sinks/rec/active",
    "/ui/sinks/rec/test",
    "/ui/methods/call",
    "/ui/spaces/web/start",
    "/ui/events/nope/redeliver",
    "/ui/sinks/nope/delete",
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KnotServer, str]]:
    project = tmp_path_factory.mktemp("uifuzz")
    (project / "knot.toml").write_text(
        '[[sinks]]\nname = "rec"\ntype = "webhook"\nevents = "custom.*"\n'
        'url = "http://127.0.0.1:9/"\n[delivery]\nattempts = 1\n'
    )
    server = KnotServer(project)
    with server.client() as http:
        http.post("/event", json={"type": "fuzz", "payload": {"a": "ü"}})
        page = http.get("/ui/sinks")
        found = CSRF.search(page.text)
        assert found is not None
        cookie = page.cookies["knot_ui"]
    yield server, f"{found.group(1)}|{cookie}"
    server.terminate()


def _check_html(answer: httpx.Response) -> None:
    where = f"{answer.request.method} {answer.request.url} -> {answer.status_code}"
    assert answer.status_code < 500, where + answer.text[:300]
    if answer.status_code not in (204, 303):
        assert answer.headers["content-type"].startswith("text/html"), where
    if answer.status_code == 303:
        assert answer.headers["location"].startswith("/ui"), where


@fuzz(60)
@given(path=st.sampled_from(UI_PAGES), pairs=st.lists(st.tuples(UI_KEYS, texts), max_size=4))
def test_fuzzed_query_strings_never_break_a_page(
    ui_server: tuple[KnotServer, str], path: str, pairs: list[tuple[str, str]]
) -> None:
    server, secrets_ = ui_server
    cookie = secrets_.split("|")[1]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    with httpx.Client(base_url=server.url, cookies={"knot_ui": cookie}, timeout=10) as http:
        _check_html(http.get(f"{path}?{query}"))


@fuzz(60)
@given(
    path=st.sampled_from(UI_ACTIONS),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "events",
                "url",
                "headers",
                "body_template",
                "owner",
                "secret",
                "original",
                "active",
                "sink",
                "method",
                "params",
            ]
        )
        | texts,
        texts,
        max_size=6,
    ),
)
def test_fuzzed_forms_never_break_an_action(
    ui_server: tuple[KnotServer, str], path: str, fields: dict[str, str]
) -> None:
    server, secrets_ = ui_server
    token, cookie = secrets_.split("|")
    with httpx.Client(base_url=server.url, cookies={"knot_ui": cookie}, timeout=10) as http:
        answer = http.post(path, data=fields, headers={"X-CSRF-Token": token})
    _check_html(answer)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/sinks/rec").status_code == 200  # (the fixed one is still there)


def test_the_overview_sampler_counts_per_minute_and_never_negative() -> None:
    now = [60.0 * 1000]
    counts = [Counters(0, 0, 0, 0)]
    sampler = Sampler(lambda: counts[0], clock=lambda: now[0])
    sampler.sample()  # the baseline
    counts[0] = Counters(100, 90, 5, 5)
    now[0] += 10
    sampler.sample()
    assert sampler.rate == pytest.approx(10.0)
    now[0] += 60
    counts[0] = Counters(160, 40, 5, 5)  # a sink removed took 90 deliveries with it
    sampler.sample()
    assert sampler.series("events")[-2:] == [100, 60]
    assert sampler.series("delivered")[-2:] == [90, 0]
    assert sampler.total("failed") == 5
    now[0] += 60 * 61  # an hour later, nothing is left of that
    sampler.sample()
    assert sampler.total("events") == 0
    assert len(sampler.series("events")) == 60
    svg = str(sparkline([0, 3, 1], label="Events"))
    assert svg.count("<rect") == 2
    assert 'aria-label="Events: 4 in the last hour, at most 3 in one minute"' in svg


async def test_the_overview_charts_are_for_those_who_see_everything(rt: Runtime) -> None:
    _, own = await rt.users.add("own")
    _, admin = await rt.users.add("admin", manage_global_sinks=True)
    await rt.emit("a", {})
    async with _client(rt) as http:
        await http.post("/ui/login", data={"token": admin})
        assert "The last hour" in (await http.get("/ui")).text
    async with _client(rt) as http:
        await http.post("/ui/login", data={"token": own})
        page = await http.get("/ui")
        assert page.status_code == 200
        assert "The last hour" not in page.text


class _Spawner(RecordingSink):
    """Raises one `custom.child` event for each event it gets."""

    async def deliver(self, event: Event) -> DeliveryResult | None:
        await super().deliver(event)
        assert self.host is not None
        await self.host.emit_child(event, "child", {"from": event.id})
        return DeliveryResult(output=("raised a child",))


async def test_one_event_links_the_event_that_caused_it_and_those_it_caused(rt: Runtime) -> None:
    spec = SinkSpec(
        "spawner", "recording", parse_patterns("custom.parent"), origin=SinkOrigin.BUILTIN
    )
    await rt.add_sink(_Spawner(spec))
    parent = await rt.emit("parent", {"p": 1})
    await rt.wait_idle()
    child = next(e for e in await rt.events(limit=5) if e.type == "custom.child")
    async with _client(rt) as http:
        up = await http.get(f"/ui/events/{parent}")
        down = await http.get(f"/ui/events/{child.id}")
    assert f'href="/ui/events/{child.id}"' in up.text  # what it caused
    assert "raised a child" in up.text  # the sink's output line, on its attempt
    assert f'href="/ui/events/{parent}">custom.parent</a>' in down.text  # what caused it


async def test_a_sinks_failures_are_retried_together_oldest_first(rt: Runtime) -> None:
    flaky = recording("flaky", "custom.job", fail_attempts=2)  # attempts = 2: given up once
    await rt.add_sink(flaky)
    ids = [await rt.emit("job", {"n": n}) for n in range(3)]
    await rt.emit("other", {})
    await rt.wait_idle()
    await rt.flush()  # the give-ups' records are committed with the journal's next batch
    async with _client(rt) as http:
        page = await http.get("/ui/events", params={"sink": "flaky", "outcome": "failed"})
        assert "Retry these 3 for flaky" in page.text
        form = re.search(r'name="ids" value="([^"]+)"', page.text)
        assert form is not None
        token = {"X-CSRF-Token": await _csrf(http)}
        refused = await http.post(
            "/ui/events/retry", data={"sink": "nope", "ids": form.group(1)}, headers=token
        )
        assert refused.status_code == 404
        answer = await http.post(
            "/ui/events/retry", data={"sink": "flaky", "ids": form.group(1)}, headers=token
        )
        assert "Queued 3 events for flaky" in answer.text
        for _ in range(500):
            if len(flaky.events) == 3:
                break
            await asyncio.sleep(0.01)
    assert [e.id for e in flaky.events] == ids  # in journal order
