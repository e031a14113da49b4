"""`knot serve` stops its runtime on SIGTERM and SIGINT instead of dying on the spot."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .helpers import KnotServer, run_knot

SHUTDOWN_TROUBLE = ("Traceback", "Exception in ASGI application", "graceful shutdown exceeded")


def sigterm_during(
    server: KnotServer, request: Callable[[httpx.Client], httpx.Response], *, ready: str = ""
) -> httpx.Response:
    """Send `request` from a thread, SIGTERM the server while it is in flight (once `ready`
    is in the log, or after a second), and return its answer; it must come within 2 s and the
    server must stop cleanly, with no traceback in its output."""
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        asking = threading.Thread(target=lambda: answers.append(request(http)), daemon=True)
        asking.start()
        if ready:
            server.wait_for_line(ready)
        else:
            time.sleep(1.0)
        assert asking.is_alive()
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        asking.join(15)
        answered = time.monotonic() - signalled
    assert server.terminate() == 0
    assert answered < 2.0, f"answered {answered:.1f} s after SIGTERM"
    output = server.output()
    for bad in SHUTDOWN_TROUBLE:
        assert bad not in output, output
    (answer,) = answers
    return answer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_runtime_and_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    server = KnotServer(tmp_path)
    server.proc.send_signal(sig)
    # uvicorn re-raises the signal after its own shutdown; with the default handler back that
    # would end the process (exit -15) before the runtime and its spaces were stopped.
    assert server.proc.wait(15) == 0


def test_sigterm_ends_an_open_event_stream_at_once_and_cleanly(tmp_path: Path) -> None:
    # `knot events --follow` holds /api/events/stream open; an answer that never ends by itself
    # used to hold the shutdown for uvicorn's 3 s graceful timeout, then be cancelled mid-wait
    # ("Exception in ASGI application" and a CancelledError traceback in the log).
    server = KnotServer(tmp_path)
    with (
        httpx.Client(base_url=server.url, timeout=30) as http,
        http.stream("GET", "/api/events/stream") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        rest = list(lines)  # the server ends the answer: a complete, chunked body
        ended = time.monotonic() - signalled
    assert server.terminate() == 0
    assert ended < 2.0, f"the stream ended {ended:.1f} s after SIGTERM"
    assert all(line.startswith(":") or not line for line in rest)
    output = server.output()
    for bad in SHUTDOWN_TROUBLE:
        assert bad not in output, output


def test_sigterm_answers_a_waiting_sky_event_at_once_with_its_sinks_pending(
    tmp_path: Path,
) -> None:
    # A synchronous Sky event waits (up to delivery.sync_timeout) for its sinks; at shutdown
    # it is answered with what is done instead of being cancelled after the graceful timeout.
    (tmp_path / "knot.toml").write_text(
        '[delivery]\nsync_timeout = 30\n\n[[sinks]]\nname = "slow"\ntype = "recording"\n'
        'events = "*"\ndelay = 20\n'
    )
    server = KnotServer(tmp_path)
    assert run_knot("channel", "create", "--eci", "demo", port=server.port).returncode == 0
    answer = sigterm_during(
        server,
        lambda http: http.post("/sky/event/demo/e1/app/hi"),
        ready=r"custom\.app\.hi .* → slow",
    )
    assert answer.status_code == 200
    assert answer.json()["pending"] == ["slow"]


def test_sigterm_answers_a_json_rpc_call_in_flight_with_503(tmp_path: Path) -> None:
    (tmp_path / "knot.toml").write_text("[methods]\ntimeout = 60\n")
    (tmp_path / "scripts" / "methods").mkdir(parents=True)
    (tmp_path / "scripts" / "methods" / "slow.py").write_text(
        "import time\nimport knot.methods\n\n\n@knot.methods.method\ndef nap(params):\n"
        "    time.sleep(20)\n    return 'rested'\n"
    )
    server = KnotServer(tmp_path)
    body = {"jsonrpc": "2.0", "id": 7, "method": "slow.nap", "params": {}}
    # The call is in the worker after a second (its print would show only once it returns).
    answer = sigterm_during(server, lambda http: http.post("/json-rpc", json=body))
    assert answer.status_code == 503
    assert answer.json()["error"]["message"].startswith("The runtime is stopping")


def test_ctrl_c_at_any_moment_of_start_up_prints_no_traceback(tmp_path: Path) -> None:
    # A Ctrl-C in the first ~0.3 s landed while `knot` was still importing the runtime (a
    # KeyboardInterrupt traceback), and one a little later while uvicorn started ("knot serve
    # stopped: Bad file descriptor."). Every moment after the interpreter's own start-up (a
    # few milliseconds no program controls) must end quietly: 130, or 0 once serving, or
    # killed by SIGINT (Python does that when a KeyboardInterrupt crossed a C extension's
    # module init, as uvloop's, even though `knot` caught it: what shells show as 130).
    command = [sys.executable, "-m", "knot.cli", "serve", "--project", str(tmp_path), "--port", "0"]
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import runpy"], check=True)
    python_start = time.monotonic() - started
    for delay in (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.7):
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        time.sleep(python_start * 1.5 + delay)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode in (0, 130, -signal.SIGINT), f"after {delay} s:\n{output}"
        assert "Traceback" not in output, f"after {delay} s:\n{output}"
        assert "knot serve stopped" not in output, f"after {delay} s:\n{output}"
