"""The %knot magics in a real in-process IPython shell: embedded and connected runtimes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from IPython.utils.capture import capture_output

import knot.event
import knot.ipython
import knot.methods
from knot import SyncRuntime
from knot.notebook.display import DryRunReport, LiveTail, Message, Raised

from .conftest import write_config
from .helpers import KnotServer, free_port, serve_on, wait_until
from .notebookhelpers import formats, knot_cell, knot_magic, one_error_line, run_cell

TOUR_CONFIG = """
[delivery]
attempts = 1

[[sinks]]
name = "seen"
type = "recording"
events = "custom.tour.*"

[[sinks]]
name = "flaky"
type = "recording"
events = "custom.tour.order"
fail_attempts = 1
"""


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with `%load_ext knot`, its kernel folder being a project with two sinks."""
    write_config(project, TOUR_CONFIG)
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


def test_the_embedded_runtime_starts_at_first_use_in_the_kernel_folder(
    ip: InteractiveShell, project: Path
) -> None:
    status = knot_magic(ip, "status")
    assert isinstance(status, Message)
    assert "no runtime started yet" in status.text
    assert not (project / ".knot").exists()

    raised = knot_magic(ip, """event tour.hello '{"name": "Ada"}'""")
    assert isinstance(raised, Raised)
    assert raised.type == "custom.tour.hello"
    assert (project / ".knot" / "knot.db").is_file()
    assert knot_magic(ip, "status").text.startswith(f"embedded runtime on {project}")

    events = knot_magic(ip, "events")
    assert [(row["id"], row["type"], row["data"]) for row in events.rows] == [
        (raised.id, "custom.tour.hello", {"name": "Ada"})
    ]


def test_cell_magic_and_knot_event_emit_reach_the_same_runtime(ip: InteractiveShell) -> None:
    order = knot_cell(ip, "event tour.order", '{"item": "tea",\n "qty": 2}\n')
    plain_id = knot.event.emit("tour.from_python", {"n": 3})
    assert isinstance(knot_magic(ip, "wait"), Message)

    events = knot_magic(ip, "events custom.tour.* -n 5")
    assert [(r["id"], r["data"]) for r in events.rows] == [
        (order.id, {"item": "tea", "qty": 2}),
        (plain_id, {"n": 3}),
    ]
    sinks = {row["name"]: row for row in knot_magic(ip, "sinks").rows}
    assert (sinks["seen"]["delivered"], sinks["seen"]["failed"]) == (2, 0)
    assert (sinks["flaky"]["delivered"], sinks["flaky"]["failed"]) == (0, 1)
    audit = knot_magic(ip, "audit").rows
    assert [(row["title"], row["sink"], row["event_id"]) for row in audit] == [
        ("Event Sink Delivery Failed", "flaky", order.id)
    ]


def test_results_render_as_html_tables_and_plain_text(ip: InteractiveShell) -> None:
    raised = knot_magic(ip, """event tour.markup '{"html": "<b>&</b>"}'""")
    events = knot_magic(ip, "events")
    shown = formats(ip, events)
    html, text = shown["text/html"], shown["text/plain"]
    assert "<th>type</th>" in html
    assert f"<td>{raised.id}</td>" in html
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html  # payloads are escaped, never rendered
    assert "<b>&</b>" not in html
    lines = text.splitlines()
    assert lines[0] == "events * (newest 20)"
    assert lines[1].split() == ["seq", "time", "type", "id", "data"]
    assert lines[2].split()[2:4] == ["custom.tour.markup", raised.id]

    assert formats(ip, raised)["text/plain"] == f"raised custom.tour.markup {raised.id}"
    empty = formats(ip, knot_magic(ip, "audit"))
    assert empty["text/plain"] == "audit log\n(the audit log is empty)"
    assert "(the audit log is empty)</td>" in empty["text/html"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%knot event 'not a type!'", "The event type 'not a type!' is not valid"),
        ("%knot event tour.x '{\"a\": }'", "The payload is not valid JSON"),
        ("%knot event tour.x '[1, 2]'", "The payload must be a JSON object"),
        ('%knot event tour.x \'{"a": 1}', "The %knot line does not parse (No closing quotation)"),
        (
            "%knot event tour.x {a: 1}",
            "The JSON {a: 1} does not parse: Expecting property name enclosed in double quotes "
            "(at its character 2).",
        ),
        ('%knot call m.x {"a": 1', "The JSON {\"a\": 1 does not parse: Expecting ',' delimiter"),
        ('%knot event tour.x {"a": 1}x', 'The JSON {"a": 1}x does not parse: Extra data'),
        (
            "%knot events -n many",
            "%knot events: argument -n: must be a whole number from 1 to 10000, not 'many'",
        ),
        ("%knot events -n -5", "argument -n: must be a whole number from 1 to 10000, not '-5'"),
        ("%knot audit -n 0", "argument -n: must be a whole number from 1 to 10000, not '0'"),
        ("%knot tail -n -1", "argument -n: must be a whole number from 1 to 10000, not '-1'"),
        ("%knot wait --timeout -1", "--timeout: must be a number of seconds > 0, not '-1'"),
        ("%knot wait --timeout nan", "--timeout: must be a number of seconds > 0, not 'nan'"),
        (
            "%%knot sink s --timeout 0\nprint(1)",
            "--timeout: must be a number of seconds > 0, not '0'",
        ),
        ("%knot events 'a*b'", "The pattern 'a*b' is not supported"),
        ("%knot tail '*.created'", "The pattern '*.created' is not supported"),
        ("%knot frobnicate", "%knot: argument COMMAND: invalid choice: 'frobnicate'"),
        ("%knot project no/such/folder", "The project folder 'no/such/folder' does not exist."),
        ("%knot project knot.toml", "'knot.toml' is not a folder: give %knot project the"),
        ("%%knot sinks\n{}", "Only %%knot event TYPE (the cell is the payload), %%knot sink NAME"),
        ("%%knot event tour.x '{}'\n{}", "on the %%knot line or in the cell, not both"),
    ],
)
def test_user_errors_print_one_line_and_no_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    assert expected in one_error_line(ip, capsys, line)


def test_help_is_printed_not_raised(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cell(ip, "%knot").success
    assert run_cell(ip, "%knot tail -h").success
    out, err = capsys.readouterr()
    assert "usage: %knot [-h] COMMAND ..." in out
    assert "usage: %knot tail [-h] [-n N] [--stop] [pattern]" in out
    assert err == ""


def test_payload_braces_are_not_expanded_as_python(ip: InteractiveShell) -> None:
    ip.user_ns["n"] = 41
    raised = knot_magic(ip, """event tour.braces '{"n": "{n}"}'""")
    rows = knot_magic(ip, "events custom.tour.braces").rows
    assert [(r["id"], r["data"]) for r in rows] == [(raised.id, {"n": "{n}"})]


def _published(outputs: list[Any], display_id: str) -> list[tuple[bool, str]]:
    return [
        (o.update, o.data["text/html"])
        for o in outputs
        if (o.transient or {}).get("display_id") == display_id
    ]


def test_tail_updates_its_display_handle_in_place(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        tail = knot_magic(ip, "tail custom.tour.*")
        assert isinstance(tail, LiveTail)
        display(tail)  # type: ignore[no-untyped-call]
        first = knot_magic(ip, "event tour.one")
        knot_magic(ip, "event other.skipped")
        second = knot.event.emit("tour.two", {})
        assert tail.wait(2)
        assert knot_magic(ip, "tail --stop").text == "stopped 1 live tail"
    assert not tail.running

    shown = _published(captured.outputs, tail.handle.display_id)
    assert shown[0][0] is False  # the display itself, then only updates in place
    assert "tail custom.tour.*: 0 events (live)" in shown[0][1]
    assert all(update for update, _ in shown[1:])
    assert len(shown) == 4  # one per matching event, then the stop
    assert first.id in shown[1][1]
    assert second not in shown[1][1]
    assert "2 events (live)" in shown[2][1]
    final = shown[-1][1]
    assert "tail custom.tour.*: 2 events (stopped)" in final
    assert "<td>custom.tour.two</td><td>" in final
    assert "other.skipped" not in final
    assert "<td>flaky, seen</td>" not in final  # neither event was an order
    assert [row["type"] for row in tail.events] == ["custom.tour.one", "custom.tour.two"]
    assert [row["sinks"] for row in tail.events] == [["seen"], ["seen"]]


def test_typed_patterns_get_custom_as_typed_types_do(ip: InteractiveShell) -> None:
    raised = knot_magic(ip, "event zz.tick")
    assert [r["id"] for r in knot_magic(ip, "events zz.*").rows] == [raised.id]
    tail = knot_magic(ip, "tail zz.*")
    try:
        assert tail.pattern == "custom.zz.*"
        later = knot_magic(ip, "event zz.tock")
        assert tail.wait(1)
        assert [row["id"] for row in tail.events] == [later.id]
    finally:
        tail.stop()


def test_switching_project_stops_tails_and_releases_the_store(
    ip: InteractiveShell, project: Path, tmp_path: Path
) -> None:
    knot_magic(ip, "event tour.first")
    tail = knot_magic(ip, "tail")
    other = tmp_path / "other"
    other.mkdir()
    status = knot_magic(ip, f"project {other}")
    assert status.text.startswith(f"embedded runtime on {other}")
    assert not tail.running
    assert knot_magic(ip, "events").rows == ()
    # The first project's store is closed: another runtime may open it now.
    with SyncRuntime(project) as rt:
        assert [e.type for e in rt.events()] == ["custom.tour.first"]


def test_unload_stops_the_runtime_and_gives_knot_event_back(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    session = knot.ipython.session()
    assert knot.event.current() is session
    knot.event.emit("tour.before.unload")
    shell.run_line_magic("unload_ext", "knot")
    assert "knot" not in shell.magics_manager.magics["line"]
    assert knot.event.current() is not session
    with SyncRuntime(project) as rt:  # the store was closed cleanly
        assert [e.type for e in rt.events()] == ["custom.tour.before.unload"]
    with pytest.raises(knot.InvalidInput, match="not loaded"):
        knot.ipython.session()


def test_connect_uses_a_running_knot_serve(ip: InteractiveShell, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    write_config(served, TOUR_CONFIG)
    server = KnotServer(served, quiet=True)
    try:
        status = knot_magic(ip, f"connect {server.url}")
        assert status.text == f"connected to the knot serve at {server.url}"
        with capture_output():
            tail = knot_magic(ip, "tail custom.tour.*")
        order = knot_cell(ip, "event tour.order", '{"qty": 1}')
        plain_id = knot.event.emit("tour.plain", {"via": "knot.event"})
        assert tail.wait(2)
        knot_magic(ip, "wait")

        with server.client() as http:
            journaled = http.get("/api/events").json()["events"]
        assert [(e["id"], e["type"]) for e in journaled] == [
            (order.id, "custom.tour.order"),
            (plain_id, "custom.tour.plain"),
        ]
        assert [r["id"] for r in knot_magic(ip, "events").rows] == [order.id, plain_id]
        sinks = {row["name"]: row for row in knot_magic(ip, "sinks").rows}
        assert sinks["seen"]["delivered"] == 2
        assert sinks["flaky"]["failed"] == 1
        assert _wait_for_audit(ip) == [("flaky", order.id)]
        assert [(r["id"], r["sinks"]) for r in tail.events] == [
            (order.id, ["flaky", "seen"]),
            (plain_id, ["seen"]),
        ]
        started = time.monotonic()
        knot_magic(ip, "tail --stop")
        assert not tail.running
        assert time.monotonic() - started < 2  # the blocked stream read is cut, not waited out
        # Nothing went to an embedded runtime: none was started in the kernel's folder.
        assert not (Path.cwd() / ".knot").exists()
    finally:
        server.kill()


def _wait_for_audit(ip: InteractiveShell) -> list[tuple[str, str]]:
    # `%knot wait` over HTTP knows the queues are empty; the server commits its audit row
    # through the journal a moment later.
    deadline = time.monotonic() + 5
    while True:
        rows = knot_magic(ip, "audit").rows
        if rows or time.monotonic() > deadline:
            return [(r["sink"], r["event_id"]) for r in rows]
        time.sleep(0.02)


def test_a_failed_connect_keeps_the_runtime_in_use(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    raised = knot_magic(ip, "event tour.kept")
    assert run_cell(ip, "%knot connect http://127.0.0.1:1").success
    err = capsys.readouterr().err
    assert err.startswith("knot: No knot runtime answers at http://127.0.0.1:1;")
    assert knot_magic(ip, "status").text.startswith("embedded runtime on")
    assert [r["id"] for r in knot_magic(ip, "events").rows] == [raised.id]


def test_tail_of_a_stopped_server_says_so_and_catches_up_when_it_is_back(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    # A tail of a connected server used to stop ("stopped", no word why) when the server
    # restarted. It now says it waits, and once the server is back it goes on, showing first
    # what was raised meanwhile.
    served = tmp_path / "served"
    served.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve_on(served, port)
    try:
        knot_magic(ip, f"connect {url}")
        with capture_output():
            tail = knot_magic(ip, "tail")
        server.kill()
        server.wait(5)
        wait_until(lambda: "(waiting:" in tail.snapshot().title)
        assert tail.running
        assert tail.snapshot().title == (
            f"tail *: 0 events (waiting: The knot runtime at {url} closed the stream. Waiting "
            "for it to come back.)"
        )
        server = serve_on(served, port)
        with httpx.Client(base_url=url) as http:
            missed = http.post("/event", json={"type": "tour.missed", "payload": {}}).json()["id"]
            assert tail.wait(1)
            live = http.post("/event", json={"type": "tour.live", "payload": {}}).json()["id"]
            assert tail.wait(2)
        assert [row["id"] for row in tail.events] == [missed, live]
        assert "(live: The knot runtime at" in tail.snapshot().title
        json.dumps(tail.snapshot().rows)  # rows stay plain JSON
    finally:
        knot_magic(ip, "tail --stop")
        server.kill()
        server.wait(5)
    assert not tail.running


GREETER = """# events: custom.tour.hello
import knot.event

name = knot.event.get_string("name", "world")
knot.event.directive("say", {"message": "<hi> " + name})
print("greeted", name)
"""


def test_run_is_a_dry_run_that_needs_no_runtime(ip: InteractiveShell, project: Path) -> None:
    script = project / "greeter.py"
    script.write_text(GREETER)
    report = knot_magic(ip, """run greeter.py --event custom.tour.hello --data '{"name": "Ada"}'""")
    assert isinstance(report, DryRunReport)
    assert report.ok
    assert repr(report).splitlines() == [
        "dry run of greeter.py on custom.tour.hello",
        "--- output (1 line)",
        "greeted Ada",
        "--- emitted (0 events, not delivered)",
        "--- directives (1 directive)",
        'say {"message": "<hi> Ada"}',
    ]
    html = formats(ip, report)["text/html"]
    assert "<pre>greeted Ada</pre>" in html
    assert "<td>say</td><td>{&quot;message&quot;:&quot;&lt;hi&gt; Ada&quot;}</td>" in html
    assert not (project / ".knot").exists()  # no runtime was started for it

    script.write_text("# events: custom.tour.hello\nimport os\n")
    refused = knot_magic(ip, "run greeter.py --event custom.tour.hello")
    assert not refused.ok
    assert repr(refused).splitlines()[1:] == [
        "refused by the sandbox:",
        "greeter.py:2:8: import of 'os' is not allowed",
    ]


def test_sink_cell_saves_the_script_and_waits_for_the_reload(
    ip: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert knot_cell(ip, "sink greeter", GREETER).text == (
        "loaded sink greeter (scripts/sinks/greeter.py)"
    )
    assert (project / "scripts" / "sinks" / "greeter.py").read_text() == GREETER
    assert knot_cell(ip, "sink greeter", GREETER).text == (
        "sink greeter unchanged: the runtime already runs this text"
    )
    knot_magic(ip, """event tour.hello '{"name": "Ada"}'""")
    knot_magic(ip, "wait")
    assert knot_cell(ip, "sink greeter", GREETER.replace("greeted", "hello")).text == (
        "reloaded sink greeter (scripts/sinks/greeter.py)"
    )
    knot_magic(ip, """event tour.hello '{"name": "Bo"}'""")
    knot_magic(ip, "wait")
    sink = {row["name"]: row for row in knot_magic(ip, "sinks").rows}["greeter"]
    assert (sink["output"], sink["delivered"]) == (["hello Bo"], 2)  # the new code ran

    for source in ["%knot sink greeter", "%%knot sink 9lives\nprint(1)"]:
        assert run_cell(ip, source).success
    errors = capsys.readouterr().err.splitlines()
    assert errors[0] == ("knot: Use %%knot sink NAME as a cell magic: the cell is the sink script.")
    assert errors[1].startswith("knot: The sink name '9lives' is not valid")
    assert len(errors) == 2


def test_sink_cell_in_connected_mode_says_where_the_scripts_are(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    server = KnotServer(served, quiet=True)
    try:
        knot_magic(ip, f"connect {server.url}")
        assert run_cell(ip, "%%knot sink greeter\n" + GREETER).success
    finally:
        server.kill()
    assert capsys.readouterr().err == (
        f"knot: The scripts folder belongs to the knot serve at {server.url}: save "
        "scripts/sinks/greeter.py there and it reloads the sink by itself.\n"
    )
    assert not (served / "scripts").exists()


COUNTER = """\
import knot.methods

counts = {}

@knot.methods.method(events=["custom.tour.*"])
def seen(params):
    counts[params["event_type"]] = counts.get(params["event_type"], 0) + 1

@knot.methods.method(params=["kind"])
def count(params):
    return counts.get(params["kind"], 0)
"""


def test_method_cell_and_call_in_the_embedded_runtime(
    ip: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = knot_cell(ip, "method counter", COUNTER)
    assert saved.text == "loaded method script counter (scripts/methods/counter.py): seen, count"
    assert (project / "scripts" / "methods" / "counter.py").read_text() == COUNTER
    knot_magic(ip, """event tour.hello '{"name": "Ada"}'""")
    knot_magic(ip, """event tour.hello '{"name": "Bo"}'""")
    knot_magic(ip, "wait")
    # The result is the method's result, as Python: a notebook can compute with it.
    assert knot_magic(ip, """call counter.count '{"kind": "custom.tour.hello"}'""") == 2
    assert knot_magic(ip, """call count '["custom.tour.hello"]'""") == 2
    assert knot.methods.call("counter.count", ["custom.tour.nothing"]) == 0
    broken = knot_cell(ip, "method counter", COUNTER + "import os\n")
    assert broken.text == (
        "kept the last good version of method script counter (scripts/methods/counter.py): "
        "scripts/methods/counter.py:12:8: import of 'os' is not allowed"
    )
    for source in [
        "%knot call counter.count '[1, 2]'",
        "%knot call counter.nope",
        "%knot call counter.count '{'",
    ]:
        assert run_cell(ip, source).success
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "knot: counter.count takes 1 params (kind); got 2",
        "knot: There is no method named 'counter.nope'.",
        "knot: The params are not valid JSON: Expecting property name enclosed in double "
        "quotes at line 1 column 2.",
    ]


def test_call_in_connected_mode_goes_to_the_server(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    (served / "scripts" / "methods").mkdir(parents=True)
    (served / "scripts" / "methods" / "counter.py").write_text(COUNTER)
    server = KnotServer(served, quiet=True)
    try:
        knot_magic(ip, f"connect {server.url}")
        knot_magic(ip, "event tour.x '{}'")
        knot_magic(ip, "wait")
        assert knot_magic(ip, """call counter.count '{"kind": "custom.tour.x"}'""") == 1
        assert knot.methods.call("count", {"kind": "custom.tour.x"}) == 1
        assert run_cell(ip, "%%knot method counter\n" + COUNTER).success
    finally:
        server.kill()
    assert capsys.readouterr().err == (
        f"knot: The scripts folder belongs to the knot serve at {server.url}: save "
        "scripts/methods/counter.py there and it reloads the method script by itself.\n"
    )
