"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against a real
`knot serve` on loopback (server-sent events need a real server) and a loopback receiver.

These fail, never skip, without chromium (`make test` installs it: tools/system-deps). Each
page is also saved as a screenshot: into docs/images/ (for docs/dashboard.md) when
KNOT_UI_SCREENSHOTS=docs is set, else under the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from .helpers import KnotServer, run_knot, wait_until
from .receiver import Receiver

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
SHOT_SIZE: ViewportSize = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it (tools/system-deps)."
    browser = playwright.chromium.launch(executable_path=chromium, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=SHOT_SIZE)
    # A flag the tests wait on: the live tail's event stream is open.
    context.add_init_script(
        "document.addEventListener('htmx:sseOpen', () => { window.__sseOpen = true; });"
    )
    yield context
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("KNOT_UI_SCREENSHOTS") == "docs":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path


def shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 1000


def _project(tmp_path: Path, receiver: Receiver, extra: str = "") -> Path:
    project = tmp_path / "project"
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "methods").mkdir()
    (project / "knot.toml").write_text(
        "[delivery]\nattempts = 2\nbackoff = [0.01]\n"
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.app.*"\n'
        f'url = "{receiver.url("/hook")}"\n' + extra
    )
    (project / "scripts" / "sinks" / "notify.py").write_text(
        "# events: custom.app.*\n# description: says what was deployed\nimport knot.event\n"
        'print("deployed", knot.event.get_string("version", "?"))\n'
    )
    (project / "scripts" / "methods" / "deploys.py").write_text(
        "import knot.methods\n\ncount = 0\n\n\n@knot.methods.method()\ndef bump(params):\n"
        "    global count\n    count += 1\n    return {'count': count}\n"
    )
    return project


@pytest.fixture
def served(tmp_path: Path, receiver: Receiver) -> Iterator[KnotServer]:
    server = KnotServer(_project(tmp_path, receiver))
    yield server
    server.terminate()


def _raise(server: KnotServer, kind: str, payload: dict[str, object]) -> str:
    with server.client() as http:
        answer = http.post("/event", json={"type": kind, "payload": payload})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_an_event_raised_over_http_appears_in_the_live_tail_without_a_reload(
    served: KnotServer, context: BrowserContext, shots: Path
) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/events?live=1")
    page.wait_for_function("window.__sseOpen === true", timeout=10_000)
    loads = page.evaluate("performance.getEntriesByType('navigation').length")
    event_id = _raise(served, "app.deployed", {"version": "2.0.1", "by": "Zoë"})
    row = page.locator(f"#event-rows tr:has(a[href='/ui/events/{event_id}'])")
    expect(row).to_be_visible(timeout=2_000)  # the promise: within 2 s
    expect(row).to_contain_text("custom.app.deployed")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == loads
    for n in range(3):
        _raise(served, "app.deployed", {"version": f"2.0.{n + 2}"})
    expect(page.locator("#event-rows tr")).to_have_count(4, timeout=5_000)
    shoot(page, shots, "events")

    page.goto(f"{served.url}/ui/events/{event_id}")
    expect(page.locator("article.delivery[data-sink='hook']")).to_have_attribute(
        "data-status", "delivered", timeout=10_000
    )
    expect(page.locator("pre.payload")).to_contain_text("Zoë")
    shoot(page, shots, "event")


def test_sink_counts_change_as_deliveries_happen(
    served: KnotServer, receiver: Receiver, context: BrowserContext, shots: Path
) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/sinks")
    delivered = page.locator("tr[data-sink='hook'] td[data-col='delivered']")
    expect(delivered).to_have_text("0")
    for n in range(3):
        _raise(served, "app.deployed", {"version": f"3.{n}"})
    receiver.wait_for(3)
    expect(delivered).to_have_text("3", timeout=10_000)  # polled, no reload
    expect(page.locator("tr[data-sink='notify'] td[data-col='delivered']")).to_have_text(
        "3", timeout=10_000
    )
    shoot(page, shots, "sinks")
    page.goto(f"{served.url}/ui")
    expect(page.locator("h1")).to_have_text("Overview")
    shoot(page, shots, "overview")


def test_retrying_a_given_up_delivery_makes_the_receiver_get_it(
    served: KnotServer, receiver: Receiver, context: BrowserContext
) -> None:
    receiver.plan("/hook", [500, 500])  # both attempts fail: given up
    event_id = _raise(served, "app.deployed", {"version": "4.0"})
    receiver.wait_for(2)
    with served.client() as http:
        path = f"/api/events/{event_id}/deliveries"
        wait_until(
            lambda: any(d["status"] == "failed" for d in http.get(path).json()["deliveries"])
        )
    page = context.new_page()
    page.goto(f"{served.url}/ui/events/{event_id}")
    hook = page.locator("article.delivery[data-sink='hook']")
    expect(hook).to_have_attribute("data-status", "failed")
    hook.get_by_role("button", name="Retry").click()
    receiver.wait_for(3)
    assert receiver.requests[-1].headers["x-knot-event-id"] == event_id
    expect(page.locator("#messages")).to_contain_text("hook: delivered", timeout=5_000)
    expect(hook).to_have_attribute("data-status", "delivered", timeout=5_000)


def test_a_broken_script_save_shows_its_file_line_and_column(
    served: KnotServer, context: BrowserContext, shots: Path
) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/scripts")
    expect(page.locator("tr[data-script='scripts/sinks/notify.py']")).to_contain_text("loaded")
    broken = served.project / "scripts" / "sinks" / "broken.py"
    broken.write_text('# events: custom.*\nx = 1\nf = open("/etc/passwd")\n')
    row = page.locator("tr[data-script='scripts/sinks/broken.py']")
    expect(row).to_contain_text(
        re.compile(r"scripts/sinks/broken\.py:3:\d+: .*file system"), timeout=10_000
    )
    row.get_by_role("link").click()
    expect(page.locator("pre.source")).to_contain_text('open("/etc/passwd")')
    shoot(page, shots, "scripts")
    page.goto(f"{served.url}/ui/sinks")
    expect(page.locator("tr[data-sink='broken']")).to_contain_text("broken.py:3:")


def test_an_action_without_its_csrf_token_is_refused(
    served: KnotServer, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/sinks")
    page.locator("#sink-form input[name='name']").fill("made_here")
    page.locator("#sink-form input[name='events']").fill("custom.app.*")
    page.locator("#sink-form input[name='url']").fill("http://127.0.0.1:9/nowhere")
    page.get_by_role("button", name="Add sink").click()
    expect(page.locator("#sink-form")).to_contain_text("The sink made_here was added")
    row = page.locator("tr[data-sink='made_here']")
    expect(row).to_contain_text("yes", timeout=5_000)
    # The same action as the page's Pause button, sent without the token (as another site's
    # page would have to): refused, and the sink keeps running.
    answer = page.evaluate(
        """async () => {
            const r = await fetch('/ui/sinks/made_here/active', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'active=false'});
            return [r.status, await r.text()];
        }"""
    )
    assert answer[0] == 403
    assert "CSRF token" in answer[1]
    with served.client() as http:
        assert http.get("/api/sinks/made_here").json()["active"] is True
    row.get_by_role("button", name="Pause").click()  # with it (htmx sends it): done
    expect(page.locator("tr[data-sink='made_here']")).to_contain_text("paused")
    with served.client() as http:
        assert http.get("/api/sinks/made_here").json()["active"] is False


def test_the_login_is_required_once_users_exist(
    tmp_path: Path, receiver: Receiver, context: BrowserContext, shots: Path
) -> None:
    project = _project(tmp_path, receiver)
    added = run_knot("user", "add", "ada", "--manage-global-sinks", "--project", str(project))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    server = KnotServer(project)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/ui/sinks?type=webhook")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        expect(page.locator("h1")).to_have_text("Log in")
        shoot(page, shots, "login")
        page.locator("#token").fill("not-the-token")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("[role=alert]")).to_contain_text("not valid")
        page.locator("#token").fill(token)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{server.url}/ui/sinks?type=webhook")  # back where it was
        expect(page.locator(".who")).to_contain_text("ada")
        cookie = next(c for c in context.cookies() if c["name"] == "knot_ui")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        # The API itself still wants the bearer token: the cookie opens only /ui.
        assert httpx.get(f"{server.url}/api/sinks").status_code == 401
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r"/ui/login"))
        page.goto(f"{server.url}/ui/events")
        expect(page).to_have_url(re.compile(r"/ui/login"))
    finally:
        server.terminate()


def test_the_other_pages_render_for_a_person(
    served: KnotServer, context: BrowserContext, shots: Path
) -> None:
    with served.client() as http:
        made = http.post("/api/spaces", json={"name": "web", "cmd": "sleep 30", "start": True})
        assert made.status_code == 201, made.text
    page = context.new_page()
    page.goto(f"{served.url}/ui/methods")
    expect(page.locator("select[name='method']")).to_contain_text("bump", timeout=10_000)
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#call-result")).to_contain_text('"count": 1')
    shoot(page, shots, "methods")
    page.goto(f"{served.url}/ui/spaces")
    expect(page.locator("tr[data-space='web']")).to_contain_text("running")
    page.locator("tr[data-space='web']").get_by_role("button", name="Stop").click()
    expect(page.locator("tr[data-space='web']")).to_contain_text("stopped", timeout=10_000)
    shoot(page, shots, "spaces")
    page.goto(f"{served.url}/ui/audit")
    expect(page.locator("h1")).to_have_text("Audit")
    shoot(page, shots, "audit")
    page.keyboard.press("g")
    page.keyboard.press("e")
    expect(page).to_have_url(f"{served.url}/ui/events")


def test_dark_theme_follows_the_system_and_a_narrow_window_needs_no_sideways_scroll(
    served: KnotServer, browser: Browser, shots: Path
) -> None:
    _raise(served, "app.deployed", {"version": "5.0", "long": "x" * 300})
    light = browser.new_context(viewport={"width": 390, "height": 800}, color_scheme="light")
    dark = browser.new_context(viewport={"width": 390, "height": 800}, color_scheme="dark")
    try:
        colours = []
        for context in (light, dark):
            page = context.new_page()
            for path in ("/ui", "/ui/sinks", "/ui/events", "/ui/audit"):
                page.goto(f"{served.url}{path}")
                wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert wide <= 0, f"{path} scrolls sideways by {wide} px at 390 px wide"
            colours.append(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        assert colours[0] == "rgb(255, 255, 255)"
        assert colours[1] == "rgb(17, 20, 24)"
        page.goto(f"{served.url}/ui/sinks")
        shoot(page, shots, "sinks-dark-narrow")
    finally:
        light.close()
        dark.close()


def test_a_refused_action_says_why_in_the_page(served: KnotServer, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/methods")
    page.locator("textarea[name='params']").fill('{"unclosed": ')
    page.get_by_role("button", name="Call").click()
    expect(page.locator("#call-result [role=alert]")).to_contain_text("JSON")
    event_id = _raise(served, "app.deployed", {"version": "6.0"})
    page.goto(f"{served.url}/ui/events/{event_id}")
    # A sink removed while the page was open, as the page would still offer it:
    page.evaluate("document.querySelector('select[name=sink]').innerHTML = '<option>gone</option>'")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#messages [role=alert]")).to_contain_text("no sink named 'gone'")


def test_a_filtered_live_tail_shows_only_what_its_filters_take(
    served: KnotServer, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{served.url}/ui/events?live=1&type=other.*&q=keep")
    page.wait_for_function("window.__sseOpen === true", timeout=10_000)
    skipped = [
        _raise(served, "app.deployed", {"keep": 1}),
        _raise(served, "other.x", {"drop": 1}),
    ]
    kept = _raise(served, "other.y", {"keep": "me"})
    expect(page.locator(f"a[href='/ui/events/{kept}']").first).to_be_visible(timeout=5_000)
    for event_id in skipped:
        assert page.locator(f"a[href='/ui/events/{event_id}']").count() == 0
    assert page.locator("#event-rows tr").count() == 1
