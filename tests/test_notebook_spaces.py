"""`%knot space ...` in a real in-process IPython shell, with real processes as the spaces'
commands: on the embedded runtime and on a knot serve attached with `%knot connect`."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from knot.notebook.display import Message, Table, TextLines

from .conftest import write_config
from .helpers import KnotServer, wait_until
from .notebookhelpers import formats, knot_magic, one_error_line, run_cell
from .spacehelpers import KNOT_FIELDS, process_alive

CONFIG = "[spaces]\nstop_grace = 2.0\n"
# A real process that says it is up, then waits to be stopped.
CMD = shlex.join([sys.executable, "-u", "-c", "import time; print('up'); time.sleep(300)"])
LIFECYCLE = [
    "space.created",
    "space.started",
    "space.stopped",
    "space.started",
    "space.stopped",  # delete stops a running space first
    "space.deleted",
]


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    write_config(project, CONFIG)
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


def _one(table: object, title: str) -> dict[str, object]:
    assert isinstance(table, Table)
    assert table.title == title
    assert len(table.rows) == 1
    return dict(table.rows[0])


def _log_lines(ip: InteractiveShell, name: str) -> list[str]:
    logs = knot_magic(ip, f"space logs {name} -n 5")
    assert isinstance(logs, TextLines)
    return list(logs.lines)


def _lifecycle(ip: InteractiveShell) -> None:
    """Create and start, list, read the log, stop, start again, delete: each step checked
    against the process itself."""
    made = _one(
        knot_magic(ip, f"space create web --cmd {shlex.quote(CMD)} --url http://web.test/ --start"),
        "space web created",
    )
    assert (made["state"], made["urls"]) == ("running", ["http://web.test/"])
    pid = made["pid"]
    assert isinstance(pid, int)
    assert process_alive(pid)
    wait_until(lambda: "up" in _log_lines(ip, "web"))

    listing = knot_magic(ip, "space list")
    assert [(r["name"], r["state"], r["pid"]) for r in listing.rows] == [("web", "running", pid)]
    shown = formats(ip, listing)
    assert (
        f"<td>web</td><td>running</td><td></td><td>{pid}</td><td>http://web.test/</td>"
        in (shown["text/html"])
    )
    text = shown["text/plain"].splitlines()
    assert text[0] == "spaces"
    assert text[1].split() == ["name", "state", "health", "pid", "urls", "cmd", "owner", "id"]
    assert text[2].split()[:4] == ["web", "running", str(pid), "http://web.test/"]

    stopped = _one(knot_magic(ip, "space stop web"), "space web stopped")
    assert (stopped["state"], stopped["pid"]) == ("stopped", 0)
    wait_until(lambda: not process_alive(pid))
    again = _one(knot_magic(ip, "space start web"), "space web started")
    assert again["state"] == "running"
    assert isinstance(again["pid"], int)
    assert process_alive(again["pid"])
    assert _one(knot_magic(ip, "space delete web"), "space web deleted")["id"] == made["id"]
    wait_until(lambda: not process_alive(again["pid"]))
    empty = knot_magic(ip, "space list")
    assert formats(ip, empty)["text/plain"] == "spaces\n(no spaces)"

    knot_magic(ip, "wait")
    rows = knot_magic(ip, "events space.* -n 20").rows
    events = [e for e in rows if e["data"]["space_id"] == made["id"]]
    assert [e["type"] for e in events] == LIFECYCLE
    for event in events:
        assert set(event["data"]) == KNOT_FIELDS[event["type"]]


def test_spaces_of_the_embedded_runtime(ip: InteractiveShell, project: Path) -> None:
    _lifecycle(ip)
    assert knot_magic(ip, "status").text.startswith(f"embedded runtime on {project}")


def test_spaces_of_a_connected_knot_serve(ip: InteractiveShell, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    write_config(served, CONFIG)
    server = KnotServer(served, quiet=True)
    try:
        knot_magic(ip, f"connect {server.url}")
        knot_magic(ip, "space create probe")  # a record only: what the server itself lists
        with server.client() as http:
            assert [s["name"] for s in http.get("/api/spaces").json()["spaces"]] == ["probe"]
        knot_magic(ip, "space delete probe")
        _lifecycle(ip)
        with server.client() as http:
            assert http.get("/api/spaces").json()["spaces"] == []
            served_events = http.get("/api/events", params={"pattern": "space.*"}).json()
        assert [e["type"] for e in served_events["events"]][-6:] == LIFECYCLE
        assert not (Path.cwd() / ".knot").exists()  # no embedded runtime was started
    finally:
        server.terminate()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%knot space", "%knot space: choose an action: create, start, stop, delete, list or"),
        ("%knot space start nope", "There is no space named 'nope'."),
        ("%knot space logs nope", "There is no space named 'nope'."),
        ("%knot space create 9x", "The space name '9x' is not valid: it must start with a letter"),
        (
            "%knot space create web --interval 0",
            "%knot space create: argument --interval: must be a number of seconds > 0",
        ),
        ("%knot space logs web -n -5", "argument -n: must be a whole number from 1 to 10000"),
        ("%knot space frobnicate", "argument ACTION: invalid choice: 'frobnicate'"),
    ],
)
def test_space_mistakes_print_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    assert expected in one_error_line(ip, capsys, line)


def test_space_help_is_printed(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cell(ip, "%knot space create -h").success
    out = capsys.readouterr().out
    assert out.startswith("usage: %knot space create [-h] [--cmd CMD] [--url URL]")
    assert isinstance(knot_magic(ip, "status"), Message)
