"""The fenced code blocks of the documentation, and a session that runs them as a reader would.

The convention (docs/architecture.md, "The documentation"): every `sh`, `console` and `python`
block is run; `toml` blocks must be valid knot.toml, `json` blocks valid JSON. An HTML comment
on the line before a block changes what is done with it:

- `<!-- test: skip REASON -->`: not run (a reason is required: there is no silent skipping);
- `<!-- test: file PATH -->`: the block is the text of PATH in the project (a script a later
  block uses); it is written there, not run;
- `<!-- test: serve -->`: a `knot serve` runs on the project before the block (as in the
  reader's other terminal); it keeps running for the page's next blocks;
- `<!-- test: background -->`: the block itself starts the runtime (`knot serve ...`); it runs in
  the background and the next block waits until it answers; `<!-- test: background PORT -->`
  starts another program the page needs (a webhook receiver), ready once PORT takes
  connections; all of them are stopped when the page ends;
- `<!-- test: pytest -->`: the block is a test file, run with pytest in the project.

A page's blocks run in order, in one fresh copy of the repository's example project (its
`knot.toml`, `scripts/` and `examples/`, with `.venv` pointing at the test's environment).
`KNOT_API_PORT` is a free port, and `127.0.0.1:12201` in a block is replaced by it: the one
change made to what a block says.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from knot import parse_config

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r"<!--\s*test:\s*(\w+)\s*(.*?)\s*-->")
DIRECTIVES = frozenset({"skip", "file", "serve", "background", "pytest"})
RUN = frozenset({"sh", "console", "python"})  # what "every example is executed" covers
CHECKED = frozenset({"toml", "json"})
DEFAULT_PORT = re.compile(r"(127\.0\.0\.1|localhost):12201\b")
TIMEOUT = 120.0
SENTINEL = "--- end of the command of the example ---"
RELOADED = re.compile(r"(loaded|reloaded|kept|removed) .*(sink|method script)|knot\.toml")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directive: str = ""
    argument: str = ""

    @property
    def where(self) -> str:
        shown = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{shown}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, with the directive written before each."""
    lines = page.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+)\s*([\w+-]*)", lines[i])
        if fence is None:
            i += 1
            continue
        indent, ticks, language = fence.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        match = DIRECTIVE.fullmatch(before.strip())
        directive, argument = match.groups() if match else ("", "")
        found.append(Block(page, i + 1, language, body, directive, argument))
        i = end + 1
    return found


def problems(block: Block) -> list[str]:
    """What is wrong with a block's directive (a skip without its reason, say)."""
    if not block.directive:
        return []
    if block.directive not in DIRECTIVES:
        return [f"{block.where}: unknown directive {block.directive!r}; use {sorted(DIRECTIVES)}"]
    if block.directive in ("skip", "file") and not block.argument:
        what = "a reason" if block.directive == "skip" else "a path"
        return [f"{block.where}: `test: {block.directive}` needs {what}"]
    if block.directive in ("serve", "background", "pytest") and block.language not in RUN:
        return [f"{block.where}: `test: {block.directive}` on a {block.language or 'plain'} block"]
    return []


@dataclass
class Session:
    """One page's run: a fresh project, its environment, and the runtime it started."""

    folder: Path
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("scripts", "examples"):
            shutil.copytree(ROOT / name, self.folder / name, ignore=_ignored)
        shutil.copy2(ROOT / "knot.toml", self.folder / "knot.toml")
        (self.folder / ".venv").symlink_to(Path(sys.prefix))
        (self.folder / "home").mkdir()

    @property
    def env(self) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("KNOT_", "OTEL_", "COLUMNS"))
        }
        return {
            **inherited,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.folder / "home"),
            "KNOT_API_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }

    def run(self, block: Block) -> None:
        text = DEFAULT_PORT.sub(rf"\g<1>:{self.port}", block.text)
        if block.directive == "skip":
            return
        if block.directive == "file":
            target = self.folder / block.argument
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            return
        if block.directive == "serve" and self.server is None:
            self.start(["knot", "serve", "--project", "."], block)
        if block.directive == "background" and block.argument:
            self.helper(["bash", "-c", text], block, int(block.argument))
            return
        if block.directive == "background":
            self.stop_server()
            self.start(["bash", "-c", text], block)
            return
        if block.directive == "pytest":
            test = self.folder / "tests" / f"test_doc_{block.line}.py"
            test.parent.mkdir(exist_ok=True)
            test.write_text(text, encoding="utf-8")
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
            self.check(block, self.call(command, block))
        elif block.language == "sh":
            self.check(block, self.call(["bash", "-euo", "pipefail", "-c", text], block))
        elif block.language == "python":
            script = self.folder / f"_doc_block_{block.line}.py"
            script.write_text(text, encoding="utf-8")
            self.check(block, self.call([sys.executable, str(script)], block))
        elif block.language == "console":
            self.transcript(block, text)
        elif block.language == "toml":
            result = parse_config(block.text, path=block.where)
            assert [*result.errors, *result.warnings] == [], block.where
        elif block.language == "json":
            json.loads(block.text)

    def call(self, command: list[str], block: Block) -> subprocess.CompletedProcess[str]:
        """Run a command to its end (in a process group of its own, so that whatever it
        started is ended with it if it runs too long)."""
        process = subprocess.Popen(
            command,
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"{block.where}: still running after {TIMEOUT} s") from None
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    def check(self, block: Block, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise AssertionError(
                f"{block.where}: the example exited {done.returncode}:\n{block.text}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}{self.server_log()}"
            )

    def transcript(self, block: Block, text: str) -> None:
        """`$ command` lines run one by one in one shell (a variable set by one is there for
        the next); the lines after each are its expected output, where `...` (or `…`) stands
        for any text and a run of spaces for any run. Between commands the session settles,
        as a reader's pace lets it."""
        shell = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(shell, lines), daemon=True).start()
        assert shell.stdin is not None
        try:
            shell.stdin.write("exec 2>&1\n")
            for command, expected in _commands(text):
                self.settle()
                before = _snapshot(self.folder)
                shell.stdin.write(f"{command}\necho; echo '{SENTINEL}'\n")
                shell.stdin.flush()
                shown = _read_until_sentinel(lines, block, command).rstrip()
                if _snapshot(self.folder) != before:
                    self.wait_for_reload(block)
                assert _matches(expected, shown), (
                    f"{block.where}: `{command}` printed\n{shown}\n--- but the page shows\n"
                    f"{expected}{self.server_log()}"
                )
        finally:
            os.killpg(shell.pid, signal.SIGKILL)  # the shell and anything left of its commands
            shell.wait()

    def settle(self) -> None:
        """Wait (up to 30 s) until the runtime's sinks have handled what was raised, as the
        seconds a reader takes between two commands would."""
        if self.server is None:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                sinks = httpx.get(f"http://127.0.0.1:{self.port}/api/sinks", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return  # no runtime answering: the next command will say so itself
            if not any(sink.get("pending") for sink in sinks.get("sinks", [])):
                return
            time.sleep(0.05)

    def wait_for_reload(self, block: Block) -> None:
        """After a command changed a file the runtime watches: wait until its log says it
        applied the change (a reader sees that line in the runtime's terminal)."""
        if self.server is None or self.log is None:
            return
        seen = self.log.read_text(errors="replace").count("\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            new = self.log.read_text(errors="replace").split("\n")[seen:]
            if any(RELOADED.search(line) for line in new):
                return
            time.sleep(0.02)
        raise AssertionError(f"{block.where}: the runtime did not reload{self.server_log()}")

    def start(self, command: list[str], block: Block) -> None:
        self.log = self.folder / f"serve-{block.line}.log"
        with self.log.open("wb") as out:
            self.server = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"{block.where}: the runtime exited{self.server_log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{block.where}: no runtime answered in 60 s{self.server_log()}")

    def server_log(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n--- knot serve\n" + self.log.read_text(errors="replace")[-4000:]

    def helper(self, command: list[str], block: Block, port: int) -> None:
        log = (self.folder / f"helper-{block.line}.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.helpers.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{block.where}: nothing listened on port {port}")

    def stop_server(self) -> None:
        if self.server is not None:
            _terminate(self.server)
        self.server = None

    def stop(self) -> None:
        self.stop_server()
        for process in self.helpers:
            _terminate(process)
        self.helpers.clear()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (the shell and what it started), SIGKILL if it stays."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def _commands(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console transcript."""
    pairs: list[tuple[str, list[str]]] = []
    lines = iter(text.rstrip("\n").split("\n"))
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):  # the shell joins the lines itself
                command += "\n" + next(lines)
            pairs.append((command, []))
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"a console block starts with output, not `$ `: {line!r}")
    return [(c, "\n".join(out).rstrip()) for c, out in pairs]


def _matches(expected: str, shown: str) -> bool:
    """Whether output matches what a page shows: `...` or `…` stand for any text, and a run of
    spaces for any run (a table's columns may widen)."""
    parts = re.split(r"\.\.\.|…", re.sub(r"[ \t]+", " ", expected))
    pattern = ".*?".join(re.escape(part) for part in parts)
    return re.fullmatch(pattern, re.sub(r"[ \t]+", " ", shown), flags=re.S) is not None


def _pump(shell: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert shell.stdout is not None
    for line in shell.stdout:
        lines.put(line)


def _read_until_sentinel(lines: queue.Queue[str], block: Block, command: str) -> str:
    out: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            message = f"{block.where}: `{command}` still running after {TIMEOUT} s"
            raise AssertionError(message) from None
        if line.rstrip("\n") == SENTINEL:
            return "".join(out)
        out.append(line)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The files a runtime watches: the scripts folder and knot.toml."""
    watched = [folder / "knot.toml", *sorted((folder / "scripts").rglob("*"))]
    return {str(p): p.read_bytes() for p in watched if p.is_file()}


def _ignored(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in ("__pycache__", ".knot") or n.endswith(".log")}
