"""Tour notebooks and the knot kernelspec, executed with nbclient on real Jupyter kernels.

Each test starts one kernel. Jupyter's and IPython's folders all point into the test's tmp
folder: nothing is installed into, or read from, the user's real Jupyter setup.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from knot.cli import main

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_TIMEOUT = 120
FLOOD = 2000  # events: their log lines are far more than a 64 KiB pipe buffer


def read_notebook(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def notebook(*sources: str) -> Any:
    cells = [nbformat.v4.new_code_cell(s) for s in sources]  # type: ignore[no-untyped-call]
    return nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]


def execute(nb: Any, *, kernel_name: str, cwd: Path) -> Any:
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=KERNEL_TIMEOUT, resources={"metadata": {"path": cwd}}
    )
    client.execute()
    return nb


def code_cells(nb: Any, source_start: str) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]


def code_cell(nb: Any, source_start: str) -> Any:
    found = code_cells(nb, source_start)
    assert len(found) == 1, f"expected one code cell starting with {source_start!r}"
    return found[0]


def result(cell: Any, mime: str = "text/plain") -> str:
    """The one rich output of a cell (execute_result or display_data)."""
    rich = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    assert len(rich) == 1, cell.outputs
    return str(rich[0].data[mime])


def stream(cell: Any, name: str) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_committed_notebooks_carry_no_outputs() -> None:
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = read_notebook(path)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: {cell.source[:40]!r} has outputs"
                assert cell.execution_count is None


def test_quickstart_tour(jupyter_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", work)
    nb = read_notebook(work / "quickstart.ipynb")
    execute(nb, kernel_name="python3", cwd=work)  # any Python kernel: %load_ext in cell one

    project = work / "tour"
    status = result(code_cell(nb, "%knot project tour"))
    assert status == f"embedded runtime on {project} (store {project / '.knot' / 'knot.db'})"

    raised = {}
    for start, event_type in [
        ('%knot event tour.hello \'{"name": "Ada"}\'', "custom.tour.hello"),
        ("%%knot event tour.order", "custom.tour.order"),
    ]:
        words = result(code_cell(nb, start)).split()
        assert words[:2] == ["raised", event_type]
        raised[event_type] = words[2]
    raised["custom.tour.from_python"] = json.loads(
        result(code_cell(nb, "import knot.event")).replace("'", '"')
    )
    assert result(code_cell(nb, "tail.wait(3)")) == "True"

    # The live view, shown once, was updated in place by the kernel's background thread.
    tail_html = result(code_cell(nb, "tail = %knot tail"), "text/html")
    assert "tail custom.tour.*: 3 events (stopped)" in tail_html
    for event_type, event_id in raised.items():
        assert f"<td>{event_type}</td><td>{event_id}</td>" in tail_html
    assert f"<td>custom.tour.order</td><td>{raised['custom.tour.order']}</td><td>flaky, seen" in (
        tail_html
    )

    sinks = result(code_cells(nb, "%knot sinks")[0]).splitlines()
    assert sinks[1].split()[:8] == [
        "name",
        "type",
        "events",
        "origin",
        "pending",
        "delivered",
        "failed",
        "dropped",
    ]
    flaky = ["flaky", "recording", "custom.tour.order", "config", "0", "0", "1", "0"]
    assert sinks[2].split()[:8] == flaky
    assert sinks[3].split() == ["seen", "recording", "custom.tour.*", "config", "0", "3", "0", "0"]

    events_html = result(code_cell(nb, "%knot events custom.tour.*"), "text/html")
    assert events_html.count("<tr><td>") == 3
    assert "<td>{&quot;item&quot;:&quot;tea&quot;,&quot;qty&quot;:2}</td>" in events_html
    events_text = result(code_cell(nb, "%knot events custom.tour.*")).splitlines()
    assert [line.split()[2:4] for line in events_text[2:]] == [
        [event_type, event_id] for event_type, event_id in raised.items()
    ]

    audit = result(code_cell(nb, "%knot audit")).splitlines()
    assert len(audit) == 3
    assert "Event Sink Delivery Failed  flaky" in audit[2]
    assert f"gave up on event {raised['custom.tour.order'][:20]}" in audit[2]

    mistake = code_cell(nb, "%knot event 'not a type!'")
    assert [o.output_type for o in mistake.outputs] == ["stream"]
    assert stream(mistake, "stderr") == (
        "knot: The event type 'not a type!' is not valid: use dot-separated segments of "
        "letters, digits, '_' and '-'.\n"
    )
    assert result(code_cell(nb, "%knot tail --stop")) == "stopped 1 live tail"
    assert (project / ".knot" / "knot.db").is_file()
    assert not (work / ".knot").exists()  # the kernel's own folder never got a runtime

    # A sink script, saved from a cell, tried in a dry run, then changed and reloaded.
    saves = [result(cell) for cell in code_cells(nb, "%%knot sink greet")]
    assert saves == [
        "loaded sink greet (scripts/sinks/greet.py)",
        "reloaded sink greet (scripts/sinks/greet.py)",
        "kept the last good version of sink greet (scripts/sinks/greet.py): "
        "scripts/sinks/greet.py:2:8: import of 'os' is not allowed",
    ]
    assert "import os" in (project / "scripts" / "sinks" / "greet.py").read_text()
    assert result(code_cell(nb, "%knot run tour/scripts/sinks/greet.py")).splitlines() == [
        "dry run of tour/scripts/sinks/greet.py on custom.tour.hello",
        "--- output (1 line)",
        "Hello, Ada!",
        "--- emitted (1 event, not delivered)",
        'custom.tour.greeted {"greeting": "Hello, Ada!"}',
        "--- directives (0 directives)",
    ]
    greeted = [
        [json.loads(line.split(None, 4)[4])["greeting"] for line in lines[2:]]
        for lines in (result(cell).splitlines() for cell in code_cells(nb, "%knot wait\n"))
    ]
    # The dry run journaled nothing; the edit took effect from the very next event.
    assert greeted == [["Hello, Grace!"], ["Hello, Grace!", "Bonjour, Linus!"]]
    greet = result(code_cells(nb, "%knot sinks")[1]).splitlines()[3]
    counts = ["0", "2", "0", "0"]  # pending, delivered, failed, dropped
    assert greet.split()[:8] == ["greet", "script", "custom.tour.hello", "script", *counts]
    assert greet.rstrip().endswith(
        "scripts/sinks/greet.py:2:8: import of 'os' is not allowed  Bonjour, Linus!"
    )


def test_methods_tour(jupyter_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "methods.ipynb", work)
    nb = read_notebook(work / "methods.ipynb")
    execute(nb, kernel_name="python3", cwd=work)

    project = work / "methods_tour"
    assert result(code_cell(nb, "from pathlib import Path")) == (
        f"embedded runtime on {project} (store {project / '.knot' / 'knot.db'})"
    )
    saves = [result(cell) for cell in code_cells(nb, "%%knot method deploys")]
    assert saves == [
        "loaded method script deploys (scripts/methods/deploys.py): record, count, summary",
        "reloaded method script deploys (scripts/methods/deploys.py): record, count, busiest, "
        "summary",
        "kept the last good version of method script deploys (scripts/methods/deploys.py): "
        "scripts/methods/deploys.py:2:8: import of 'os' is not allowed",
    ]
    assert result(code_cell(nb, "%knot call deploys.count '{")) == "0"
    # Three events became three calls to deploys.record, in order, before the summary.
    assert result(code_cell(nb, "%knot call deploys.summary")) == (
        "{'deploys': 3, 'by_space': {'web': 2, 'api': 1}}"
    )
    assert result(code_cell(nb, "%knot call count")) == "2"
    shares = result(code_cell(nb, "import knot.methods"))
    assert shares == "{'web': 0.6666666666666666, 'api': 0.3333333333333333}"
    sinks = result(code_cell(nb, "%knot sinks")).splitlines()
    assert sinks[2].split() == [
        "deploy_params", "json-rpc", "custom.deploy.*", "config", "0", "0", "0", "0"
    ]  # fmt: skip
    record = sinks[3].split()
    counts = ["0", "3", "0", "0"]  # pending, delivered, failed, dropped
    assert record[:8] == ["deploys.record", "method", "custom.deploy.*", "method", *counts]
    assert sinks[3].rstrip().endswith("api: deploy #1 of 0.9")  # its last printed line
    assert stream(code_cell(nb, "%knot call deploys.count '["), "stderr") == (
        "knot: deploys.count takes 1 params (space); got 2\n"
    )
    assert stream(code_cell(nb, "%knot call deploys.nope"), "stderr") == (
        "knot: There is no method named 'deploys.nope'.\n"
    )
    # The reloaded worker started with fresh state: only the event after the reload counted.
    busiest = code_cells(nb, "%knot call deploys.busiest")
    assert result(code_cell(nb, '%knot event deploy.finished \'{"space": "api"')) == "'api'"
    assert [result(cell) for cell in busiest] == ["'api'"]
    audit = result(code_cell(nb, "%knot audit")).splitlines()
    assert "Method Script Rejected  deploys" in audit[2]
    assert (project / "scripts" / "methods" / "deploys.py").read_text() == (
        "import knot.methods\nimport os\n"
    )


def test_knot_kernelspec_preloads_the_extension(
    jupyter_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = jupyter_home / "prefix"
    assert main(["kernel", "install", "--prefix", str(prefix)]) == 0
    spec_dir = prefix / "share" / "jupyter" / "kernels" / "knot"
    assert capsys.readouterr().out.strip() == (
        f"Installed the kernelspec 'knot' (Knot (Python)) in {spec_dir}"
    )
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "Knot (Python)"
    assert spec["argv"][1:] == ["-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext=knot"]

    work = tmp_path / "work"
    work.mkdir()
    nb = notebook(
        '%knot event kernel.hello \'{"from": "the knot kernel"}\'',
        "import knot.event, knot.ipython\nknot.event.current() is knot.ipython.session()",
        "%knot events",
    )
    execute(nb, kernel_name="knot", cwd=work)  # no %load_ext anywhere
    words = result(nb.cells[0]).split()
    assert words[:2] == ["raised", "custom.kernel.hello"]
    assert result(nb.cells[1]) == "True"
    rows = result(nb.cells[2]).splitlines()[2:]
    assert [row.split()[2:] for row in rows] == [
        ["custom.kernel.hello", words[2], '{"from":"the', "knot", 'kernel"}']
    ]
    assert (work / ".knot" / "knot.db").is_file()  # the kernel's folder is the project


def test_kernel_install_failure_is_one_line(
    jupyter_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the prefix folder should be")
    assert main(["kernel", "install", "--prefix", str(blocked)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("knot: cannot install the kernelspec: ")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_sky_tour(jupyter_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "sky.ipynb", work)
    nb = read_notebook(work / "sky.ipynb")
    # The server logs a line per event: more than a pipe holds must not make it stop answering.
    flood = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        f"for i in range({FLOOD}):\n    client.emit('load.tick', {{'i': i}})\n"
        "print('answering after', i + 1)"
    )
    nb.cells.insert(nb.cells.index(code_cell(nb, "%knot wait")), flood)
    execute(nb, kernel_name="python3", cwd=work)
    assert stream(flood, "stdout") == f"answering after {FLOOD}\n"
    assert (work / "sky-tour-serve.log").stat().st_size > 64 * 1024  # more than a pipe holds

    assert stream(code_cell(nb, "import knot\n"), "stdout").strip() == "eci: tour-channel"
    path_form = stream(code_cell(nb, "import httpx, json"), "stdout")
    assert path_form.startswith("200\n")
    directives = json.loads(path_form.split("\n", 1)[1])
    assert directives == [
        {
            "type": "directive",
            "name": "say",
            "options": {"message": "Hello, Ada!"},
            "meta": {"rid": "greeter", "eid": "greet-1"},
        }
    ]
    query_form = stream(code_cell(nb, "answer = sky.post("), "stdout").splitlines()
    assert query_form == ["200 greet-2", "greeter say Hello, Grace!"]
    statuses = stream(code_cell(nb, "print(sky.get("), "stdout").splitlines()
    assert statuses[0] == "202"
    assert statuses[1].startswith("404 ")
    assert "nope" in statuses[1]
    assert statuses[2].startswith("400 ")
    events = result(code_cell(nb, "%knot events"))
    assert events.count("custom.greeting.hello") == 3
    assert "Lin" in events
    assert stream(code_cell(nb, "sky.close()"), "stdout").strip() == "exit code 0"
