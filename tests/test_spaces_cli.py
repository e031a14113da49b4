"""`knot space ...` against a real `knot serve`, and spaces across restarts and crashes of it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import KnotServer, wait_until
from .helpers import run_knot as knot
from .spacehelpers import KNOT_FIELDS, free_port, group_members, process_alive

CONFIG = """
[spaces]
stop_grace = 2.0
[[sinks]]
name = "spaces"
type = "recording"
events = "space.*"
path = "{spaces}"
[[sinks]]
name = "forged"
type = "recording"
events = "custom.space.*"
path = "{forged}"
"""


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of_space(path: Path, name: str) -> list[str]:
    return [str(r["type"]) for r in records(path) if r["data"]["space_name"] == name]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spaces-cli")
    text = CONFIG.format(spaces=path / "spaces.jsonl", forged=path / "forged.jsonl")
    (path / "knot.toml").write_text(text)
    return path


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[KnotServer]:
    srv = KnotServer(project)
    yield srv
    srv.terminate()  # a graceful stop ends the spaces' processes too


def test_create_start_list_stop_delete_from_the_command_line(
    server: KnotServer, project: Path
) -> None:
    port = free_port()
    cmd = f"{shlex.quote(sys.executable)} -m http.server {port} --bind 127.0.0.1"
    url = f"http://127.0.0.1:{port}/"
    made = knot(
        "space", "create", "web", "--cmd", cmd, "--url", url, "--url", "https://web.example.com",
        "--health", url, "--interval", "0.05", "--threshold", "100", "--template-id", "tpl",
        "--start", "--json",
        port=server.port,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    space = json.loads(made.stdout)
    assert (space["state"], space["urls"]) == ("running", [url, "https://web.example.com"])
    log = project / "spaces.jsonl"
    # http.server takes a moment to listen; the threshold lets the first checks fail quietly.
    wait_until(lambda: "space.healthy" in of_space(log, "web"))
    assert httpx.get(url).status_code == 200  # the space's own server answers

    listed = knot("space", "list", port=server.port)
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "STATE", "HEALTH", "PID", "OWNER", "CMD"]
    assert row.split()[:4] == ["web", "running", "healthy", str(space["pid"])]
    logs = knot("space", "logs", "web", port=server.port)
    assert "GET / HTTP/1.1" in logs.stdout

    stopped = knot("space", "stop", "web", port=server.port)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.split()[:2] == ["web", "stopped"]
    assert not process_alive(int(space["pid"]))
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    deleted = knot("space", "delete", "web", port=server.port)
    assert deleted.stdout.strip() == "web  deleted"
    wait_until(lambda: "space.deleted" in of_space(log, "web"))
    assert of_space(log, "web") == [
        "space.created",
        "space.started",
        "space.healthy",
        "space.stopped",
        "space.deleted",
    ]
    for record in records(log):
        assert set(record["data"]) == KNOT_FIELDS[str(record["type"])]
    assert records(log)[0]["data"]["template_id"] == "tpl"
    server.wait_for_line(r"space\.deleted \S+ → spaces")  # routed like any event


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("space", "start", "ghost"), "knot: There is no space named 'ghost'."),
        (
            ("space", "create", "bad name"),
            "knot: The space name 'bad name' is not valid: it must start with a letter and have "
            "1 to 64 letters, digits, '-' or '_'.\n",
        ),
        (("space", "create", "w", "--health", "http://192.0.2.7/"), "must point at this machine"),
        (("space", "create", "w", "--url", "ftp://x"), "is not an http:// or https:// URL"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    server: KnotServer, args: tuple[str, ...], words: str
) -> None:
    result = knot(*args, port=server.port)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_knot_event_space_created_is_a_custom_event(server: KnotServer, project: Path) -> None:
    result = knot("event", "space.created", '{"space_name": "forged"}', port=server.port)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(records(project / "forged.jsonl")) == 1)
    (forged,) = records(project / "forged.jsonl")
    assert forged["type"] == "custom.space.created"
    assert forged["id"] == result.stdout.strip()
    assert all(r["data"]["space_name"] != "forged" for r in records(project / "spaces.jsonl"))


def test_space_without_an_action_shows_its_help() -> None:
    result = knot("space")
    assert result.returncode == 2
    assert "create" in result.stdout
    assert "knot space create web" in result.stdout


def _space(server: KnotServer, name: str) -> dict[str, object]:
    with server.client() as client:
        answer: dict[str, object] = client.get(f"/api/spaces/{name}").json()
        return answer


def _journal(server: KnotServer, name: str) -> list[str]:
    with server.client() as client:
        events = client.get("/api/events", params={"pattern": "space.*", "n": 100}).json()
    return [e["type"] for e in events["events"] if e["data"]["space_name"] == name]


def test_sigterm_stops_the_spaces_and_a_restart_applies_each_policy(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[spaces]\nstop_grace = 2.0\n")
    first = KnotServer(tmp_path)
    try:
        for name, policy in (("again", "start"), ("stays", "stop")):
            made = knot(
                "space", "create", name, "--cmd", "sleep 60; true", "--on-restart", policy,
                "--start", "--json", port=first.port,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
        pids = {name: int(str(_space(first, name)["pid"])) for name in ("again", "stays")}
    finally:
        assert first.terminate() == 0
    assert not any(process_alive(pid) for pid in pids.values())

    second = KnotServer(tmp_path)
    try:
        again, stays = _space(second, "again"), _space(second, "stays")
        assert again["state"] == "running"
        assert process_alive(int(str(again["pid"])))
        assert stays["state"] == "stopped"
        assert _journal(second, "again") == [
            "space.created",
            "space.started",
            "space.stopped",
            "space.started",
        ]
        assert _journal(second, "stays") == ["space.created", "space.started", "space.stopped"]
    finally:
        second.terminate()
    assert not process_alive(int(str(again["pid"])))


def test_after_a_crash_the_left_over_process_is_stopped_and_the_space_restarted(
    tmp_path: Path,
) -> None:
    (tmp_path / "knot.toml").write_text("[spaces]\nstop_grace = 2.0\n")
    first = KnotServer(tmp_path)
    made = knot("space", "create", "svc", "--cmd", "sleep 60; true", "--start", port=first.port)
    assert made.returncode == 0, made.stderr
    old = int(str(_space(first, "svc")["pid"]))
    wait_until(lambda: len(group_members(old)) == 2)
    first.kill()  # SIGKILL: no chance to stop anything
    assert len(group_members(old)) == 2  # its own session outlived the runtime

    second = KnotServer(tmp_path)
    try:
        assert group_members(old) == []  # stopped before the space was started again
        svc = _space(second, "svc")
        assert svc["state"] == "running"
        assert int(str(svc["pid"])) != old
        assert _journal(second, "svc") == [
            "space.created",
            "space.started",
            "space.stopped",
            "space.started",
        ]
    finally:
        second.terminate()
        with contextlib.suppress(ProcessLookupError):  # never leave the orphan behind
            os.killpg(old, signal.SIGKILL)
