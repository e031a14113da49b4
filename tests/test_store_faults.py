"""A store that cannot be used: `knot serve` says so in one line at start-up, and a store that
fails while running refuses new events (503) without losing the acknowledged ones.

A read-only store is made with chmod, or, for root (whom permissions do not stop), with the
immutable flag. A full disk is RLIMIT_FSIZE = 0 on the `knot serve` process (set with prlimit
while it runs): every write fails as on a full disk, and lifting the limit frees the disk.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from knot.engine.store import Store

from .crashing import jsonl_deliveries
from .helpers import KnotServer, run_knot, wait_until


def serve_fails(project: Path, **popen: object) -> str:
    """Run `knot serve` on `project`; it must exit 1 with one clear line and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "knot.cli", "serve", "--project", str(project), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        **popen,  # type: ignore[call-overload]
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, output
    assert "Traceback" not in output
    (line,) = output.splitlines()
    return str(line)


def new_store(project: Path) -> Path:
    path = project / ".knot" / "knot.db"
    Store(path).close()
    return path


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` unwritable for this user: chmod, or the immutable flag for root."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)


def test_a_read_only_store_is_one_line_at_start_up(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with read_only(store):
        line = serve_fails(tmp_path)
    assert line == f"knot: The store {store} is read-only; knot needs to write to it."


def test_a_store_locked_by_another_program_is_one_line_at_start_up(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # e.g. a sqlite3 shell in the middle of a transaction
    try:
        line = serve_fails(tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert line == (f"knot: The store {store} is locked by another program; close it and retry.")


def test_a_store_in_use_by_another_runtime_is_one_line_at_start_up(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    first = server_factory(tmp_path, quiet=True)
    try:
        line = serve_fails(tmp_path)
    finally:
        first.kill()
    store = tmp_path / ".knot" / "knot.db"
    assert line == (
        f"knot: The store {store} is in use by another knot runtime (pid {first.proc.pid}); "
        "stop it or use another --project or store path."
    )


def test_a_full_disk_at_start_up_is_one_line(tmp_path: Path) -> None:
    store = new_store(tmp_path)

    def no_room() -> None:
        ignore_sigxfsz()
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    line = serve_fails(tmp_path, preexec_fn=no_room)
    assert line.startswith(f"knot: The store {store} cannot be written: ")
    assert line.endswith("(is its disk full, or read-only?).")


def test_a_damaged_store_is_one_line_at_start_up(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    (tmp_path / "knot.toml").write_text(
        '[[sinks]]\nname = "rec"\ntype = "recording"\nevents = "custom.*"\n'
    )
    server = server_factory(tmp_path, quiet=True)
    with server.client() as client:
        for n in range(20):
            client.post("/event", json={"type": "custom.x", "payload": {"n": n}})
        wait_until(lambda: client.get("/api/sinks").json()["sinks"][0]["delivered"] >= 20)
    assert server.terminate() == 0
    store = tmp_path / ".knot" / "knot.db"
    # Junk over the pages of the delivery cursors and of the records (`kv`, where users live),
    # in the middle of this small file: opening and migrating the store still work, reading
    # the cursors (knot serve) or the users (knot user) does not.
    with contextlib.closing(sqlite3.connect(store)) as conn:
        pages = [
            page
            for (page,) in conn.execute(
                "SELECT rootpage FROM sqlite_master WHERE name IN ('cursors', 'kv')"
            )
        ]
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    assert len(pages) == 2
    with store.open("r+b") as file:
        for page in pages:
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)
    damaged = (
        f"knot: The store {store} is damaged or not a SQLite database (database disk image is "
        "malformed); restore it from a backup, or move it aside to start with an empty store."
    )
    assert serve_fails(tmp_path) == damaged
    # `knot user` opens the store itself when no runtime has it: the same one line.
    users = run_knot("user", "list", "--project", str(tmp_path))
    assert (users.returncode, users.stdout, users.stderr) == (1, "", damaged + "\n")


FULL_CONFIG = """
[delivery]
queue_size = 10000
[[sinks]]
name = "rec"
type = "recording"
events = "custom.*"
path = "{path}"
"""


def ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails, not kills


def set_room(pid: int, size: int) -> None:
    """How far any file of process `pid` may grow: 0 is a full disk (every write fails)."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def test_a_store_that_fills_up_while_running_loses_no_acknowledged_event(
    server_factory: type[KnotServer],
    tmp_path: Path,
) -> None:
    log = tmp_path / "rec.jsonl"
    (tmp_path / "knot.toml").write_text(FULL_CONFIG.format(path=log))
    server = server_factory(tmp_path, quiet=True, preexec_fn=ignore_sigxfsz)
    acked: list[str] = []
    refused: list[str] = []
    with server.client() as client:

        def post() -> httpx.Response:
            event_id = str(uuid.uuid4())
            r = client.post("/event", json={"type": "full.x", "id": event_id})
            (acked if r.status_code == 202 else refused).append(event_id)
            return r

        for _ in range(30):
            assert post().status_code == 202
        wait_until(lambda: len(jsonl_deliveries(log)) == 30)
        # Reading an event's deliveries commits the attempts recorded so far: from here on
        # the only writes are the events posted below.
        assert client.get(f"/api/events/{acked[-1]}/deliveries").status_code == 200

        set_room(server.proc.pid, 0)  # the disk is full
        for _ in range(20):
            answer = post()
            assert answer.status_code == 503
            assert "cannot be written" in answer.json()["error"]
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "store failing"
        server.wait_for_line(r"ERROR: .* cannot be written: .* Writes are refused until")
        errors = [line for line in server.lines if "ERROR" in line]
        assert len(errors) == 1, "one line when the store starts failing, not one per commit"

        set_room(server.proc.pid, resource.RLIM_INFINITY)  # room again: the same runtime goes on
        assert post().status_code == 202
        assert client.get("/healthz").status_code == 200
        server.wait_for_line(r"the store accepts writes again, after 20 failed commits")
        for _ in range(20):
            assert post().status_code == 202
    server.kill()

    server = server_factory(tmp_path, quiet=True)
    try:
        wait_until(lambda: set(acked) <= {d.id for d in jsonl_deliveries(log)}, timeout=30)
    finally:
        server.kill()
    delivered = {d.id for d in jsonl_deliveries(log)}
    assert not delivered & set(refused), "an event answered 503 was delivered"
    with sqlite3.connect(tmp_path / ".knot" / "knot.db") as db:
        journaled = {row[0] for row in db.execute("SELECT id FROM events")}
    assert set(acked) <= journaled
    assert not journaled & set(refused)
    print(f"{len(acked)} acknowledged and delivered, {len(refused)} refused (503), none lost")
