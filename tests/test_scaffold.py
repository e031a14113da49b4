"""`knot init` and `knot new`: what they write passes `knot check`, runs in the sandbox, and
the project's own tests pass; nothing is ever overwritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from knot import InvalidInput, PatternError, SinkError, parse_config
from knot.scripts import check_paths
from knot.scripts.scaffold import init_project, new_method, new_sink
from knot.testing import MethodHarness, SinkRunner

from .helpers import run_knot as knot


def test_init_makes_a_project_whose_example_and_tests_pass(tmp_path: Path) -> None:
    done = init_project(tmp_path / "demo")
    project = tmp_path / "demo"
    assert [done.shown(p) for p in done.created] == [
        "knot.toml",
        "scripts/sinks/hello.py",
        "scripts/methods",
        "tests/test_hello.py",
        ".gitignore",
    ]
    assert (project / "scripts" / "methods").is_dir()
    settings = parse_config((project / "knot.toml").read_text())
    assert settings.ok, settings.errors
    assert settings.warnings == ()
    report = check_paths([project / "scripts"])
    assert report.ok, [str(p) for p in report.problems]
    assert report.warnings == ()
    # The project's own tests, run as its user runs them: pytest in the project folder.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KNOT_", "PYTEST_"))}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    assert not (project / ".knot").exists()  # the tests ran on copies


def test_init_never_overwrites_and_then_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("mine\n")
    with pytest.raises(InvalidInput) as refused:
        init_project(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path} already has .gitignore; nothing was written (knot never overwrites a "
        "file: move it away, or choose another folder or name)."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text() == "mine\n"
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match="is a file; knot init makes a project in a folder"):
        init_project(tmp_path / "file")


def test_new_sink_passes_check_and_runs_on_its_example_event(
    tmp_path: Path, run_sink: SinkRunner
) -> None:
    init_project(tmp_path)
    done = new_sink("deploy_watch", " custom.deploy.* ,space.started,", project=tmp_path)
    (path,) = done.created
    assert path == tmp_path / "scripts" / "sinks" / "deploy_watch.py"
    text = path.read_text()
    assert text.startswith(
        "# events: custom.deploy.*, space.started\n"
        "# description: Handles custom.deploy.*, space.started events\n"
    )
    assert check_paths([path]).ok
    assert done.next_steps == (
        "knot run scripts/sinks/deploy_watch.py --event custom.deploy.example "
        """--data '{"name": "Ada"}'""",
    )
    run = run_sink(path, "custom.deploy.example", {"name": "Ada"})
    assert run.output == ("custom.deploy.example: hello, Ada",)
    exact = new_sink("on_start", "space.started", project=tmp_path, description="Say hi")
    assert "# description: Say hi\n" in exact.created[0].read_text()
    assert "--event space.started " in exact.next_steps[0]
    everything = new_sink("audit_all", "*", project=tmp_path)
    assert "--event custom.example " in everything.next_steps[0]
    assert check_paths([tmp_path / "scripts"]).ok


def test_new_scripts_go_where_the_project_keeps_its_scripts(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text('[scripts]\ndir = "handlers"\n')
    (path,) = new_sink("notify", "custom.x", project=tmp_path).created
    assert path == tmp_path / "handlers" / "sinks" / "notify.py"
    (method,) = new_method("tally", project=tmp_path).created
    assert method == tmp_path / "handlers" / "methods" / "tally.py"


def test_new_method_passes_check_and_its_methods_answer(
    tmp_path: Path, call_method: MethodHarness
) -> None:
    done = new_method("counter", project=tmp_path)
    (path,) = done.created
    assert check_paths([path]).ok  # in a methods/ folder: checked by the method rules
    assert done.next_steps == (
        """knot call counter.hello '{"name": "Ada"}'""",
        "knot call counter.stats",
    )
    assert call_method(path, "hello", {"name": "Ada"}).result == {"greeting": "Hello, Ada!"}
    assert call_method(path, "hello", ["Bo"]).result == {"greeting": "Hello, Bo!"}
    assert call_method(path, "stats").result == {"hello": 2}


def test_new_refuses_what_it_cannot_write_well(tmp_path: Path) -> None:
    new_sink("notify", "custom.x", project=tmp_path)
    with pytest.raises(InvalidInput, match=r"already has scripts/sinks/notify\.py; nothing"):
        new_sink("notify", "custom.y", project=tmp_path)
    with pytest.raises(SinkError, match="'x' cannot name a sink: a name starts with a letter"):
        new_sink("x", "custom.x", project=tmp_path)
    with pytest.raises(SinkError, match="cannot name a method script"):
        new_method("9lives", project=tmp_path)
    with pytest.raises(PatternError, match="'sp\\*' is not supported"):
        new_sink("other", "sp*", project=tmp_path)
    with pytest.raises(PatternError, match="No event patterns are given"):
        new_sink("other", " , ", project=tmp_path)
    with pytest.raises(InvalidInput, match="description is one line"):
        new_sink("other", "custom.x", project=tmp_path, description="a\nb")
    with pytest.raises(InvalidInput, match="does not exist; make one with `knot init"):
        new_method("tally", project=tmp_path / "nope")
    assert sorted(p.name for p in (tmp_path / "scripts" / "sinks").iterdir()) == ["notify.py"]


def test_the_commands(tmp_path: Path) -> None:
    made = knot("init", str(tmp_path / "demo"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[:3] == [
        f"Created a knot project in {tmp_path / 'demo'}:",
        "  knot.toml",
        "  scripts/sinks/hello.py",
    ]
    assert f"  cd {tmp_path / 'demo'}" in made.stdout
    again = knot("init", str(tmp_path / "demo"))
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr.startswith(f"knot: {tmp_path / 'demo'} already has knot.toml, ")
    assert again.stderr.count("\n") == 1
    sink = knot(
        "new", "sink", "notify", "--events", "custom.myapp.*", "--project", str(tmp_path / "demo")
    )
    assert sink.returncode == 0, sink.stderr
    assert sink.stdout.startswith(f"Created {tmp_path / 'demo' / 'scripts/sinks/notify.py'}.\n")
    assert sink.stderr == ""
    bare = knot("new", "method", "tally", "--project", str(tmp_path))
    assert bare.returncode == 0
    assert "has no knot.toml; is it the project folder?" in bare.stderr
    missing = knot("new", "sink", "notify")
    assert missing.returncode == 2
    assert "the following arguments are required: --events" in missing.stderr
    # A project folder stands for its scripts, not the tests beside them.
    checked = knot("check", str(tmp_path / "demo"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "2 scripts checked: all follow the sandbox rules.\n"


def test_what_the_system_refuses_is_one_clear_error_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    (tmp_path / "tests").write_text("a file where init wants a folder\n")
    with pytest.raises(InvalidInput) as refused:
        init_project(tmp_path)
    assert str(refused.value).startswith(f"Could not write {tmp_path / 'tests'}")
    assert str(refused.value).endswith("; no file was written.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripts", "tests"]
    assert list((tmp_path / "scripts").rglob("*.py")) == []  # hello.py was taken back
    long = knot("init", str(tmp_path / ("x" * 300)))
    assert long.returncode == 1
    assert long.stderr.startswith("knot: Cannot use ")
    assert long.stderr.endswith("File name too long.\n")
    long = knot("new", "sink", "ok_name", "--events", "*", "--project", "y" * 300)
    assert long.returncode == 1
    assert "File name too long" in long.stderr
    # Found by tests/test_fuzz_cli.py: no argv holds a NUL, but the Python API's paths can.
    with pytest.raises(InvalidInput, match="a file name cannot hold a NUL character"):
        init_project("\x00")
    with pytest.raises(InvalidInput, match="a file name cannot hold a NUL character"):
        new_sink("ok_name", "*", project=tmp_path / "a\x00b")
