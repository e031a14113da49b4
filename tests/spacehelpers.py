"""Helpers for the spaces tests: a loopback HTTP server that can stop answering, waits, and
the exact payload fields of Knot's system events."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

import psutil

# Knot's system events table: exactly these payload fields, per event type.
KNOT_FIELDS: dict[str, set[str]] = {
    "space.created": {"space_name", "space_id", "space_urls", "template_id", "startup_script_id"},
    "space.started": {"space_name", "space_id", "space_urls", "node_id", "started_at"},
    "space.stopped": {"space_name", "space_id", "stopped_at"},
    "space.deleted": {"space_name", "space_id", "deleted_at"},
    "space.healthy": {"space_name", "space_id", "previous", "current", "checked_at"},
    "space.unhealthy": {
        "space_name",
        "space_id",
        "previous",
        "current",
        "consecutive_failures",
        "checked_at",
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def parse_ts(value: object) -> datetime:
    assert isinstance(value, str)
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class ToggleServer:
    """A loopback HTTP server on a fixed port that can stop answering (socket closed: refused
    connections) and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def process_alive(pid: int) -> bool:
    """A live (non-zombie) process: zombies linger where nobody reaps them."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """Live members of a process group."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members
