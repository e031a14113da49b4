"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread, recording requests.

Each path answers 200 unless told otherwise with `plan(path, answers)`: a list of statuses (or
HANG, which holds the request open until the receiver closes) used one per request, in order.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = -1
CLOSE = -2  # answer 200, then drop the connection without saying so (a stale keep-alive)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # which TCP connection (per receiver) carried it

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self._plans: dict[str, deque[int]] = {}
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._connections = 0
        self.set_cookie: str | None = None  # sent as Set-Cookie with every answer when set
        self.delay = 0.0  # seconds each answer waits after the request is recorded (slow hooks)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections += 1
                    self.connection_number = receiver._connections

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    plan = receiver._plans.get(self.path)
                    answer = plan.popleft() if plan else 200
                    receiver.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            self.connection_number,
                        )
                    )
                    receiver._lock.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                if answer == HANG:
                    receiver._release.wait(30)
                    self.close_connection = True
                    return
                status = 200 if answer == CLOSE else answer
                reply = json.dumps({"received": self.path, "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                if receiver.set_cookie is not None:
                    self.send_header("Set-Cookie", receiver.set_cookie)
                self.end_headers()
                self.wfile.write(reply)
                if answer == CLOSE:
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, answers: list[int]) -> None:
        with self._lock:
            self._plans[path] = deque(answers)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} of {count} requests arrived at {path}")
                self._lock.wait(left)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
