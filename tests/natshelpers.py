"""A real nats-server with JetStream on a free loopback port, for the cluster's tests.

Debian's `nats-server` package provides the binary (`.ci/run` and `make` install it when it
is missing). A missing binary fails the test that needs it: cluster tests never skip.
"""

from __future__ import annotations

import contextlib
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

    def __init__(
        self, folder: Path, *, port: int = 0, cluster: str = "", max_payload: str = "4MB"
    ) -> None:
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
            f"server_name: n{self.port}\n"
            f"max_payload: {max_payload}\n"
            f'jetstream {{ store_dir: "{folder / "js"}" }}\n{cluster}',
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


class Proxy:
    """A TCP forwarder on loopback in front of a NATS server: `cut()` cuts one node off
    (every connection dropped, new ones refused) while the others keep their server."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def restore(self) -> None:
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the accept() blocked on it; close() alone would not, and the
            # kernel would go on accepting for it.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()


class NatsCluster:
    """Three nats-servers with JetStream in one NATS cluster (routes on loopback ports)."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        ports = [free_port() for _ in range(size)]
        routes = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for i in range(size):
            others = ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes if r != routes[i])
            block = f"cluster {{ name: knot, listen: 127.0.0.1:{routes[i]}, routes: [{others}] }}\n"
            self.servers.append(NatsServer(folder / f"s{i}", port=ports[i], cluster=block))

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
