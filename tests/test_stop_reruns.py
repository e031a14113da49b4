"""Stopping `knot serve` under load must not make a script sink raise its events twice.

A script sink takes up to 64 queued events per worker round trip. A clean stop (SIGTERM) used
to cancel that batch and keep the cursor from before it, so after a restart up to 64 events
that had already run ran again and emitted their children a second time, with new ids. Now a
stop lets the batch finish (each event is recorded as it finishes), and a re-run after a crash
emits children with the same ids (derived from the parent, the sink and the emit's index),
which the journal drops as duplicates.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from .crashing import Stream, committed_cursors, event_seqs
from .helpers import KnotServer, wait_until

CONFIG = """
[delivery]
queue_size = 100000
"""
RELAY = """# events: custom.tick
import time
import knot.event

print("ran " + knot.event.id())
time.sleep(0.002)
knot.event.emit("relayed.tick", {"parent": knot.event.id()})
"""
RAN = re.compile(r"relay: ran ([0-9a-f-]{36})")


def project(tmp_path: Path) -> Path:
    (tmp_path / "knot.toml").write_text(CONFIG)
    sinks = tmp_path / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    (sinks / "relay.py").write_text(RELAY)
    return tmp_path


def children(store: Path) -> Counter[str]:
    """How many `relayed.tick` events each parent has in the journal."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT data FROM events WHERE type = 'custom.relayed.tick'")
        return Counter(json.loads(data)["parent"] for (data,) in rows)


def runs(*servers: KnotServer) -> Counter[str]:
    """How many times the script ran on each event, from what it printed."""
    return Counter(m.group(1) for s in servers for m in map(RAN.search, s.lines) if m)


def load_then(server: KnotServer, sig: signal.Signals) -> list[str]:
    """Post events from 4 threads until the sink has a backlog and has handled a few hundred,
    then send `sig`; the acknowledged ids."""
    store = server.project / ".knot" / "knot.db"
    stream = Stream(server.url, "tick")
    wait_until(lambda: len(stream.acked) >= 1000 and len(runs(server)) >= 300, timeout=60)
    server.proc.send_signal(sig)
    acked = stream.stop()
    server.proc.wait(15)
    server._reader.join(5)
    assert sum(children(store).values()) < len(acked), "the stop should leave a backlog"
    return acked


def test_sigterm_under_load_reruns_nothing_that_finished(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    store = project(tmp_path) / ".knot" / "knot.db"
    first = server_factory(tmp_path)
    acked = load_then(first, signal.SIGTERM)
    assert first.proc.returncode == 0
    ran_before = runs(first)

    second = server_factory(tmp_path)
    try:
        wait_until(lambda: set(acked) <= set(children(store)), timeout=60)
    finally:
        second.terminate()
    counted = runs(first, second)
    again = sorted(i for i, n in counted.items() if n > 1)
    assert not again, f"{len(again)} events ran again after a clean stop (of {len(ran_before)})"
    twice = [p for p, n in children(store).items() if n > 1]
    assert not twice, f"{len(twice)} events have two children"


def test_after_sigkill_a_rerun_raises_the_same_children(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    store = project(tmp_path) / ".knot" / "knot.db"
    first = server_factory(tmp_path)
    acked = load_then(first, signal.SIGKILL)
    cursor = committed_cursors(store)["relay"]
    seqs = event_seqs(store)
    # What ran past the committed cursor runs again after the restart (at-least-once)...
    past_cursor = {i for i in runs(first) if seqs.get(i, 0) > cursor}

    second = server_factory(tmp_path)
    try:
        wait_until(lambda: set(acked) <= set(children(store)), timeout=60)
    finally:
        second.terminate()
    rerun = {i for i, n in runs(first, second).items() if n > 1}
    assert rerun <= past_cursor, "an event below the committed cursor ran again"
    # ...but its emit had the same id as the first run's, so the journal kept one child.
    twice = [p for p, n in children(store).items() if n > 1]
    assert not twice, f"{len(twice)} events have two children ({len(rerun)} re-runs)"
