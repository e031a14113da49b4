"""The %knot magics as a notebook user types them: JSON as is, and tab completion.

The line splitting is tested on its own; then the magics and IPython's completer run in a real
in-process IPython shell (with an embedded runtime and real workers), and once in a real
Jupyter kernel, asked over its messaging protocol as a notebook front end asks.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client.manager import start_new_kernel

from knot import InvalidInput
from knot.notebook.display import DryRunReport, Raised
from knot.notebook.line import split_line

from .conftest import write_config
from .notebookhelpers import knot_cell, knot_magic, one_error_line


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('event a.b {"version": "1.0"}', ["event", "a.b", '{"version": "1.0"}']),
        ("event a.b '{\"v\": 1}'", ["event", "a.b", '{"v": 1}']),  # shell-quoted, as before
        ('event a.b "{\\"v\\": 1}"', ["event", "a.b", '{"v": 1}']),
        ('event a.b {"note": "it\'s # fine"}', ["event", "a.b", '{"note": "it\'s # fine"}']),
        ('event a.b {"nested": {"list": [1, {"x": null}]}}   ', None),
        ('call m ["web", 2]', ["call", "m", '["web", 2]']),
        (
            'run s.py --event t --data {"a": [1, 2]} --space web',
            ["run", "s.py", "--event", "t", "--data", '{"a": [1, 2]}', "--space", "web"],
        ),
        ('run s.py --event t --data={"a": 1}', ["run", "s.py", "--event", "t", '--data={"a": 1}']),
        ("events 'custom.*' -n 5", ["events", "custom.*", "-n", "5"]),
        ("events a#b", ["events", "a#b"]),
        ("", []),
    ],
)
def test_words_take_json_whole_and_split_the_rest_like_a_shell(
    line: str, words: list[str] | None
) -> None:
    split = split_line(line)
    if words is None:
        words = ["event", "a.b", line.split(" ", 2)[2].rstrip()]
    assert split.words == words
    assert split.json_problem == ""


def test_json_that_does_not_parse_is_named_and_the_line_still_splits() -> None:
    split = split_line("event a.b {version: 1}")
    assert split.words == ["event", "a.b", "{version:", "1}"]
    assert split.json_problem == (
        "The JSON {version: 1} does not parse: Expecting property name enclosed in double "
        "quotes (at its character 2)."
    )
    with pytest.raises(InvalidInput, match=r"does not parse \(No closing quotation\)"):
        split_line("event a.b 'unclosed")


METHODS = """\
import knot.methods

@knot.methods.method
def echo(params):
    return params
"""

GREETER = """\
# events: custom.tour.*
import knot.event
print("hello", knot.event.get_string("name"), knot.event.get_list("tags"))
"""


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with `%load_ext knot`, in a project with a sink script and a method script."""
    write_config(project, "[delivery]\nattempts = 1\n")
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "sinks" / "greeter.py").write_text(GREETER)
    (project / "scripts" / "methods").mkdir()
    (project / "scripts" / "methods" / "tools.py").write_text(METHODS)
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


def test_magics_take_json_as_typed(ip: InteractiveShell) -> None:
    raised = knot_magic(ip, 'event tour.typed {"name": "Ada", "note": "it\'s", "tags": [1, 2]}')
    assert isinstance(raised, Raised)
    quoted = knot_magic(ip, """event tour.quoted '{"name": "Bo"}'""")
    assert isinstance(quoted, Raised)
    cell = knot_cell(ip, "event tour.cell", '{"name": "Cy"}')
    assert isinstance(cell, Raised)
    knot_magic(ip, "wait")
    rows = {row["type"]: row["data"] for row in knot_magic(ip, "events custom.tour.*").rows}
    assert rows == {
        "custom.tour.typed": {"name": "Ada", "note": "it's", "tags": [1, 2]},
        "custom.tour.quoted": {"name": "Bo"},
        "custom.tour.cell": {"name": "Cy"},
    }
    assert knot_magic(ip, 'call tools.echo {"space": "web"}') == {"space": "web"}
    assert knot_magic(ip, 'call tools.echo ["web", {"n": 1}]') == ["web", {"n": 1}]
    report = knot_magic(
        ip,
        'run scripts/sinks/greeter.py --event custom.tour.x --data {"name": "Ada L", "tags": []}'
        " --space web",
    )
    assert isinstance(report, DryRunReport)
    assert report.result["output"] == ["hello Ada L []"]
    assert report.result["event"]["space"]["name"] == "web"
    same = knot_magic(ip, 'run scripts/sinks/greeter.py --event custom.tour.x --data={"name": "B"}')
    assert same.result["output"] == ["hello B []"]


def test_json_that_does_not_parse_gets_one_line_saying_where(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_error_line(ip, capsys, '%knot event tour.x {"name": Ada}')
    assert err == (
        'knot: The JSON {"name": Ada} does not parse: Expecting value (at its character 10).\n'
    )
    err = one_error_line(ip, capsys, "%knot run x.py --event t --data {'a': 1}")
    assert "The JSON {'a': 1} does not parse: Expecting property name" in err


def complete(ip: InteractiveShell, line: str) -> list[str]:
    """What IPython's completer offers with the cursor at the end of `line` (the terminal's
    API; the kernel test below goes through the messaging protocol instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # "use completions()"
        _, matches = ip.complete(None, line, len(line))
    return list(matches)


def test_completion_before_the_runtime_starts_starts_none(
    ip: InteractiveShell, project: Path
) -> None:
    assert complete(ip, "%knot ") == [
        "audit", "call", "connect", "event", "events", "method", "project", "replay", "run", "sink",
        "sinks", "space", "status", "tail", "trace", "wait",
    ]  # fmt: skip
    assert complete(ip, "%knot ev") == ["event", "events"]
    assert complete(ip, "%knot space ") == ["create", "delete", "list", "logs", "start", "stop"]
    assert complete(ip, "%knot events -") == ["--help", "-h", "-n"]
    assert complete(ip, "%knot run --") == [
        "--data", "--event", "--help", "--live", "--project", "--space",
    ]  # fmt: skip
    # Names from the kernel folder's scripts, without a runtime.
    assert complete(ip, "%%knot sink ") == ["greeter"]
    assert complete(ip, "%%knot method t") == ["tools"]
    assert complete(ip, "%knot run scripts/sinks/g") == ["scripts/sinks/greeter.py"]
    assert not (project / ".knot").exists()
    assert knot_magic(ip, "status").text.startswith("no runtime started yet")


def test_completion_offers_what_the_runtime_knows(ip: InteractiveShell) -> None:
    knot_magic(ip, 'event myapp.deployed {"version": "1.0"}')
    knot_magic(ip, "event tour.hello")
    knot_magic(ip, "space create web")
    knot_magic(ip, "wait")
    assert complete(ip, "%knot event ") == ["myapp.deployed", "tour.hello"]  # no space.*
    assert complete(ip, "%knot event my") == ["myapp.deployed"]
    assert complete(ip, "%knot event cu") == ["custom.myapp.deployed", "custom.tour.hello"]
    assert complete(ip, "%knot events custom.t") == [
        "custom.tour.*",
        "custom.tour.hello",
    ]
    assert {"custom.*", "space.created", "space.*"} <= set(complete(ip, "%knot tail "))
    assert complete(ip, "%knot run scripts/sinks/greeter.py --event custom.m") == [
        "custom.myapp.deployed"
    ]
    assert complete(ip, "%knot call ") == ["tools.echo"]
    assert complete(ip, "%knot space stop ") == ["web"]
    assert complete(ip, "%%knot sink ") == ["greeter"]
    knot_magic(ip, "space delete web")


def test_unloading_takes_the_completer_away(shell: InteractiveShell) -> None:
    shell.run_line_magic("load_ext", "knot")
    assert complete(shell, "%knot ev") == ["event", "events"]
    shell.run_line_magic("unload_ext", "knot")
    assert "event" not in complete(shell, "%knot ev")
    shell.run_line_magic("load_ext", "knot")  # and loading again brings it back, once
    assert complete(shell, "%knot ev") == ["event", "events"]
    shell.run_line_magic("unload_ext", "knot")


KERNEL_TIMEOUT = 120


def kernel_reply(client: Any, msg_id: str) -> dict[str, Any]:
    while True:
        reply = client.get_shell_msg(timeout=KERNEL_TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return dict(reply["content"])


def test_a_real_kernel_takes_typed_json_and_completes(jupyter_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    manager, client = start_new_kernel(
        kernel_name="python3", cwd=str(work), startup_timeout=KERNEL_TIMEOUT
    )
    try:
        code = textwrap.dedent(
            """\
            %load_ext knot
            raised = %knot event myapp.deployed {"version": "1.0", "by": "it's me"}
            %knot wait
            rows = %knot events
            seen = [(row["type"], row["data"]) for row in rows.rows]
            """
        )
        reply = client.execute_interactive(
            code, timeout=KERNEL_TIMEOUT, user_expressions={"seen": "seen"}
        )
        content = reply["content"]
        assert content["status"] == "ok", content
        seen = content["user_expressions"]["seen"]["data"]["text/plain"]
        assert seen == "[('custom.myapp.deployed', {'version': '1.0', 'by': \"it's me\"})]"
        for line, expected in [
            ("%knot ev", ["event", "events"]),
            ("%knot event my", ["myapp.deployed"]),
            ("%knot events custom.my", ["custom.myapp.*", "custom.myapp.deployed"]),
        ]:
            msg_id = client.complete(line, len(line))
            matches = kernel_reply(client, msg_id)["matches"]
            assert [m for m in matches if m in expected] == expected, (line, matches)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
