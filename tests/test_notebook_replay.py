"""`%knot replay SINK` in a real in-process IPython shell: embedded, and connected to a real
`knot serve`; the HTML table, the text form, errors and completion."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from knot.notebook.replay_view import ReplayView

from .conftest import write_config
from .helpers import KnotServer, wait_until
from .notebookhelpers import formats, knot_cell, knot_magic, one_error_line

GREETER = """\
# events: custom.greet.*
import knot.event
print("hello <b>" + knot.event.get_string("name") + "</b>")
"""


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    write_config(project, "[delivery]\nattempts = 1\n")
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


def complete(ip: InteractiveShell, line: str) -> list[str]:
    """What IPython's completer offers with the cursor at the end of `line`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # "use completions()"
        _, matches = ip.complete(None, line, len(line))
    return list(matches)


def test_replay_shows_a_table_of_what_changed(ip: InteractiveShell) -> None:
    knot_cell(ip, "sink greeter", GREETER)
    knot_magic(ip, 'event greet.x {"name": "ada & co"}')
    knot_magic(ip, 'event greet.x {"name": "bob"}')
    knot_magic(ip, "wait")
    same = knot_magic(ip, "replay greeter")
    knot_cell(ip, "sink greeter", GREETER.replace("hello", "hi") + "if 'bob' in str(1): pass\n")
    changed = knot_magic(ip, "replay greeter --since 1h -n 1")
    every = knot_magic(ip, "replay greeter --events greet.x")
    assert isinstance(same, ReplayView)
    assert same.report.summary["same"] == 2
    assert isinstance(changed, ReplayView)
    assert [e.status.value for e in changed.report.events] == ["changed"]
    assert len(every.report.events) == 2
    shown = formats(ip, every)
    text, html = shown["text/plain"], shown["text/html"]
    assert text.startswith("Replayed 2 events on greeter")
    assert "-print  hello <b>ada & co</b>" in text
    assert "+print  hi <b>ada & co</b>" in text
    assert "<b>2</b> changed" in html
    assert "+print  hi &lt;b&gt;ada &amp; co&lt;/b&gt;" in html  # printed text is escaped
    assert "<b>ada" not in html
    assert "nothing delivered or journaled" in html


def test_replay_mistakes_are_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    knot_cell(ip, "sink greeter", GREETER)
    line = one_error_line(ip, capsys, "%knot replay nope")
    assert line.strip() == "knot: There is no sink named 'nope'."
    line = one_error_line(ip, capsys, "%knot replay greeter --since soon")
    assert line.startswith("knot: The time 'soon' is not understood")
    line = one_error_line(ip, capsys, "%knot replay greeter --since 1d --from 2")
    assert "not allowed with argument --since" in line
    line = one_error_line(ip, capsys, "%knot replay greeter -n 0")
    assert "from 1 to 10000" in line


def test_replay_is_completed_and_in_the_help(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    knot_magic(ip, "-h")
    helped = capsys.readouterr().out
    assert "replay    Run a script sink's current version" in helped
    assert "%knot replay greeter --since 7d" in helped
    knot_cell(ip, "sink greeter", GREETER)
    knot_magic(ip, 'event greet.hello {"name": "x"}')
    knot_magic(ip, "wait")
    assert complete(ip, "%knot re") == ["replay"]
    assert complete(ip, "%knot replay ") == ["greeter"]
    assert complete(ip, "%knot replay greeter --events custom.greet.h") == ["custom.greet.hello"]
    assert {"--since", "--from", "--events", "--limit"} <= set(complete(ip, "%knot replay g --"))


def test_replay_through_a_connected_knot_serve(ip: InteractiveShell, tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "scripts" / "sinks").mkdir(parents=True)
    script = served / "scripts" / "sinks" / "greeter.py"
    script.write_text(GREETER)
    server = KnotServer(served)
    try:
        knot_magic(ip, f"connect {server.url}")
        knot_magic(ip, 'event greet.x {"name": "cy"}')
        knot_magic(ip, "wait")
        script.write_text(GREETER.replace("hello", "hey"))
        wait_until(
            lambda: knot_magic(ip, "replay greeter").report.summary["changed"] == 1, timeout=20
        )
        view = knot_magic(ip, "replay greeter")
    finally:
        server.kill()
    assert "+print  hey <b>cy</b>" in view.text()
