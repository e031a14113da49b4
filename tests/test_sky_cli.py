"""`knot channel` against a real `knot serve`, and channels surviving a restart of it."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import KnotServer
from .helpers import run_knot as knot


def test_channel_create_list_delete(knot_server: KnotServer) -> None:
    port = knot_server.port
    made = knot(
        "channel", "create", "--owner", "alice", "--name", "phone",
        "--deny", "custom.admin.*", "-q", port=port,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    eci = made.stdout.strip()
    listed = knot("channel", "list", "--json", port=port)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["eci"], r["owner"], r["name"]) for r in rows] == [(eci, "alice", "phone")]
    assert rows[0]["policy"] == {"allow": ["*"], "deny": ["custom.admin.*"]}
    table = knot("channel", "list", port=port).stdout
    assert eci in table
    assert "custom.admin.*" in table
    with knot_server.client() as http:
        assert http.post(f"/sky/event/{eci}/e/app/hi").status_code == 200
        assert http.post(f"/sky/event/{eci}/e/admin/reset").status_code == 403
        gone = knot("channel", "delete", eci, port=port)
        assert gone.returncode == 0, gone.stderr
        assert http.post(f"/sky/event/{eci}/e/app/hi").status_code == 404
    again = knot("channel", "delete", eci, port=port)
    assert again.returncode == 1
    assert again.stderr.startswith("knot: There is no channel with eci")


def test_channel_create_explains_how_to_raise_events(knot_server: KnotServer) -> None:
    made = knot("channel", "create", "--eci", "demo", port=knot_server.port)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == "demo"
    url = f"{knot_server.url}/sky/event/demo/none/hello/greet?name=you"
    assert url in made.stdout
    with knot_server.client() as http:
        answer = http.get(url)
    assert answer.status_code == 200
    assert answer.json()["directives"] == []


def test_bad_channel_options_exit_1_with_the_reason(knot_server: KnotServer) -> None:
    bad = knot("channel", "create", "--allow", "sp*", port=knot_server.port)
    assert bad.returncode == 1
    assert "'sp*' is not supported" in bad.stderr
    bare = knot("channel", port=knot_server.port)
    assert bare.returncode == 2
    assert "create" in bare.stdout


def test_channels_survive_a_killed_server(project: Path, server_factory: type[KnotServer]) -> None:
    first = server_factory(project, quiet=True)
    eci = knot("channel", "create", "--owner", "alice", "-q", port=first.port).stdout.strip()
    first.kill()  # SIGKILL: the channel must already be in the store
    second = server_factory(project, quiet=True)
    with second.client() as http:
        r = http.post(f"/sky/event/{eci}/e/app/hi")
        assert r.status_code == 200
        event = http.get(f"/api/events/{r.json()['id']}").json()
    assert event["owner"] == "alice"
