"""Fuzz the `knot` command line: whatever the arguments, an exit code and a clear message.

The commands come from the parser itself (`build_parser()`), so a command added later is
fuzzed too. Each argument list runs in-process through `knot.cli.main` against a real
`knot serve` on loopback (KNOT_URL), with stdin empty. Properties: no exception other than
argparse's SystemExit leaves `main`; nothing prints a traceback; a failure exits non-zero with
its reason on stderr as one line starting with `knot` (usage errors included); and a command
that failed changed nothing in the runtime.

Some arguments are only parsed, never run: `serve` (it would serve until stopped), `kernel`
(it writes kernelspecs for the user), `events --follow` (it follows until stopped), a space
command or health check that is not from the harmless list (a space's `cmd` is a real shell
command), and `check`/`run` paths outside the test's folder (so nothing walks the disk).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from knot.cli import build_parser, main

from .fuzz_server import ADMIN_TOKEN, FuzzTarget
from .fuzzing import SAFE_COMMANDS, SAFE_HEALTH, event_types, fuzz, texts

NOT_RUN = {"serve", "kernel"}
SCRIPT_PROBLEM = re.compile(r".+:\d+:\d+: \S")


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command of the parser, with the options and choices it takes."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    yield prefix, parser  # the group itself, without an action
    for action in subs:
        for name, child in action.choices.items():
            yield from commands(child, (*prefix, name))


COMMANDS = [c for c in commands(build_parser()) if c[0]]


def words(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        out.extend(action.option_strings)
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            out.extend(str(c) for c in action.choices)
    return out or ["--help"]


KNOWN_VALUES = [
    "rec", "echo", "custom.fuzz.x", "fuzz.x", "*", "custom.*", "{}", '{"a": 1}', "[1]", "null",
    "-1", "0", "5", "1e9", "ok.py", "scripts", "scripts/sinks/ok.py", "web", "none", "",
    "fuzzm.echo", "fuzzm.boom", "fuzzm.count", "rpc.x", '{"a": NaN}',
]  # fmt: skip


def tokens(parser: argparse.ArgumentParser) -> st.SearchStrategy[list[str]]:
    token = st.one_of(
        st.sampled_from(words(parser)),
        st.sampled_from(KNOWN_VALUES),
        event_types,
        texts.filter(lambda t: "\x00" not in t),  # argv cannot hold NUL
    )
    return st.lists(token, max_size=6)


@contextlib.contextmanager
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        sys.stdin = stdin


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    with captured() as (out, err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return code, out.getvalue(), err.getvalue()


def runnable(argv: list[str]) -> bool:
    """Whether running these arguments is harmless (see the module's docstring)."""
    with captured():
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            return True  # a usage error or --help: nothing runs
    if argv and argv[0] in NOT_RUN:
        return False
    if getattr(args, "follow", False):
        return False
    if getattr(args, "cmd", "") not in SAFE_COMMANDS:
        return False
    if getattr(args, "health", "") not in SAFE_HEALTH:
        return False
    paths = [*getattr(args, "paths", []), getattr(args, "script", ""), getattr(args, "project", "")]
    return not any(str(p).startswith(("/", "~")) or ".." in str(p) for p in paths)


def check_outcome(argv: list[str], code: int, stderr: str) -> None:
    where = f"knot {argv!r} exited {code}:\n{stderr}"
    assert "Traceback" not in stderr, where
    assert '  File "' not in stderr, where
    if code == 0:
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, where
    if argv[:1] == ["check"]:
        return  # `knot check` lists each problem on a line of its own, then a summary
    if argv[:1] == ["run"] and all(SCRIPT_PROBLEM.match(line) for line in lines):
        return  # a script that does not load: its problems as `file:line:col: rule`
    if lines[-1].endswith(": choose one of the actions above."):
        return  # a command group without its action: the group's help, then this line
    assert len(lines) == 1, where
    (line,) = lines
    assert line.startswith("knot"), where
    assert len(line) > 20, where


@pytest.fixture
def workdir(tmp_path: Path, fuzz_target: FuzzTarget, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a sink script to check and run, and KNOT_URL at the fuzz target."""
    (tmp_path / "scripts" / "sinks").mkdir(parents=True)
    (tmp_path / "scripts" / "sinks" / "ok.py").write_text("# events: *\nprint('ok')\n")
    (tmp_path / "ok.py").write_text("# events: *\nimport os\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KNOT_URL", fuzz_target.server.url)
    monkeypatch.setenv("KNOT_TOKEN", ADMIN_TOKEN)
    fuzz_target.restore()
    return tmp_path


@pytest.mark.parametrize("command", [c for c, _ in COMMANDS], ids=" ".join)
def test_command_survives_fuzzed_arguments(
    workdir: Path, fuzz_target: FuzzTarget, command: tuple[str, ...]
) -> None:
    parser = dict(COMMANDS)[command]

    @fuzz(12)
    @given(rest=tokens(parser))
    @example(rest=[])
    @example(rest=["--help"])
    def one(rest: list[str]) -> None:
        argv = [*command, *rest]
        if not runnable(argv):
            with captured() as (_, err), contextlib.suppress(SystemExit):
                build_parser().parse_args(argv)
            assert "Traceback" not in err.getvalue()
            return
        before = fuzz_target.state()
        mark = fuzz_target.log_mark()
        code, _, stderr = run_cli(argv)
        check_outcome(argv, code, stderr)
        if code != 0:
            assert fuzz_target.state() == before, argv
        assert fuzz_target.log_problems(mark) == [], argv

    one()


@fuzz(20)
@given(argv=st.lists(st.one_of(texts.filter(lambda t: "\x00" not in t), event_types), max_size=4))
def test_any_arguments_at_the_top(workdir: Path, argv: list[str]) -> None:
    if not runnable(argv):
        return
    code, _, stderr = run_cli(argv)
    check_outcome(argv, code, stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["event", "x", "[1]"],
        ["event", "a..b"],
        ["events", "-n", "x"],
        ["events", "sp*"],
        ["run", "missing.py", "--event", "x"],
        ["sinks", "nope"],
        ["space", "start", "nope"],
    ],
)
def test_a_real_knot_process_fails_in_one_line(
    workdir: Path, fuzz_target: FuzzTarget, argv: list[str]
) -> None:
    """The same properties from a real `knot` process (no stdin, real exit code)."""
    env = {**os.environ, "KNOT_URL": fuzz_target.server.url, "KNOT_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "knot.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode != 0
    check_outcome(argv, done.returncode, done.stderr)
