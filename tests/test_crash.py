"""SIGKILL `knot serve` in the middle of a stream: nothing journaled may be lost, and the only
repeats are the deliveries past each sink's committed cursor (see tests/crashing.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from .crashing import (
    Delivery,
    Stream,
    check_at_least_once,
    committed_cursors,
    event_seqs,
    jsonl_deliveries,
)
from .helpers import KnotServer, wait_until
from .receiver import Receiver

CONFIG = """
[delivery]
queue_size = 100000
[[sinks]]
name = "slow"
type = "recording"
events = "custom.stream.*"
path = "{path}"
delay = 0.002
[[sinks]]
name = "fast"
type = "recording"
events = "*"
path = "{fast}"
"""


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def delivered(path: Path) -> list[str]:
    return [str(r["id"]) for r in records(path)]


def test_sigkill_mid_stream_loses_nothing(server_factory: type[KnotServer], tmp_path: Path) -> None:
    slow_log, fast_log = tmp_path / "slow.jsonl", tmp_path / "fast.jsonl"
    (tmp_path / "knot.toml").write_text(CONFIG.format(path=slow_log, fast=fast_log))
    server = server_factory(tmp_path, quiet=True)
    stream = Stream(server.url)
    wait_until(lambda: len(stream.acked) >= 1500 and len(delivered(slow_log)) >= 200, timeout=60)
    server.kill()
    acked = stream.stop()
    before = {log: jsonl_deliveries(log) for log in (slow_log, fast_log)}
    cursors = committed_cursors(tmp_path / ".knot" / "knot.db")
    assert len(set(delivered(slow_log))) < len(acked), "the crash should leave a backlog"

    server = server_factory(tmp_path, quiet=True)
    try:
        wanted = set(acked)
        wait_until(lambda: wanted <= set(delivered(slow_log)), timeout=60)
        wait_until(lambda: wanted <= set(delivered(fast_log)), timeout=30)
    finally:
        server.kill()
    for name, log in (("slow", slow_log), ("fast", fast_log)):
        everything = jsonl_deliveries(log)
        after = everything[len(before[log]) :]
        repeated = check_at_least_once(name, acked, before[log], after, cursors[name])
        print(
            f"{name}: {len(acked)} acknowledged, {len(everything)} deliveries, {repeated} "
            f"repeated = deliveries past the committed cursor at the kill"
        )
        # Order is kept per sink: first deliveries follow journal order, across the restart.
        seen: set[object] = set()
        first_seqs: list[int] = []
        for record in records(log):
            if record["id"] not in seen:
                seen.add(record["id"])
                first_seqs.append(int(str(record["seq"])))
        assert first_seqs == sorted(first_seqs)


RELOAD_CONFIG = """
[delivery]
queue_size = 100000
attempts = 1
[scripts]
timeout = 5.0
memory_mb = 128
"""
# Each run journals what it did (an emit is durable when it returns), so every run of the
# script is on record, even one whose result the kill lost.
SCRIPT = (
    "# events: custom.stream.*\nimport knot.event\n"
    "knot.event.emit('seen', {{'id': knot.event.id(), 'v': {n}}})\n"
)


def script_runs(store: Path) -> list[tuple[str, int]]:
    """(event id, script version) of every run of the script, in the order they ran."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT data FROM events WHERE type = 'custom.seen' ORDER BY seq")
        return [(d["id"], d["v"]) for d in (json.loads(data) for (data,) in rows)]


def save(path: Path, text: str, *, atomic: bool) -> None:
    """Save as editors do: a temp file renamed over the script, or rewritten in place."""
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


def test_sigkill_during_script_reloads_loses_nothing(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    """Saves keep arriving while the runtime is killed; one of them is broken. The restarted
    runtime holds the sink back until the script is fixed, then delivers its whole backlog
    (including what arrived meanwhile) with the newest code."""
    (tmp_path / "knot.toml").write_text(RELOAD_CONFIG)
    script = tmp_path / "scripts" / "sinks" / "tick.py"
    script.parent.mkdir(parents=True)
    script.write_text(SCRIPT.format(n=0))
    store = tmp_path / ".knot" / "knot.db"
    server = server_factory(tmp_path, quiet=True)
    stream = Stream(server.url, threads=2)
    saves = threading.Event()
    version = 0

    def saver() -> None:
        nonlocal version
        while not saves.is_set():
            version += 1
            save(script, SCRIPT.format(n=version), atomic=version % 2 == 0)
            time.sleep(0.03)

    saving = threading.Thread(target=saver)
    saving.start()
    wait_until(lambda: version >= 10 and len(script_runs(store)) >= 200, timeout=60)
    server.kill()  # saves go on while the runtime is dead
    first = stream.stop()
    time.sleep(0.2)
    saves.set()
    saving.join(10)
    save(script, "# events: custom.stream.*\nprint('broken'\n", atomic=True)
    cursor = committed_cursors(store)["tick"]
    ran_before = script_runs(store)

    server = server_factory(tmp_path, quiet=True)
    try:
        server.wait_for_line(r"could not load sink tick")
        late = Stream(server.url, threads=1)
        wait_until(lambda: len(late.acked) >= 50, timeout=30)
        second = late.stop()
        assert len(script_runs(store)) == len(ran_before), "a broken script ran"
        final = version + 1
        save(script, SCRIPT.format(n=final), atomic=True)
        wanted = {*first, *second}
        wait_until(lambda: wanted <= {i for i, _ in script_runs(store)}, timeout=60)
    finally:
        server.kill()
    seqs = event_seqs(store)
    ran_after = script_runs(store)[len(ran_before) :]
    assert {v for _, v in ran_after} == {final}, "the restart ran an old version"
    # The events past the cursor ran again after the restart, but a re-run's emit has the
    # same derived id as the first run's, so the journal kept one `seen` per event.
    runs = Counter(i for i, _ in script_runs(store))
    assert wanted <= set(runs), "an acknowledged event never reached the script"
    assert max(runs.values()) == 1, "a re-run raised its event a second time"
    assert all(seqs[i] > cursor for i, _ in ran_after), "a run below the cursor was repeated"
    print(
        f"tick: {len(wanted)} acknowledged ({len(second)} while the script was broken), "
        f"{len(ran_before) + len(ran_after)} runs recorded over {version} saves"
    )


WEBHOOK_CONFIG = """
[delivery]
queue_size = 1000
attempts = 20
backoff = [0.2]
[[sinks]]
name = "hook"
type = "webhook"
events = "custom.*"
url = "{url}"
secret = "crash-test-secret"
[[sinks]]
name = "rec"
type = "recording"
events = "custom.*"
path = "{rec}"
"""
FAILURES = 6  # the receiver answers 500 to its first requests, then 200


def test_sigkill_while_a_webhook_delivery_is_retrying_loses_nothing(
    server_factory: type[KnotServer], tmp_path: Path, receiver: Receiver
) -> None:
    rec_log = tmp_path / "rec.jsonl"
    (tmp_path / "knot.toml").write_text(
        WEBHOOK_CONFIG.format(url=receiver.url("/hook"), rec=rec_log)
    )
    receiver.plan("/hook", [500] * FAILURES)
    server = server_factory(tmp_path, quiet=True)
    with server.client() as client:
        acked = [
            client.post("/event", json={"type": "crash.hook", "payload": {"i": i}}).json()["id"]
            for i in range(20)
        ]
    receiver.wait_for(3, "/hook")  # the first event has failed three attempts: it is retrying
    server.kill()
    store = tmp_path / ".knot" / "knot.db"
    cursor = committed_cursors(store)["hook"]
    killed_at = len(receiver.requests)
    assert killed_at < FAILURES, "the kill should come while the first event is retrying"

    server = server_factory(tmp_path, quiet=True)
    try:
        receiver.wait_for(len(acked) + FAILURES, "/hook", timeout=30)
        wait_until(lambda: set(acked) <= {d.id for d in jsonl_deliveries(rec_log)}, timeout=30)
    finally:
        server.kill()
    seqs = event_seqs(store)
    answered = [
        (r.headers["x-knot-event-id"], i >= FAILURES) for i, r in enumerate(receiver.at("/hook"))
    ]
    assert all(ok is False for _, ok in answered[:killed_at])
    accepted = [Delivery(event_id, seqs[event_id]) for event_id, ok in answered if ok]
    repeated = check_at_least_once("hook", acked, [], accepted, cursor)
    attempts = [event_id for event_id, _ in answered[:FAILURES]]
    assert set(attempts) == {acked[0]}, "only the first event was being retried"
    print(
        f"hook: {len(acked)} acknowledged, {len(answered)} requests ({FAILURES} answered 500, "
        f"{killed_at} before the kill), {len(accepted)} accepted, {repeated} repeated"
    )


METHOD_CONFIG = """
[delivery]
queue_size = 100000
attempts = 1
[methods]
timeout = 10.0
memory_mb = 128
"""
METHOD_SCRIPT = """import time
import knot.event
import knot.methods


@knot.methods.method(events=["custom.stream.*"])
def record(params):
    # What the method did is journaled before the call goes on (an emit is durable when it
    # returns), so every call that ran is on record, even one whose answer the kill lost.
    knot.event.emit("seen", {"id": params["event_id"]})
    time.sleep(0.01)
    return {}
"""


def method_calls(store: Path) -> list[str]:
    """The ids the method was called with, in the order it ran (its `seen` events)."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT data FROM events WHERE type = 'custom.seen' ORDER BY seq")
        return [json.loads(data)["id"] for (data,) in rows]


def test_sigkill_while_a_method_worker_is_mid_call_loses_nothing(
    server_factory: type[KnotServer], tmp_path: Path
) -> None:
    (tmp_path / "knot.toml").write_text(METHOD_CONFIG)
    script = tmp_path / "scripts" / "methods" / "tracker.py"
    script.parent.mkdir(parents=True)
    script.write_text(METHOD_SCRIPT)
    store = tmp_path / ".knot" / "knot.db"
    server = server_factory(tmp_path, quiet=True)
    with server.client() as client:
        acked = [
            client.post("/event", json={"type": "stream.x", "payload": {"i": i}}).json()["id"]
            for i in range(300)
        ]
    wait_until(lambda: len(method_calls(store)) >= 40, timeout=60)
    server.kill()  # the worker is in the middle of a call (and of a batch of them)
    cursor = committed_cursors(store)["tracker.record"]
    seqs = event_seqs(store)
    before = [Delivery(i, seqs[i]) for i in method_calls(store)]
    assert len(before) < len(acked), "the kill should leave a backlog"

    server = server_factory(tmp_path, quiet=True)
    try:
        wait_until(lambda: set(acked) <= set(method_calls(store)), timeout=60)
    finally:
        server.kill()
    after = [Delivery(i, seqs[i]) for i in method_calls(store)[len(before) :]]
    # The calls past the cursor ran again, but their emits got the ids of the first run's
    # (derived from the event, the method and the emit's index): one `seen` per event.
    calls = Counter(method_calls(store))
    assert max(calls.values()) == 1, "a repeated call raised its event a second time"
    assert all(d.seq > cursor for d in after), "a call below the cursor was repeated"
    print(
        f"tracker.record: {len(acked)} acknowledged, {len(before) + len(after)} calls "
        f"recorded ({len(before)} before the kill)"
    )
