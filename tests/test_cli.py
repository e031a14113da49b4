"""The `knot` command against a real `knot serve` subprocess."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from knot.cli import build_parser, main

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


def every_command(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from every_command(child, (*prefix, name))


@pytest.mark.parametrize("command", list(every_command(build_parser())), ids=" ".join)
def test_every_command_help_has_examples(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    examples = text.split("\nexamples:\n", 1)[1]  # README: `knot COMMAND --help` shows examples
    assert f"knot {' '.join(command)}".rstrip() in examples


def test_template_help_names_both_sink_types_that_use_it() -> None:
    text = knot("sinks", "add", "--help").stdout
    assert "--template TEMPLATE" in text
    assert "webhook and json-rpc: body template" in " ".join(text.split())


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
        (
            ("events", "-n", "x\x1b[31m"),
            "knot events",
            "argument -n: must be a whole number from 0 to 10000, not 'x\\x1b[31m'",
        ),
        (("sinks", "nope"), "knot sinks", "invalid choice: 'nope'"),
        (
            ("events", "a", "b\nc\x1b[31m"),
            "knot events",
            "unrecognized arguments: b\\nc\\x1b[31m",
        ),
        (("event", "cli.x", "{}", "--bogus"), "knot event", "unrecognized arguments: --bogus"),
        (("space", "create", "x", "--bogus"), "knot space create", "arguments: --bogus"),
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


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The whole stderr of a refused command: one line, exit `code`, nothing on stdout."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert result.stdout == ""
    return line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("serve", "--port", "70000"), "argument --port: must be a port number from 0 to 65535"),
        (("serve", "--port", "-1"), "argument --port: must be a port number from 0 to 65535"),
        (("events", "-n", "-5"), "argument -n: must be a whole number from 0 to 10000, not '-5'"),
        (("events", "-n", "x"), "argument -n: must be a whole number from 0 to 10000"),
        (("audit", "-n", "0"), "argument -n: must be a whole number from 1 to 10000, not '0'"),
        (("audit", "-n", "10001"), "argument -n: must be a whole number from 1 to 10000"),
        (("space", "logs", "web", "-n", "-1"), "argument -n: must be a whole number from 1"),
        (("space", "create", "w", "--interval", "nan"), "--interval: must be a number of seconds"),
        (("space", "create", "w", "--timeout", "0"), "--timeout: must be a number of seconds > 0"),
        (("space", "create", "w", "--threshold", "0"), "--threshold: must be a whole number"),
        (("sinks", "add", "h", "--events", "*", "--timeout", "-3"), "must be a number of seconds"),
    ],
)
def test_numeric_options_out_of_range_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    # No runtime is asked: a free port would answer "no runtime", a wrong value never gets there.
    result = knot(*args, "--project", str(tmp_path)) if args[0] == "serve" else knot(*args)
    assert words in one_error_line(result, 2)


def test_a_port_out_of_range_in_knot_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[server]\nport = 99999\n")
    line = one_error_line(knot("serve", "--project", str(tmp_path)), 1)
    assert "knot.toml:2: server.port must be a port number from 0 to 65535" in line


@pytest.mark.parametrize("args", [("events",), ("serve", "--port", "0"), ("event", "x")])
def test_knot_api_port_that_is_not_a_port_is_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    full = (*args, "--project", str(tmp_path)) if args[0] == "serve" else args
    line = one_error_line(knot(*full, env={"KNOT_API_PORT": "abc"}), 1)
    assert line == (
        "knot: KNOT_API_PORT is 'abc', not a port number; set it to one from 1 to 65535, or "
        "unset it for the default (12201)."
    )


@pytest.mark.parametrize(
    "args", [("serve", "--port", "0"), ("user", "add", "alice"), ("user", "list")]
)
def test_a_project_folder_that_does_not_exist_is_refused(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo"
    line = one_error_line(knot(*args, "--project", str(typo)), 1)
    assert line == (
        f"knot: The project folder {typo} does not exist; create it first (mkdir -p {typo}) or "
        "pass --project an existing folder."
    )
    assert not typo.exists()  # no .knot/knot.db made for a typo


def test_invalid_names_and_settings_are_said_once(server: KnotServer, tmp_path: Path) -> None:
    hook = ("--events", "*", "--url", "http://127.0.0.1:9/")
    sink = one_error_line(knot("sinks", "add", "1bad", *hook, port=server.port), 1)
    assert sink == (
        "knot: The sink name '1bad' is not valid: it must start with a letter and have 2 to 64 "
        "letters, digits or underscores."
    )
    space = one_error_line(knot("space", "create", "x y", port=server.port), 1)
    assert space == (
        "knot: The space name 'x y' is not valid: it must start with a letter and have 1 to 64 "
        "letters, digits, '-' or '_'."
    )
    (tmp_path / "knot.toml").write_text("zone = 'local'\n[delivery]\nattempts = 0\n")
    config = one_error_line(knot("serve", "--project", str(tmp_path), "--port", "0"), 1)
    assert config == (
        f"knot: {tmp_path / 'knot.toml'}:3: delivery.attempts must be an integer >= 1, not 0."
    )


def test_json_split_by_the_shell_is_joined_or_explained(server: KnotServer) -> None:
    # `knot event x {"a": 1}` unquoted: the shell passes `{a:` and `1}`; argparse answered
    # "knot: error: unrecognized arguments: 1}".
    split = knot("event", "cli.split", "{a:", "1}", port=server.port)
    assert split.returncode == 1
    assert split.stderr == (
        "knot: The payload came as 2 words ({a: 1}), which are not JSON together: the shell "
        "splits unquoted JSON at spaces and removes its double quotes. Quote it: "
        '\'{"key": "value"}\'.\n'
    )
    # Words that are JSON together (no quotes for the shell to remove) are one payload.
    joined = knot("event", "cli.joined", '{"a":', "[1,", "2]}", port=server.port)
    assert joined.returncode == 0, joined.stderr
    rows = knot("events", "custom.cli.joined", "--json", port=server.port).stdout.splitlines()
    assert json.loads(rows[-1])["data"] == {"a": [1, 2]}


def test_options_may_follow_a_json_argument(server: KnotServer) -> None:
    # argparse stops filling an optional positional at the first option: `--json` before
    # the params left them over ("unrecognized arguments").
    for args in (("nosuch.m", "--json", '{"a": 1}'), ("nosuch.m", '{"a": 1}', "--json")):
        called = knot("call", *args, port=server.port)
        assert called.returncode == 1, called.stderr
        assert json.loads(called.stdout)["error"]["code"] == -32601
    event_id = "01a23549-5fe4-7111-b999-d6849ba7f8f2"
    raised = knot("event", "cli.opt", "--id", event_id, '{"b": 2}', port=server.port)
    assert raised.stdout.strip() == event_id


def test_in_a_project_folder_commands_use_its_server_port(
    server: KnotServer, tmp_path: Path
) -> None:
    # Client commands looked only at KNOT_API_PORT, then 12201, even in the folder whose
    # knot.toml gives `knot serve` its port.
    (tmp_path / "knot.toml").write_text(f"[server]\nport = {server.port}\n")
    raised = knot("event", "cli.here", cwd=tmp_path)
    assert raised.returncode == 0, raised.stderr
    listed = knot("events", "custom.cli.here", "--json", cwd=tmp_path)
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
        raised.stdout.strip()
    ]
    # KNOT_API_PORT still wins, and a runtime missing at the file's address is named so.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    elsewhere = knot("events", port=free, cwd=tmp_path)
    assert elsewhere.stderr.startswith(f"knot: No knot runtime answers at http://127.0.0.1:{free};")
    (tmp_path / "knot.toml").write_text(f'[server]\nhost = "0.0.0.0"\nport = {free}\n')
    missing = knot("events", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == (
        f"knot: No knot runtime answers at http://127.0.0.1:{free} (the address "
        f"{tmp_path / 'knot.toml'} gives `knot serve`); start one with `knot serve` in that "
        "folder (or set KNOT_API_PORT / KNOT_URL to where it runs).\n"
    )


def test_a_typed_pattern_gets_custom_as_a_typed_type_does(server: KnotServer) -> None:
    # `knot events 'zz.*'` after `knot event zz.tick` printed nothing: the event is
    # custom.zz.tick, and no event can have a type outside custom.* but for space.* ones.
    raised = knot("event", "zz.tick", port=server.port).stdout.strip()
    for pattern in ("zz.*", "zz.tick", "custom.zz.*"):
        listed = knot("events", pattern, "--json", port=server.port)
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [raised]
    assert knot("events", "space.*", "--json", port=server.port).stdout == ""


def test_events_print_text_as_text_and_controls_escaped(server: KnotServer) -> None:
    # `knot events` printed {"\\u540d": ...}; text is text, but a C1 control (\x9b is a CSI
    # to some terminals) or a bidi override stays escaped.
    payload = {"名": "値 ü", "c1": "\x9b", "bidi": "\u202e"}
    knot("event", "cli.text", json.dumps(payload), port=server.port)
    table = knot("events", "custom.cli.text", port=server.port).stdout
    assert '{"名":"値 ü","c1":"\\u009b","bidi":"\\u202e"}' in table
    line = knot("events", "custom.cli.text", "--json", port=server.port).stdout.strip()
    assert '"名": "値 ü"' in line
    assert "\\u009b" in line
    assert json.loads(line)["data"] == payload


def test_a_duplicate_id_is_said_on_stderr_and_still_exits_0(server: KnotServer) -> None:
    # A second `knot event --id` with the same id exited 0 without a word: the user could not
    # tell that the second payload was ignored.
    event_id = "01a23549-5fe4-7111-b999-d6849ba7f8f3"
    first = knot("event", "cli.dup", '{"n": 1}', "--id", event_id, port=server.port)
    assert (first.returncode, first.stdout, first.stderr) == (0, f"{event_id}\n", "")
    again = knot("event", "cli.dup", '{"n": 2}', "--id", event_id, port=server.port)
    assert (again.returncode, again.stdout) == (0, f"{event_id}\n")
    assert again.stderr == (
        f"knot: An event with id {event_id} was raised before; this one was ignored (the "
        "first stands, nothing new was journaled or delivered).\n"
    )
