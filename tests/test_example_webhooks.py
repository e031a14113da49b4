"""examples/webhooks, as its README runs it: `knot serve`, `knot sinks add|test`, the receiver."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import KnotServer, run_knot

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "webhooks"


class ExampleReceiver:
    def __init__(self, port: int, secret: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "receiver.py"), str(port), secret],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("listening on")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in {self.lines}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KnotServer]:
    srv = KnotServer(tmp_path)
    yield srv
    srv.kill()


def test_the_example_receiver_verifies_both_signatures(server: KnotServer) -> None:
    env = {"KNOT_API_PORT": str(server.port)}
    port = free_port()
    template = '{"app": "${{ .event.type }}", "version": ${{ json .event.data.version }}}'
    added = run_knot(
        "sinks",
        "add",
        "deploy_hook",
        "--events",
        "custom.myapp.*",
        "--url",
        f"http://127.0.0.1:{port}/hook",
        "--template",
        template,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    secret = added.stdout.splitlines()[-1]
    receiver = ExampleReceiver(port, secret)
    try:
        test = run_knot("sinks", "test", "deploy_hook", "--data", '{"version": "0.1"}', env=env)
        assert test.returncode == 0, test.stderr
        assert test.stdout.rstrip().endswith('HTTP 200 OK: {"ok": true}')
        line = receiver.wait_for("custom.knot.test")
        assert line.startswith("verified custom.knot.test ")
        assert line.endswith('{"app": "custom.knot.test", "version": "0.1"}')
        event_id = run_knot("event", "myapp.deployed", '{"version": "1.2"}', env=env).stdout.strip()
        line = receiver.wait_for(event_id)
        assert line == (
            f"verified custom.myapp.deployed {event_id} "
            '{"app": "custom.myapp.deployed", "version": "1.2"}'
        )
    finally:
        receiver.stop()
    impostor = ExampleReceiver(port, "whsec_" + "A" * 44)
    try:
        test = run_knot("sinks", "test", "deploy_hook", env=env)
        assert test.returncode == 1
        assert re.search(r"answered HTTP 401 Unauthorized: \{\"ok\": false\}", test.stderr)
        assert impostor.wait_for("REJECTED").startswith("REJECTED custom.knot.test ")
    finally:
        impostor.stop()


def test_the_example_receiver_answers_without_waiting_on_delayed_acks() -> None:
    # It answered ~23 requests/s on one keep-alive connection: the headers and the body went
    # out as two writes, and Nagle held the second until the client's delayed ACK (~40 ms).
    secret = "s3cret"
    port = free_port()
    receiver = ExampleReceiver(port, secret)
    body = b'{"n": 1}'
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            http.post("/hook", content=body)  # the connection, opened once
            started = time.monotonic()
            for _ in range(40):
                answer = http.post("/hook", content=body, headers={"X-Knot-Signature": signature})
                assert answer.status_code == 401  # no Standard Webhooks signature: refused
            took = time.monotonic() - started
    finally:
        receiver.stop()
    assert took < 0.8, f"40 requests took {took:.2f} s ({40 / took:.0f}/s)"
