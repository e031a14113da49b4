"""`knot replay` and `POST /api/sinks/{name}/replay` on a real `knot serve`: a script saved
between runs, the CLI's report and exit codes, the streamed progress, hostile requests, and
permissions. The webhook receiver shows that a replay delivers nothing (127.0.0.1 only)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import write_config
from .helpers import KnotServer, run_knot, wait_until
from .receiver import Receiver

GREETER = """\
# events: custom.greet.*
import knot.event
name = knot.event.get_string("name", "nobody")
print("hello " + name)
"""
CHANGED = GREETER.replace('"hello "', '"hi "') + (
    'if name == "bob":\n    raise ValueError("no bobs")\n'
)


def _project(tmp_path: Path, receiver: Receiver) -> Path:
    project = tmp_path / "greet"
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "sinks" / "greeter.py").write_text(GREETER, encoding="utf-8")
    write_config(
        project,
        "[delivery]\nattempts = 1\n\n"
        f'[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.greet.*"\n'
        f'url = "{receiver.url("/hook")}"\n',
    )
    return project


def _version(http: httpx.Client, sink: str = "greeter") -> str:
    found = http.get(f"/api/event-sinks/{sink}")
    return str(found.json().get("version", "")) if found.status_code == 200 else ""


def _greet(http: httpx.Client, receiver: Receiver, *names: str) -> None:
    before = len(receiver.at("/hook"))
    for name in names:
        assert http.post("/event", json={"type": "greet.x", "payload": {"name": name}}).is_success
    wait_until(lambda: len(receiver.at("/hook")) == before + len(names))
    wait_until(lambda: http.get("/api/event-sinks/greeter").json()["pending"] == 0)


def test_knot_replay_diffs_a_saved_script_and_delivers_nothing(
    tmp_path: Path, receiver: Receiver, server_factory: type[KnotServer]
) -> None:
    project = _project(tmp_path, receiver)
    server = server_factory(project)
    with server.client() as http:
        wait_until(lambda: _version(http) != "", timeout=20)
        old = _version(http)
        _greet(http, receiver, "ada", "bob", "ünï")
        same = run_knot("replay", "greeter", port=server.port)
        (project / "scripts" / "sinks" / "greeter.py").write_text(CHANGED, encoding="utf-8")
        wait_until(lambda: _version(http) not in ("", old), timeout=20)
        head = http.get("/api/events", params={"limit": 1}).json()["events"][-1]["seq"]
        delivered = len(receiver.at("/hook"))
        text = run_knot("replay", "greeter", port=server.port)
        as_json = run_knot("replay", "greeter", "--json", "--events", "greet.x", port=server.port)
        strict = run_knot("replay", "greeter", "--exit-code", "-n", "1", port=server.port)
        newest = http.get("/api/events", params={"limit": 1}).json()["events"][-1]["seq"]
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith("Replayed 3 events on greeter")
    assert "3 same" in same.stdout
    assert text.returncode == 0, text.stderr
    assert "2 changed, 1 now failing" in text.stdout
    assert "-print  hello ünï" in text.stdout
    assert "+print  hi ünï" in text.stdout
    assert "+error  The script scripts/sinks/greeter.py:6 raised ValueError: no bobs" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["summary"] == {
        "same": 0,
        "changed": 2,
        "now_failing": 1,
        "now_passing": 0,
        "no_record": 0,
    }
    assert [e["then"]["version"] for e in report["events"]] == [old] * 3
    assert report["version"] == _version_of(project)
    assert strict.returncode == 3  # the newest (ünï) changed
    assert (newest, len(receiver.at("/hook"))) == (head, delivered)  # nothing journaled or sent


def _version_of(project: Path) -> str:
    from knot.engine.attempts import script_version

    return script_version((project / "scripts" / "sinks" / "greeter.py").read_text())


def test_the_replay_route_streams_progress_and_refuses_bad_requests(
    tmp_path: Path, receiver: Receiver, server_factory: type[KnotServer]
) -> None:
    server = server_factory(_project(tmp_path, receiver))
    with server.client() as http:
        wait_until(lambda: _version(http) != "", timeout=20)
        _greet(http, receiver, *[f"n{i}" for i in range(70)])
        with http.stream(
            "POST", "/api/sinks/greeter/replay", json={"progress": True, "limit": 70}
        ) as answer:
            kind = answer.headers["content-type"]
            lines = [json.loads(line) for line in answer.iter_lines() if line]
        plain = http.post("/api/sinks/greeter/replay", json={"limit": 2, "since": "1h"})
        empty = http.post("/api/sinks/greeter/replay")
        refused = {
            repr(body): http.post("/api/sinks/greeter/replay", json=body)
            for body in (
                {"limit": "ten"},
                {"limit": True},
                {"limit": 10**9},
                {"since": 5},
                {"since": "yesterday-ish"},
                {"since": "1d", "from_seq": 2},
                {"from_seq": 10**23},
                {"since": "\uff12\uff10\uff12\uff16-01-01"},  # full-width digits
                {"events": "*.greet"},
                {"bogus": 1},
                [1, 2],
            )
        }
        with ThreadPoolExecutor(5) as pool:  # more than run at once: the rest wait their turn
            together = list(
                pool.map(
                    lambda n: httpx.post(
                        f"{server.url}/api/sinks/greeter/replay", json={"limit": n}, timeout=60
                    ),
                    range(1, 6),
                )
            )
        unknown = http.post("/api/sinks/nope/replay", json={})
        webhook = http.post("/api/event-sinks/hook/replay", json={"progress": True})
        garbage = http.post(
            "/api/sinks/greeter/replay",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert kind.startswith("application/x-ndjson")
    progress = [line["progress"] for line in lines[:-1]]
    assert progress[-1] == {"done": 70, "total": 70}
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    assert lines[-1]["report"]["summary"]["same"] == 70
    assert plain.status_code == 200
    assert [e["type"] for e in plain.json()["events"]] == ["custom.greet.x"] * 2
    assert empty.status_code == 200
    assert len(empty.json()["events"]) == 70
    for body, answer in refused.items():
        assert answer.status_code == 400, body
        assert answer.json()["error"].endswith("."), body
    assert "'bogus'" in refused[repr({"bogus": 1})].json()["error"]
    assert [len(a.json()["events"]) for a in together] == [1, 2, 3, 4, 5]
    assert {e["then"]["result"] for e in empty.json()["events"]} == {""}
    assert unknown.status_code == 404
    assert webhook.status_code == 400
    assert "webhook sink: it runs no script" in webhook.json()["error"]
    assert garbage.status_code == 400


@pytest.fixture
def users_project(tmp_path: Path, receiver: Receiver) -> tuple[Path, dict[str, str]]:
    project = _project(tmp_path, receiver)
    tokens = {}
    users = (("admin", ()), ("own", ()), ("other", ()), ("glob", ("--manage-global-sinks",)))
    for name, flags in users:
        added = run_knot("user", "add", name, *flags, "--project", str(project))
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    return project, tokens


def test_only_who_may_manage_a_sink_replays_it_and_only_on_its_owners_events(
    users_project: tuple[Path, dict[str, str]], server_factory: type[KnotServer]
) -> None:
    project, tokens = users_project
    server = server_factory(project)

    def call(who: str | None, method: str, path: str, body: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        with server.client() as http:
            return http.request(method, path, json=body, headers=headers)

    wait_until(lambda: call("glob", "GET", "/api/event-sinks/greeter").status_code == 200, 20)
    own_sink = {"name": "mine", "type": "script", "events": "custom.greet.*", "source": GREETER}
    assert call("own", "POST", "/api/event-sinks", own_sink).status_code == 201
    assert call("own", "POST", "/event", {"type": "greet.x", "payload": {"name": "o"}}).is_success
    assert call("glob", "POST", "/event", {"type": "greet.x", "payload": {"name": "g"}}).is_success

    def settled() -> bool:
        mine = call("own", "GET", "/api/event-sinks/mine").json()
        return bool(mine["delivered"] == 1 and mine["pending"] == 0)

    wait_until(settled)
    anonymous = call(None, "POST", "/api/sinks/greeter/replay", {})
    forbidden = call("own", "POST", "/api/sinks/greeter/replay", {})
    hidden = call("other", "POST", "/api/sinks/mine/replay", {})
    allowed = call("glob", "POST", "/api/sinks/greeter/replay", {})
    own = call("own", "POST", "/api/sinks/mine/replay", {"events": "*"})
    cli = run_knot("replay", "greeter", port=server.port, env={"KNOT_TOKEN": tokens["own"]})
    assert anonymous.status_code == 401
    assert forbidden.status_code == 403
    assert hidden.status_code == 404  # another user's sink is not even there
    assert allowed.status_code == 200
    assert [e["now"]["output"] for e in allowed.json()["events"]] == [["hello o"], ["hello g"]]
    # A user's sink replays only that user's events, whatever the pattern asks for.
    assert [e["now"]["output"] for e in own.json()["events"]] == [["hello o"]]
    assert own.json()["summary"]["same"] == 1
    assert cli.returncode == 1
    assert "replay the sink 'greeter'" in cli.stderr


def test_a_broken_save_replays_the_running_version_and_says_so(
    tmp_path: Path, receiver: Receiver, server_factory: type[KnotServer]
) -> None:
    project = _project(tmp_path, receiver)
    sinks = project / "scripts" / "sinks"
    (sinks / "broken.py").write_text("# events: custom.greet.*\nimport os\n", encoding="utf-8")
    server = server_factory(project)
    with server.client() as http:
        wait_until(lambda: _version(http) != "", timeout=20)
        _greet(http, receiver, "ada")
        (sinks / "greeter.py").write_text(GREETER + "open('x')\n", encoding="utf-8")
        wait_until(lambda: http.get("/api/event-sinks/greeter").json()["problem"], timeout=20)
        running = http.post("/api/sinks/greeter/replay", json={})
        never = http.post("/api/sinks/broken/replay", json={})
    assert running.status_code == 200
    assert running.json()["summary"]["same"] == 1
    [note] = running.json()["notes"]
    assert note.startswith("This is the version the runtime runs: the script's latest change")
    assert "(scripts/sinks/greeter.py:5:1: the file system is not available" in note
    assert never.status_code == 400
    assert never.json()["error"].startswith("The sink broken does not run, so there is no")


def test_knot_replay_apply_delivers_again_only_what_differs(
    tmp_path: Path, receiver: Receiver, server_factory: type[KnotServer]
) -> None:
    project = _project(tmp_path, receiver)
    server = server_factory(project)
    with server.client() as http:
        wait_until(lambda: _version(http) != "", timeout=20)
        old = _version(http)
        _greet(http, receiver, "ada", "bob")
        unchanged = run_knot("replay", "greeter", "--apply", port=server.port)
        assert unchanged.returncode == 0, unchanged.stderr
        assert "nothing to deliver again" in unchanged.stdout
        changed = GREETER.replace('"hello "', '"hi "') + (
            'if name == "bob":\n    print("bob too")\n'
        )
        (project / "scripts" / "sinks" / "greeter.py").write_text(changed, encoding="utf-8")
        wait_until(lambda: _version(http) not in ("", old), timeout=20)
        hooked = len(receiver.at("/hook"))
        applied = run_knot("replay", "greeter", "--apply", "--json", port=server.port)
        deliveries = [
            http.get(f"/api/events/{e['id']}/deliveries").json()
            for e in json.loads(applied.stdout)["events"]
        ]
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr.count("delivered again") == 2  # both changed; JSON stays on stdout
    for answer in deliveries:  # each ran again, the new version the second time
        [greeter] = [d for d in answer["deliveries"] if d["sink"] == "greeter"]
        assert len(greeter["attempts"]) == 2
        assert greeter["attempts"][-1]["output"][0].startswith("hi ")
    assert len(receiver.at("/hook")) == hooked  # only the replayed sink, not the others
