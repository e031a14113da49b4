"""Loading sink scripts: the header, the name rule and load-time sandbox violations."""

from __future__ import annotations

from pathlib import Path

import pytest

from knot import SinkError, SinkOrigin
from knot.scripts import ScriptLoad, load_script
from knot.sinks import SINK_TYPES, ScriptSink, build_sink


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def rules(load: ScriptLoad) -> list[str]:
    return [str(p) for p in load.problems]


def test_a_good_script_becomes_a_script_spec(tmp_path: Path) -> None:
    source = (
        "#!/usr/bin/env knot\n"
        "# events: custom.myapp.*, space.started\n"
        "# description: Tell the team about deploys\n"
        "\n"
        "import knot.event\n"
        "print(knot.event.type())\n"
    )
    path = write(tmp_path, "deploy_notify.py", source)
    load = load_script(path)
    assert load.ok, rules(load)
    spec = load.spec
    assert spec is not None
    assert spec.name == "deploy_notify"
    assert spec.type == "script"
    assert spec.origin is SinkOrigin.SCRIPT
    assert spec.events_text == "custom.myapp.*, space.started"
    assert spec.description == "Tell the team about deploys"
    assert spec.options == {"path": str(path), "source": source}


def test_source_argument_is_what_gets_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "notify.py", "# events: *\nimport os\n")
    load = load_script(path, source="# events: custom.a\nx = 1\n")
    assert load.ok
    assert load.spec is not None
    assert load.spec.options["source"] == "# events: custom.a\nx = 1\n"


def test_missing_header_is_a_problem_at_line_one(tmp_path: Path) -> None:
    load = load_script(write(tmp_path, "nohead.py", "import json\n# events: *\n"))
    assert not load.ok
    assert load.spec is None
    assert rules(load) == [
        f"{tmp_path / 'nohead.py'}:1:1: missing '# events:' header: add a comment like "
        "'# events: custom.myapp.*' before the first statement"
    ]


def test_bad_pattern_points_at_its_column(tmp_path: Path) -> None:
    path = write(tmp_path, "badpat.py", "# comment\n# events: custom.a.*,  *.created\nx = 1\n")
    load = load_script(path)
    assert len(load.problems) == 1
    problem = load.problems[0]
    assert (problem.line, problem.col) == (2, 24)
    assert "'*.created'" in problem.rule


def test_empty_and_doubled_headers(tmp_path: Path) -> None:
    empty = load_script(write(tmp_path, "empty.py", "# events:   \nx = 1\n"))
    assert [p.rule for p in empty.problems] == ["the '# events:' header names no patterns"]
    twice = load_script(write(tmp_path, "twice.py", "# events: a\n# events: b\nx = 1\n"))
    assert [(p.line, p.rule) for p in twice.problems] == [
        (2, "the '# events:' header is given twice")
    ]


def test_header_after_first_statement_does_not_count(tmp_path: Path) -> None:
    load = load_script(write(tmp_path, "late.py", "x = 1\n# events: *\n"))
    assert any("missing '# events:' header" in p.rule for p in load.problems)


def test_misspelt_header_key_warns(tmp_path: Path) -> None:
    load = load_script(write(tmp_path, "typo.py", "# event: custom.a\n# events: *\nx = 1\n"))
    assert load.ok
    assert load.warnings == (
        f"{tmp_path / 'typo.py'}:1: '# event:' is not a header; did you mean '# events:'?",
    )


@pytest.mark.parametrize("name", ["9lives.py", "my-sink.py", "x.py"])
def test_file_stem_must_be_a_sink_name(tmp_path: Path, name: str) -> None:
    load = load_script(write(tmp_path, name, "# events: *\nx = 1\n"))
    assert not load.ok
    assert load.problems[0].line == 1
    assert "is not a valid sink name" in load.problems[0].rule


def test_sandbox_violations_have_line_and_column(tmp_path: Path) -> None:
    source = "# events: *\nimport json\ndef f():\n    import os\n    return open('x')\n"
    path = write(tmp_path, "bad.py", source)
    assert rules(load_script(path)) == [
        f"{path}:4:12: import of 'os' is not allowed",
        f"{path}:5:12: the file system is not available to scripts",
    ]


def test_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    load = load_script(tmp_path / "gone.py")
    assert not load.ok
    assert "cannot be read" in load.problems[0].rule
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"# events: *\n\xff\xfe\n")
    assert "not UTF-8" in load_script(binary).problems[0].rule


def test_script_is_a_registered_sink_type_built_from_source(tmp_path: Path) -> None:
    assert SINK_TYPES["script"] is ScriptSink
    path = write(tmp_path, "notify.py", "# events: *\nx = 1\n")
    load = load_script(path)
    assert load.spec is not None
    path.write_text("# events: *\nimport os\n")  # changed since: build_sink must not re-read
    sink = build_sink(load.spec)
    assert isinstance(sink, ScriptSink)
    assert sink.source == "# events: *\nx = 1\n"


def test_build_sink_refuses_a_spec_whose_source_breaks_the_rules(tmp_path: Path) -> None:
    load = load_script(write(tmp_path, "notify.py", "# events: *\nx = 1\n"))
    assert load.spec is not None
    from dataclasses import replace

    bad = replace(load.spec, options={"path": "notify.py", "source": "import socket\n"})
    with pytest.raises(SinkError, match=r"notify\.py:1:8: import of 'socket' is not allowed"):
        build_sink(bad)
