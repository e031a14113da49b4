"""A real HTTP server for scripts' `requests`: on loopback, in a thread, recording each request.

Routes (any method):
    /echo            200, JSON of what arrived: method, path, headers, body
    /status/N        answers N
    /redirect?to=URL&code=302    a redirect to URL
    /loop            a redirect to itself
    /slow?seconds=S  waits S seconds, then answers 200
    /trickle         sends its headers, then one byte every 0.1 s until the client leaves
    /big?bytes=N     N bytes of "x" (with a Content-Length)
    /chunked?bytes=N N bytes in 64 KiB chunks without a Content-Length
    /gzip?bytes=N    N zero bytes, gzip-compressed (a bomb: a few KB on the wire)
    /cookie          sets a cookie
    /secret?value=V  echoes V in its body (a server that repeats a token back)
`closed` counts connections the client closed while /slow or /trickle was answering.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def _gzip_zeros(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed a MiB at a time (the server never holds them all)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    parts = [
        packer.compress(zeros[: min(len(zeros), size - start)])
        for start in range(0, size, len(zeros))
    ]
    return b"".join([*parts, packer.flush()])


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Origin:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Seen] = []
        self.closed = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with origin._lock:
                    origin.requests.append(
                        Seen(
                            self.command,
                            url.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    origin._lock.notify_all()
                route = url.path.split("/")[1] if "/" in url.path else ""
                getattr(self, f"_route_{route}", self._route_echo)(url.path, query, body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route_echo(self, path: str, query: dict[str, str], body: bytes) -> None:
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
                self._send(200, json.dumps(seen).encode())

            def _route_status(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(int(path.split("/")[2]), b'{"status": "as asked"}')

            def _route_redirect(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(int(query.get("code", "302")), b"", {"Location": query["to"]})

            def _route_loop(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(302, b"", {"Location": "/loop"})

            def _route_slow(self, path: str, query: dict[str, str], body: bytes) -> None:
                until = time.monotonic() + float(query.get("seconds", "30"))
                while time.monotonic() < until and not origin._stop.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        with origin._lock:  # the client hung up while we made it wait
                            origin.closed += 1
                            origin._lock.notify_all()
                        self.close_connection = True
                        return
                self._send(200, b'{"slow": true}')

            def _route_trickle(self, path: str, query: dict[str, str], body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    while not origin._stop.wait(0.1):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    with origin._lock:
                        origin.closed += 1
                        origin._lock.notify_all()
                self.close_connection = True

            def _route_big(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(200, b"x" * int(query["bytes"]), {"Content-Type": "text/plain"})

            def _route_chunked(self, path: str, query: dict[str, str], body: bytes) -> None:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                left = int(query["bytes"])
                try:
                    while left > 0:
                        part = min(left, 65536)
                        self.wfile.write(f"{part:x}\r\n".encode() + b"x" * part + b"\r\n")
                        left -= part
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True

            def _route_gzip(self, path: str, query: dict[str, str], body: bytes) -> None:
                packed = _gzip_zeros(int(query["bytes"]))
                self._send(200, packed, {"Content-Type": "text/plain", "Content-Encoding": "gzip"})

            def _route_cookie(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(200, b"{}", {"Content-Type": "application/json", "Set-Cookie": "sid=s1"})

            def _route_secret(self, path: str, query: dict[str, str], body: bytes) -> None:
                self._send(200, json.dumps({"echo": query.get("value", "")}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str = "/echo") -> str:
        return f"http://{self.netloc}{path}"

    def at(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_closed(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.closed < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.closed} of {count} connections were closed")
                self._lock.wait(left)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
