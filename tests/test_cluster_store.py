"""The NATS JetStream store from the outside: choosing it, its clear failures, `knot serve`.

The engine's own contract runs on it in test_storage_contract.py; here: `[store] url` and
`--store`, one clear line when NATS or its client is missing, and a real `knot serve` whose
`POST /event` answers only once JetStream has the event (a SIGKILL right after loses nothing).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knot import Config, Runtime, StoreError
from knot._config import StoreSettings, parse_config
from knot._exceptions import StoreLocked
from knot.cluster import _link
from knot.cluster._local import NodeRecords

from .helpers import run_knot, start_server, wait_until
from .natshelpers import NatsServer, free_port, unique_prefix


def nats_project(path: Path, server: NatsServer, *, extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "knot.toml").write_text(
        f'[store]\nurl = "{server.url}"\nstream_prefix = "{unique_prefix()}"\n{extra}',
        encoding="utf-8",
    )
    return path


def test_store_settings_are_read_and_checked() -> None:
    good = parse_config(
        '[store]\nurl = "nats://a:4222, nats://b:4222"\nreplicas = 3\nack_wait = 2.5\n'
        'stream_prefix = "ACME"\n'
    ).raise_for_errors()
    assert good.store.url == "nats://a:4222, nats://b:4222"
    assert (good.store.replicas, good.store.ack_wait, good.store.stream_prefix) == (
        3,
        2.5,
        "ACME",
    )
    bad = parse_config('[store]\nurl = "http://a:4222"\nstream_prefix = "a.b"\n')
    assert not bad.ok
    assert any("store.url" in e and "nats://" in e for e in bad.errors)
    assert any("store.stream_prefix" in e for e in bad.errors)


def test_without_the_client_asking_for_nats_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # `import nats` raises ImportError
    with pytest.raises(StoreError, match=r"pip install 'knot-runtime\[cluster\]'"):
        _link.import_nats()


def test_nats_unreachable_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_knot("serve", "--project", str(tmp_path), "--port", "0", "--store", url)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot be reached" in lines[0]
    assert url in lines[0]


def test_a_bad_store_url_on_the_command_line_is_refused(tmp_path: Path) -> None:
    result = run_knot("serve", "--project", str(tmp_path), "--store", "redis://x")
    assert result.returncode != 0
    assert "nats://" in result.stderr


@pytest.mark.anyio
async def test_a_runtime_on_nats_keeps_node_records_on_its_own_disk(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    store = StoreSettings(
        path=str(tmp_path / ".knot" / "knot.db"), url=nats_server.url, stream_prefix=unique_prefix()
    )
    async with Runtime(tmp_path, config=Config(store=store)) as rt:
        node = rt.kv_all("node")["id"]["id"]
        assert (tmp_path / ".knot" / "node.json").exists()
        with pytest.raises(StoreError, match="in use by another knot node"):
            async with Runtime(tmp_path, config=Config(store=store)):
                pass
    async with Runtime(tmp_path, config=Config(store=store)) as rt:
        assert rt.kv_all("node")["id"]["id"] == node  # the same node after a restart


def test_post_event_is_journaled_in_jetstream_before_the_202(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    project = nats_project(tmp_path / "p", nats_server)
    server = start_server(project)
    try:
        assert nats_server.url in server.output()
        with server.client() as http:
            ids = [
                http.post("/event", json={"type": "t.n", "payload": {"n": n}}).json()["id"]
                for n in range(20)
            ]
    finally:
        server.kill()  # SIGKILL right after the last 202: nothing may be lost
    server = start_server(project)
    try:
        with server.client() as http:
            events = http.get("/api/events", params={"n": 100}).json()["events"]
            assert [e["id"] for e in events] == ids
            one = http.get(f"/api/events/{ids[3]}").json()
            assert one["data"] == {"n": 3}
            wait_until(lambda: http.get("/healthz").status_code == 200)
    finally:
        server.terminate()


def test_nats_without_jetstream_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()
    plain = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port)],  # no -js
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(port))
        started = time.monotonic()
        result = run_knot(
            "serve",
            "--project",
            str(tmp_path),
            "--port",
            "0",
            "--store",
            f"nats://127.0.0.1:{port}",
        )
        assert result.returncode == 1
        assert "has no JetStream" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert time.monotonic() - started < 15  # told at once, not after the cluster wait
    finally:
        plain.kill()
        plain.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_an_event_nats_would_disconnect_over_is_refused_and_the_node_goes_on(
    tmp_path: Path,
) -> None:
    # Found by hand: a payload under delivery.max_payload_bytes (1 MiB) but over the NATS
    # server's max_payload (1 MiB too, for the whole message) made the server close the
    # connection: that event and every one after it got 503 until the node reconnected.
    nats_server = NatsServer(tmp_path / "nats", max_payload="1MB")  # a stock server's
    project = nats_project(tmp_path / "p", nats_server)
    server = start_server(project)
    try:
        with server.client() as http:
            big = {"type": "t.big", "payload": {"s": "x" * 1_048_400}}
            refused = http.post("/event", json=big)
            assert refused.status_code == 400, refused.text
            assert "the limit is" in refused.json()["error"]
            after = [
                http.post("/event", json={"type": "t.n", "payload": {"n": n}}) for n in range(3)
            ]
            assert [r.status_code for r in after] == [202, 202, 202]
            fits = http.post("/event", json={"type": "t.fits", "payload": {"s": "y" * 1_000_000}})
            assert fits.status_code == 202, fits.text
            got = http.get(f"/api/events/{fits.json()['id']}").json()
            assert len(got["data"]["s"]) == 1_000_000
    finally:
        server.kill()
        nats_server.stop()


def test_a_node_state_folder_in_use_is_refused_with_its_holders_pid(tmp_path: Path) -> None:
    """Two nodes on one state folder would share an id: the second is refused, and the
    first one's lock goes with it (a third may then open the folder)."""
    first = NodeRecords(tmp_path / "node")
    first.open()
    second = NodeRecords(tmp_path / "node")
    with pytest.raises(StoreLocked, match=rf"in use by another knot node \(pid {os.getpid()}\)"):
        second.open()
    first.close()
    third = NodeRecords(tmp_path / "node")
    third.open()
    assert third.node_id == first.node_id  # the same node, started again
    third.close()
