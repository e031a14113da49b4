"""Test helpers that start real parts: `knot serve` subprocesses on free loopback ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

_READY = re.compile(r"serving .* on http://(127\.0\.0\.1):(\d+)")


class KnotServer:
    """`knot serve --port 0` in a subprocess; `url` is known once it is listening."""

    def __init__(
        self,
        project: Path,
        *,
        env: dict[str, str] | None = None,
        quiet: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.project = project
        self.lines: list[str] = []
        self.url = ""
        args = [sys.executable, "-m", "knot.cli", "serve", "--project", str(project), "--port", "0"]
        if quiet:
            args.append("--quiet")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=preexec_fn,  # e.g. resource limits for the store-fault tests
        )
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.kill()
            raise RuntimeError("knot serve did not start:\n" + "\n".join(self.lines))
        if not self.url:
            raise RuntimeError("knot serve exited:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _READY.search(line)
            if match and not self.url:
                self.url = f"http://{match.group(1)}:{match.group(2)}"
                self._ready.set()
        self._ready.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output()}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up (the crash the journal must survive)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self._reader.join(5)
        return code


def start_server(project: Path, **kwargs: object) -> KnotServer:
    return KnotServer(project, **kwargs)  # type: ignore[arg-type]


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def run_knot(
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The `knot` command in a subprocess, with no KNOT_* variables but those in `env` (and
    KNOT_API_PORT when `port` is given)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KNOT_")}
    if port is not None:
        base["KNOT_API_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-m", "knot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        cwd=cwd,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_on(project: Path, port: int) -> subprocess.Popen[bytes]:
    """`knot serve` on a fixed port, quiet (a restart must come back where clients wait)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "knot.cli", "serve", "--project", str(project), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("knot serve did not start")
