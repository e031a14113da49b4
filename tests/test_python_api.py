"""The embeddable Python API: SyncRuntime, knot.event.emit, and the client's --follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import knot
import knot.event
from knot import RuntimeUnavailable, SyncRuntime

from .conftest import recording
from .helpers import KnotServer, free_port, serve_on, wait_until


@pytest.fixture(autouse=True)
def _default_emitter() -> Iterator[None]:
    knot.event.use(None)
    yield
    knot.event.use(None)


def test_sync_runtime_emits_and_lists(project: Path) -> None:
    with SyncRuntime(project) as rt:
        sink = recording("rec")
        rt.add_sink(sink)
        event_id = rt.emit("sync.hello", {"n": 1})
        report = rt.emit_and_wait("sync.hello", {"n": 2}, timeout=5)
        rt.wait_idle()
        assert [e.data["n"] for e in sink.events] == [1, 2]
        assert report.outcomes["rec"].status is knot.DeliveryStatus.DELIVERED
        assert rt.events("custom.sync.*")[0].id == event_id
        assert [s.name for s in rt.sinks()] == ["rec"]
        assert rt.audit_entries() == []
    with pytest.raises(knot.RuntimeClosed):
        rt.emit("after.close")


def test_knot_event_emit_reaches_a_running_runtime(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = KnotServer(project, quiet=True)
    try:
        monkeypatch.setenv("KNOT_API_PORT", str(server.port))
        event_id = knot.event.emit("plain.python", {"from": "a script"})
        with server.client() as http:
            got = http.get(f"/api/events/{event_id}").json()
        assert got["type"] == "custom.plain.python"
        assert got["data"] == {"from": "a script"}
    finally:
        server.kill()


def test_nan_is_the_same_event_error_over_http_as_embedded(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SyncRuntime(project) as rt:
        knot.event.use(rt)
        with pytest.raises(knot.EventError) as embedded:
            knot.event.emit("x", {"a": float("nan")})
    server = KnotServer(project, quiet=True)
    try:
        monkeypatch.setenv("KNOT_API_PORT", str(server.port))
        knot.event.use(None)
        with pytest.raises(knot.EventError) as over_http:
            knot.event.emit("x", {"a": float("nan")})
        with pytest.raises(knot.MethodFailed) as call:
            knot.Client().call("a.b", {"a": float("inf")})
        with server.client() as http:
            assert http.get("/api/events").json()["events"] == []
    finally:
        server.kill()
    assert str(over_http.value) == str(embedded.value)
    assert over_http.value.event_type == embedded.value.event_type
    assert call.value.code == -32602
    assert "not JSON" in str(call.value)


def test_knot_event_emit_uses_an_in_process_runtime(project: Path) -> None:
    with SyncRuntime(project) as rt:
        knot.event.use(rt)
        event_id = knot.event.emit("in.process", {"k": 1})
        assert rt.events("custom.in.process")[0].id == event_id


def test_knot_event_emit_without_a_runtime_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KNOT_API_PORT", "1")
    with pytest.raises(
        RuntimeUnavailable, match=r"No knot runtime answers at http://127\.0\.0\.1:1;"
    ):
        knot.event.emit("nowhere")


def test_events_follow_prints_new_events(project: Path) -> None:
    server = KnotServer(project, quiet=True)
    env = {**os.environ, "KNOT_API_PORT": str(server.port)}
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "knot.cli",
            "events",
            "custom.follow.*",
            "-n",
            "0",
            "--follow",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []), daemon=True)
    reader.start()
    sent: list[str] = []
    try:
        with server.client() as http:
            # With no history (-n 0) any line can only come from the live stream; raise events
            # until the follower has connected and printed one.
            deadline = time.monotonic() + 20
            while not lines and time.monotonic() < deadline:
                http.post("/event", json={"type": "other.noise", "payload": {}})
                sent.append(
                    http.post("/event", json={"type": "follow.me", "payload": {}}).json()["id"]
                )
                time.sleep(0.1)
        assert lines, "the follower printed nothing"
        got = json.loads(lines[0])
        assert got["type"] == "custom.follow.me"
        assert got["id"] in sent
    finally:
        follower.kill()
        follower.wait(5)
        server.kill()


def test_every_public_name_resolves_though_the_package_imports_lazily() -> None:
    # `import knot` imports no submodule (so the command catches an early Ctrl-C); each public
    # name comes from its module on first use.
    lazy = {n for n in knot.__all__ if not n.endswith("load_ipython_extension")}
    assert lazy == set(knot._EXPORTS)
    for name in knot.__all__:
        assert getattr(knot, name) is not None
    assert set(knot.__all__) <= set(dir(knot))
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        knot.Nope  # noqa: B018


def test_events_follow_waits_for_a_restarted_runtime_and_catches_up(project: Path) -> None:
    # `knot events --follow` exited 0 without a word when the runtime stopped (a restart
    # ended it). It now says so, waits, and shows what was raised while it was away.
    port = free_port()
    server = serve_on(project, port)
    follower = subprocess.Popen(
        [sys.executable, "-m", "knot.cli", "events", "f.*", "-n", "0", "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KNOT_API_PORT": str(port)},
    )
    out: list[str] = []
    err: list[str] = []
    threading.Thread(target=lambda: out.extend(follower.stdout or []), daemon=True).start()
    threading.Thread(target=lambda: err.extend(follower.stderr or []), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url) as http:
            deadline = time.monotonic() + 20
            while not out and time.monotonic() < deadline:  # until the follower is connected
                http.post("/event", json={"type": "f.before", "payload": {}})
                time.sleep(0.1)
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
        wait_until(lambda: any("ended the stream" in line for line in err))
        assert follower.poll() is None, "the follower gave up"
        server = serve_on(project, port)
        with httpx.Client(base_url=url) as http:  # raised before the follower is back
            missed = http.post("/event", json={"type": "f.missed", "payload": {}}).json()["id"]
            wait_until(lambda: any("answers again" in line for line in err))
            live = http.post("/event", json={"type": "f.after", "payload": {}}).json()["id"]
            wait_until(lambda: live in "".join(out))
        ids = [json.loads(line)["id"] for line in out]
        assert ids.index(missed) < ids.index(live)
        assert len(ids) == len(set(ids))  # caught up without repeats
        assert err[0] == (
            f"knot: The knot runtime at {url} ended the stream (it stopped). Waiting for it "
            "to come back; Ctrl-C stops.\n"
        )
    finally:
        follower.kill()
        follower.wait(5)
        server.kill()
        server.wait(5)
