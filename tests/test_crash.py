"""SIGKILL `knot serve` in the middle of a stream: nothing journaled may be lost, and the only
repeats are the deliveries past each sink's committed cursor (see tests/crashing.py)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
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


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    slow_log, fast_log = tmp_path / "slow.jsonl", tmp_path / "fast.jsonl"
    (tmp_path / "knot.toml").write_text(CONFIG.format(path=slow_log, fast=fast_log))
    server = KnotServer(tmp_path, quiet=True)
    stream = Stream(server.url)
    wait_until(lambda: len(stream.acked) >= 1500 and len(delivered(slow_log)) >= 200, timeout=60)
    server.kill()
    acked = stream.stop()
    before = {log: jsonl_deliveries(log) for log in (slow_log, fast_log)}
    cursors = committed_cursors(tmp_path / ".knot" / "knot.db")
    assert len(set(delivered(slow_log))) < len(acked), "the crash should leave a backlog"

    server = KnotServer(tmp_path, quiet=True)
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
SCRIPT = "# events: custom.stream.*\nimport knot.event\nprint('got', knot.event.id(), 'v{n}')\n"
GOT = re.compile(r"tick: got (\S+) v(\d+)$")


def script_deliveries(lines: list[str], seqs: dict[str, int]) -> list[tuple[Delivery, int]]:
    """(delivery, script version) for each line the script sink printed, in order."""
    out = []
    for line in list(lines):
        match = GOT.search(line)
        if match:
            out.append((Delivery(match[1], seqs.get(match[1], 0)), int(match[2])))
    return out


def save(path: Path, text: str, *, atomic: bool) -> None:
    """Save as editors do: a temp file renamed over the script, or rewritten in place."""
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


def test_sigkill_during_script_reloads_loses_nothing(tmp_path: Path) -> None:
    """Saves keep arriving while the runtime is killed; one of them is broken. The restarted
    runtime holds the sink back until the script is fixed, then delivers its whole backlog
    (including what arrived meanwhile) with the newest code."""
    (tmp_path / "knot.toml").write_text(RELOAD_CONFIG)
    script = tmp_path / "scripts" / "sinks" / "tick.py"
    script.parent.mkdir(parents=True)
    script.write_text(SCRIPT.format(n=0))
    server = KnotServer(tmp_path)
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
    wait_until(lambda: len(server.lines) > 0 and version >= 10, timeout=30)
    wait_until(lambda: len([ln for ln in server.lines if GOT.search(ln)]) >= 200, timeout=60)
    server.kill()  # saves go on while the runtime is dead
    first = stream.stop()
    time.sleep(0.2)
    saves.set()
    saving.join(10)
    save(script, "# events: custom.stream.*\nprint('broken'\n", atomic=True)
    store = tmp_path / ".knot" / "knot.db"
    cursor = committed_cursors(store)["tick"]
    before_lines = list(server.lines)

    server = KnotServer(tmp_path)
    try:
        server.wait_for_line(r"could not load sink tick")
        late = Stream(server.url, threads=1)
        wait_until(lambda: len(late.acked) >= 50, timeout=30)
        second = late.stop()
        assert not [ln for ln in server.lines if GOT.search(ln)], "a broken script ran"
        final = version + 1
        save(script, SCRIPT.format(n=final), atomic=True)
        wanted = {*first, *second}
        earlier = {match[1] for line in before_lines if (match := GOT.search(line))}
        wait_until(
            lambda: wanted <= earlier | {m[1] for ln in server.lines if (m := GOT.search(ln))},
            timeout=60,
        )
    finally:
        server.kill()
    seqs = event_seqs(store)
    before = [d for d, _ in script_deliveries(before_lines, seqs)]
    after_with_version = script_deliveries(server.lines, seqs)
    assert {v for _, v in after_with_version} == {final}, "the restart ran an old version"
    after = [d for d, _ in after_with_version]
    repeated = check_at_least_once("tick", wanted, before, after, cursor)
    print(
        f"tick: {len(wanted)} acknowledged ({len(second)} while the script was broken), "
        f"{len(before) + len(after)} deliveries over {version} saves, {repeated} repeated"
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
    tmp_path: Path, receiver: Receiver
) -> None:
    rec_log = tmp_path / "rec.jsonl"
    (tmp_path / "knot.toml").write_text(
        WEBHOOK_CONFIG.format(url=receiver.url("/hook"), rec=rec_log)
    )
    receiver.plan("/hook", [500] * FAILURES)
    server = KnotServer(tmp_path, quiet=True)
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

    server = KnotServer(tmp_path, quiet=True)
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
