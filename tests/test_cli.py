"""The `knot` command against a real `knot serve` subprocess."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import KnotServer
from .helpers import run_knot as knot


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("cli")
    (project / "knot.toml").write_text(
        '[[sinks]]\nname = "rec"\ntype = "recording"\nevents = "custom.cli.*"\n'
    )
    srv = KnotServer(project)
    yield srv
    srv.kill()


def test_event_from_argument(server: KnotServer) -> None:
    result = knot("event", "cli.deployed", '{"version": "1.2"}', port=server.port)
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    listed = knot("events", "custom.cli.deployed", "--json", port=server.port)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["id"] for r in rows] == [event_id]
    assert rows[0]["data"] == {"version": "1.2"}


def test_event_from_stdin(server: KnotServer) -> None:
    result = knot("event", "cli.piped", port=server.port, stdin='{"n": 7}')
    assert result.returncode == 0, result.stderr
    rows = knot("events", "custom.cli.piped", "--json", port=server.port).stdout.splitlines()
    assert json.loads(rows[-1])["data"] == {"n": 7}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("event", "cli.x", "{nope"), "not valid JSON"),
        (("event", "cli.x", "[1]"), "must be a JSON object"),
        (("event", "bad type!"), "is not valid"),
        (("events", "*.x"), "'*.x'"),
        (("event", "cli.x", '{"a": NaN}'), "NaN is not a JSON value"),
        (("event", "cli.x", '{"a": [-Infinity]}'), "-Infinity is not a JSON value"),
        (("event", "cli.x", '{"a": 1e999}'), "1e999 is too large for a JSON number"),
        (("call", "a.b", '{"a": Infinity}'), "The params are not valid JSON: Infinity"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    server: KnotServer, args: tuple[str, ...], words: str
) -> None:
    result = knot(*args, port=server.port)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.stderr


def test_no_runtime_running_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    for args in (("event", "x"), ("events",), ("audit",), ("sinks",)):
        result = knot(*args, port=free_port)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"knot: No knot runtime answers at http://127.0.0.1:{free_port}; start one with "
            "`knot serve` (or set KNOT_API_PORT / KNOT_URL to where it runs)."
        )


def test_sinks_and_audit_listings(server: KnotServer) -> None:
    sinks = knot("sinks", "list", port=server.port)
    assert sinks.returncode == 0
    header, row = sinks.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "TYPE", "EVENTS"]
    assert row.split()[:3] == ["rec", "recording", "custom.cli.*"]
    audit = knot("audit", port=server.port)
    assert audit.returncode == 0


def test_help_has_examples() -> None:
    result = knot("--help")
    assert "examples:" in result.stdout
    assert "knot serve" in result.stdout
    sub = knot("event", "--help")
    assert "knot event myapp.deployed" in sub.stdout


def test_serve_on_a_busy_port_is_a_clear_error(tmp_path: Path, server: KnotServer) -> None:
    result = knot("serve", "--project", str(tmp_path), "--port", str(server.port))
    assert result.returncode == 1
    assert f"Port {server.port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[delivery]\nattempts = -1\n")
    result = knot("serve", "--project", str(tmp_path), "--port", "0")
    assert result.returncode == 1
    assert "knot.toml:2: delivery.attempts must be an integer >= 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".knot").mkdir()
    (tmp_path / ".knot" / "knot.db").write_bytes(b"garbage" * 1000)
    result = knot("serve", "--project", str(tmp_path), "--port", "0")
    assert result.returncode == 1
    assert "is damaged or not a SQLite database" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "prog", "words"),
    [
        (("events", "-n", "x"), "knot events", "argument -n: invalid int value: 'x'"),
        (("sinks", "nope"), "knot sinks", "invalid choice: 'nope'"),
        (("events", "a", "b\nc\x1b[31m"), "knot", "unrecognized arguments: b\\nc\\x1b[31m"),
    ],
)
def test_usage_errors_are_one_line_with_control_characters_escaped(
    args: tuple[str, ...], prog: str, words: str
) -> None:
    """Found by fuzzing: argparse printed a usage block and echoed arguments raw, so a newline
    or an escape sequence in an argument spread the error over lines or into the terminal."""
    result = knot(*args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{prog}: error: ")
    assert words in line
    assert line.endswith(f"see '{prog} --help'.")


@pytest.mark.parametrize("group", ["space", "channel", "kernel", "user"])
def test_a_group_without_its_action_shows_help_and_says_so(group: str) -> None:
    result = knot(group)
    assert result.returncode == 2
    assert "actions:" in result.stdout
    assert result.stderr.strip() == f"knot {group}: choose one of the actions above."
