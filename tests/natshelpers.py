"""A real nats-server with JetStream on a free loopback port, for the cluster's tests.

Debian's `nats-server` package provides the binary (`.ci/run` and `make` install it when it
is missing). A missing binary fails the test that needs it: cluster tests never skip.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

_unique = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """`nats-server -js` on 127.0.0.1, storing in `folder`; `restart()` keeps its data."""

    def __init__(self, folder: Path, *, port: int = 0) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError(
                "nats-server is not installed: apt-get install nats-server (make test and "
                ".ci/run do it when run as root)."
            )
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "nats.conf"
        self.config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "max_payload: 4MB\n"
            f'jetstream {{ store_dir: "{folder / "js"}" }}\n',
            encoding="utf-8",
        )
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "server.log").open("ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nats-server exited: {self.log()}") from None
                time.sleep(0.02)
        raise RuntimeError(f"nats-server did not listen on {self.port}: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def unique_prefix() -> str:
    """Streams of their own for each test on a shared server."""
    return f"T{next(_unique)}x{int(time.time() * 1000) % 100000}"
