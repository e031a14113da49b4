"""`%knot trace ID` in a real in-process IPython shell, embedded and connected to `knot serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from knot.notebook.display import TraceView

from .conftest import write_config
from .helpers import KnotServer, wait_until
from .notebookhelpers import formats, knot_cell, knot_magic, one_error_line

CONFIG = """
[delivery]
attempts = 2
backoff = [0.01]

[[sinks]]
name = "flaky"
type = "recording"
events = "custom.tour.billed"
fail_attempts = 1
"""

SINK = """\
# events: custom.tour.order
import knot.event
print("billing <b>&")
knot.event.emit("tour.billed", {})
"""


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    write_config(project, CONFIG)
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


def _billed(ip: InteractiveShell) -> tuple[str, str]:
    knot_cell(ip, "sink bill", SINK)
    root = knot_magic(ip, "event tour.order '{}'").id
    knot_magic(ip, "wait")
    events = knot_magic(ip, "events")
    billed = next(row["id"] for row in events.rows if row["type"] == "custom.tour.billed")
    return root, billed


def test_trace_renders_the_tree_as_html_and_text(ip: InteractiveShell) -> None:
    root, billed = _billed(ip)
    view = knot_magic(ip, f"trace {billed}")
    assert isinstance(view, TraceView)
    assert view.data["root"] == root
    shown = formats(ip, view)
    text, html = shown["text/plain"], shown["text/html"]
    assert text.splitlines()[0].startswith(f"custom.tour.order {root}")
    assert "→ bill: delivered" in text
    assert "→ flaky: delivered (2 attempts" in text
    assert f"custom.tour.billed {billed}" in text
    assert f"<code>{billed}</code>" in html
    assert "<b>flaky</b>" in html
    assert "billing &lt;b&gt;&amp;" in html  # what a script printed is escaped, not rendered
    assert "<td>failed</td>" in html


def test_trace_of_an_unknown_event_is_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    knot_magic(ip, "event tour.x '{}'")
    line = one_error_line(ip, capsys, "%knot trace 01a00000-0000-7000-8000-000000000000")
    assert line.strip() == "knot: There is no event with id '01a00000-0000-7000-8000-000000000000'."


def test_trace_through_a_connected_knot_serve(ip: InteractiveShell, tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "scripts" / "sinks").mkdir(parents=True)
    (served / "scripts" / "sinks" / "bill.py").write_text(SINK)
    write_config(served, CONFIG)
    server = KnotServer(served)
    try:
        knot_magic(ip, f"connect {server.url}")
        root = knot_magic(ip, "event tour.order '{}'").id
        wait_until(
            lambda: "→ flaky: delivered" in knot_magic(ip, f"trace {root}").text(), timeout=20
        )
        view = knot_magic(ip, f"trace {root}")
    finally:
        server.kill()
    assert view.data["tree"][0]["id"] == root
    assert view.data["tree"][0]["children"][0]["type"] == "custom.tour.billed"
