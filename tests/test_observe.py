"""Causation, delivery history and traces on an embedded runtime over a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from knot import Config, DeliveryFailed, Event, Runtime, SinkOrigin, SinkSpec
from knot._config import DeliverySettings
from knot._patterns import parse_patterns
from knot.engine.attempts import AttemptBatch
from knot.observe import trace as trace_module
from knot.observe.trace import render_text
from knot.sinks import Sink
from knot.sinks.base import DeliveryResult, Directive

from .conftest import recording

pytestmark = pytest.mark.anyio


class Spawner(Sink):
    """Raises `children` child events of type `next` for each event it gets (a chain)."""

    type = "recording"

    def __init__(self, name: str, events: str, emits: str, children: int = 1) -> None:
        super().__init__(
            SinkSpec(name, "recording", parse_patterns(events), origin=SinkOrigin.BUILTIN)
        )
        self.emits = emits
        self.children = children

    async def deliver(self, event: Event) -> DeliveryResult | None:
        assert self.host is not None
        for n in range(self.children):
            await self.host.emit_child(event, self.emits, {"n": n})
        return DeliveryResult(output=(f"raised {self.children} {self.emits}",))


def _config(**delivery: Any) -> Config:
    return Config(delivery=DeliverySettings(**{"attempts": 3, "backoff": (0.01,), **delivery}))


async def test_every_event_carries_its_parent_and_root(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(Spawner("first", "custom.a", "b"))
        await rt.add_sink(Spawner("second", "custom.b", "c", children=2))
        root = await rt.emit("a", {})
        await rt.wait_idle()
        events = {e.type: e for e in await rt.events(limit=10)}
        as_dicts = [e.to_dict() for e in await rt.events(limit=10)]
    b, c = events["custom.b"], events["custom.c"]
    assert (events["custom.a"].parent, events["custom.a"].root_id) == ("", root)
    assert (b.parent, b.root_id) == (root, root)
    assert (c.parent, c.root_id) == (b.id, root)  # the root is the chain's first, not the parent
    assert [(d["type"], d["parent"], d["root"]) for d in as_dicts] == [
        ("custom.a", None, root),
        ("custom.b", root, root),
        ("custom.c", b.id, root),
        ("custom.c", b.id, root),
    ]
    async with Runtime(project, config=_config()) as rt:  # read back from the store
        again = await rt.get_event(c.id)
    assert again is not None
    assert (again.parent, again.root_id) == (b.id, root)


async def test_a_caller_cannot_set_causation(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        with pytest.raises(TypeError):
            await rt.emit("a", {}, parent="01a00000-0000-7000-8000-000000000000", bogus=1)
        event_id = await rt.emit("a", {"parent": "x", "root": "y"})
        event = await rt.get_event(event_id)
    assert event is not None
    assert (event.parent, event.root_id) == ("", event_id)


async def test_deliveries_record_every_attempt_and_where_each_sink_stands(project: Path) -> None:
    async with Runtime(project, config=_config(queue_size=2)) as rt:
        flaky = recording("flaky", "custom.flaky", fail_attempts=1)
        broken = recording("broken", "custom.broken", fail_attempts=5)
        quick = recording("quick", "*")
        for sink in (flaky, broken, quick):
            await rt.add_sink(sink)
        retried = await rt.emit("flaky", {})
        given_up = await rt.emit("broken", {})
        await rt.wait_idle()
        first = await rt.deliveries(retried)
        second = await rt.deliveries(given_up)
    by_sink = {d["sink"]: d for d in first.to_dict()["deliveries"]}
    assert set(by_sink) == {"flaky", "quick"}
    assert by_sink["flaky"]["status"] == "delivered"
    attempts = by_sink["flaky"]["attempts"]
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed"), (2, "delivered")]
    assert "failing attempt 1 of 1" in attempts[0]["error"] or attempts[0]["error"]
    assert attempts[0]["ts"] <= attempts[1]["ts"]
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert by_sink["quick"]["status"] == "delivered"
    assert [a["attempt"] for a in by_sink["quick"]["attempts"]] == [1]
    broken_row = {d["sink"]: d for d in second.to_dict()["deliveries"]}["broken"]
    assert broken_row["status"] == "failed"
    assert [a["outcome"] for a in broken_row["attempts"]] == ["failed"] * 3


async def test_a_full_queue_shows_as_dropped_and_a_busy_sink_as_pending(project: Path) -> None:
    gate = asyncio.Event()

    class Gated(Sink):
        type = "recording"

        async def deliver(self, event: Event) -> DeliveryResult | None:
            await gate.wait()
            return None

    async with Runtime(project, config=_config(queue_size=1)) as rt:
        await rt.add_sink(
            Gated(SinkSpec("slow", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        )
        ids = [await rt.emit("t", {"n": n}) for n in range(4)]
        await rt.flush()
        for _ in range(100):
            await asyncio.sleep(0.01)
        states = [(await rt.deliveries(i)).to_dict()["deliveries"] for i in ids]
        gate.set()
        await rt.wait_idle()
        after = (await rt.deliveries(ids[0])).to_dict()["deliveries"]
    statuses = [[d["status"] for d in s] for s in states]
    assert statuses[0] == ["pending"]  # in flight
    assert ["dropped"] in statuses
    assert after[0]["status"] == "delivered"


async def test_quick_deliveries_are_timed_as_a_run(project: Path) -> None:
    async with Runtime(project, config=_config(queue_size=1000)) as rt:
        await rt.add_sink(recording("fast", "*"))
        ids = [await rt.emit("t", {"n": n}) for n in range(300)]
        await rt.wait_idle()
        found = [(await rt.deliveries(i)).to_dict()["deliveries"][0] for i in ids]
    attempts = [f["attempts"] for f in found]
    assert all(len(a) == 1 and a[0]["outcome"] == "delivered" for a in attempts)
    times = [a[0]["ts"] for a in attempts]
    assert times == sorted(times)  # spread over the run, in order
    assert all(0 <= a[0]["duration_ms"] < 1000 for a in attempts)


class Batches(Sink):
    """Takes events 16 at a time; says something about every fifth, fails the 7th once."""

    type = "recording"
    max_batch = 16

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__(SinkSpec("b", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        self.gate = gate
        self.failed = False

    async def deliver(self, event: Event) -> DeliveryResult | None:
        await self.gate.wait()  # the first event holds the rest back: they queue, then batch
        n = event.data["n"]
        if n == 7 and not self.failed:
            self.failed = True
            raise DeliveryFailed("seven fails once")
        if n % 5 == 0:
            return DeliveryResult(output=(f"saw {n}",))
        return DeliveryResult(directives=(Directive("d", {"n": n}, sink=self.name),))


async def test_a_batch_runs_its_quiet_deliveries_and_records_the_rest(project: Path) -> None:
    """Batched events that succeeded at once with nothing to keep (no output, no status:
    directives are the synchronous answer's, not the history's) join the run, as quick single
    deliveries do; output and failures still get records of their own, with their times."""
    batches: list[AttemptBatch] = []
    gate = asyncio.Event()
    async with Runtime(project, config=_config(queue_size=100)) as rt:
        rt.hooks.on_attempt(batches.append)
        await rt.add_sink(Batches(gate))
        ids = [await rt.emit("t", {"n": n}) for n in range(40)]
        await rt.flush()
        gate.set()
        await rt.wait_idle()
        rt.delivery.flush_attempts()
        found = [(await rt.deliveries(i)).to_dict()["deliveries"][0] for i in ids]
        seven = await rt.get_event(ids[7])
    assert seven is not None
    in_runs = {seq for b in batches for seq in b.seqs}
    records = [r for b in batches for r in b.records]
    # 0, 5, ..., 35 printed; 7 failed once, and its retry is a record too.
    assert len(in_runs) == 40 - 8 - 1
    assert seven.seq not in in_runs
    assert [(r.seq, r.attempt) for r in records if r.outcome == "failed"] == [(seven.seq, 1)]
    assert sum(1 for r in records if r.output) == 8
    for n, row in enumerate(found):
        assert row["status"] == "delivered"
        attempts = row["attempts"]
        assert [a["outcome"] for a in attempts] == (
            ["failed", "delivered"] if n == 7 else ["delivered"]
        )
        assert attempts[-1]["output"] == ([f"saw {n}"] if n % 5 == 0 else [])
        assert all(0 <= a["duration_ms"] < 1000 for a in attempts)
    times = [row["attempts"][-1]["ts"] for row in found]
    assert times == sorted(times)


async def test_the_trace_is_the_tree_from_the_root_whichever_event_is_asked(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(Spawner("first", "custom.a", "b"))
        await rt.add_sink(Spawner("second", "custom.b", "c", children=2))
        await rt.add_sink(recording("leaf", "custom.c", fail_attempts=1))
        root = await rt.emit("a", {})
        unrelated = await rt.emit("x", {})
        await rt.wait_idle()
        leaf = [e for e in await rt.events(limit=10) if e.type == "custom.c"][-1]
        from_leaf = (await rt.trace(leaf.id)).to_dict()
        from_root = (await rt.trace(root)).to_dict()
        alone = (await rt.trace(unrelated)).to_dict()
    assert from_leaf["tree"] == from_root["tree"]
    assert (from_leaf["root"], from_leaf["event"], from_leaf["events"]) == (root, leaf.id, 4)
    [top] = from_leaf["tree"]
    assert top["id"] == root
    assert [d["sink"] for d in top["deliveries"]] == ["first"]
    [b] = top["children"]
    assert [child["type"] for child in b["children"]] == ["custom.c", "custom.c"]
    leaf_node = b["children"][1]
    assert [a["outcome"] for a in leaf_node["deliveries"][0]["attempts"]] == ["failed", "delivered"]
    assert alone["events"] == 1
    assert alone["tree"][0]["children"] == []
    text = render_text(from_leaf)
    assert text.splitlines()[0].startswith(f"custom.a {root}")
    assert f"custom.c {leaf.id}" in text
    assert "◀" in next(line for line in text.splitlines() if leaf.id in line)
    assert "| raised 2 c" in text
    assert "#1 " in text  # the failed attempt is shown, with its error
    assert "(no sink took it)" in render_text(alone)


async def test_a_long_chain_is_cut_and_says_so(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_module, "MAX_TRACE_EVENTS", 5)
    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(Spawner("fan", "custom.a", "b", children=10))
        root = await rt.emit("a", {})
        await rt.wait_idle()
        last = (await rt.events(limit=1))[0]
        cut = (await rt.trace(last.id)).to_dict()
    assert cut["truncated"] is True
    assert cut["root"] == root
    ids = [cut["tree"][0]["id"], *(c["id"] for c in cut["tree"][0]["children"])]
    assert last.id in ids  # the event asked about is always shown
    assert "only the first" in render_text(cut)


async def test_an_unknown_event_has_no_deliveries_nor_trace(project: Path) -> None:
    from knot import NotFound

    async with Runtime(project, config=_config()) as rt:
        with pytest.raises(NotFound, match="no event with id"):
            await rt.trace("01a00000-0000-7000-8000-000000000000")
        with pytest.raises(NotFound, match="no event with id"):
            await rt.deliveries("01a00000-0000-7000-8000-000000000000")


V1_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    ts TEXT NOT NULL, zone TEXT NOT NULL, owner TEXT NOT NULL, depth INTEGER NOT NULL,
    data TEXT NOT NULL, meta TEXT NOT NULL);
CREATE TABLE cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE skips (sink TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (sink, seq)) WITHOUT ROWID;
CREATE TABLE audit (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL, sink TEXT NOT NULL, event_id TEXT NOT NULL);
CREATE TABLE kv (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (scope, key)) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


async def test_a_version_1_store_is_migrated_and_its_chains_found(project: Path) -> None:
    path = project / ".knot" / "knot.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    actor = {"actor": {"id": "local", "username": "local", "kind": "User"}}
    ids = [f"01a00000-0000-7000-8000-00000000000{n}" for n in range(4)]
    parents = [None, ids[0], ids[1], None]  # a chain of three, and one event on its own
    for seq, (event_id, parent) in enumerate(zip(ids, parents, strict=True), start=1):
        meta = {**actor, **({"parent": parent} if parent else {})}
        conn.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
            (
                seq,
                event_id,
                "custom.t",
                "2026-01-01T00:00:00.000000Z",
                "local",
                "",
                0 if parent is None else (2 if seq == 3 else 1),
                "{}",
                json.dumps(meta),
            ),
        )
    conn.commit()
    conn.close()
    async with Runtime(project, config=_config()) as rt:
        trace = (await rt.trace(ids[2])).to_dict()
        newer = await rt.emit("t", {})
        await rt.flush()
        grandchild = await rt.get_event(ids[2])
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 4  # 1 → 2 (expiring keys) → 3 (chains, attempts) → 4 (versions)
    assert trace["root"] == ids[0]
    assert trace["tree"][0]["children"][0]["children"][0]["id"] == ids[2]
    assert grandchild is not None
    assert grandchild.root_id == ids[0]
    assert newer


async def test_attempt_listeners_see_runs_and_records_and_a_broken_one_stops_nothing(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[AttemptBatch] = []

    def broken(batch: AttemptBatch) -> None:
        raise RuntimeError("listener bug")

    async with Runtime(project, config=_config(queue_size=500)) as rt:
        rt.hooks.on_attempt(broken)
        rt.hooks.on_attempt(seen.append)
        await rt.add_sink(recording("r", "*", fail_attempts=1))
        for n in range(20):
            await rt.emit("t", {"n": n})
        await rt.wait_idle()
        await rt.flush()
        rt.delivery.flush_attempts()
    attempts = [a for batch in seen for a in batch.attempts()]
    assert sum(1 for a in attempts if a.outcome == "delivered") == 20
    assert sum(1 for a in attempts if a.outcome == "failed") == 20
    assert sum(1 for r in caplog.records if "on_attempt listener" in r.getMessage()) == 1


def test_a_run_wider_than_a_span_is_stored_in_spans_with_its_times() -> None:
    from array import array

    from knot.engine.attempts import SPAN, Attempt, pack, unpack

    # A sink that takes one event in ten: a run of 1,024 attempts covers 10,240 positions.
    seqs = array("q", range(5, 10_245, 10))
    failed = Attempt.new("s", 3000, 2, 100.5, 0.25, error="boom", output=("x",))
    batch = AttemptBatch("s", 100.0, 102.048, 1.024, seqs, (failed,))
    rows = list(pack([batch]))
    assert all(hi - lo < SPAN for _, lo, hi, *_ in rows)
    assert len(rows) > 10
    back = sorted(
        (a for row in rows for a in unpack(row, range(20_000))), key=lambda a: (a.seq, a.attempt)
    )
    expected = sorted(batch.attempts(), key=lambda a: (a.seq, a.attempt))
    assert [(a.seq, a.attempt, a.outcome) for a in back] == [
        (a.seq, a.attempt, a.outcome) for a in expected
    ]
    for got, want in zip(back, expected, strict=True):
        assert got.started == pytest.approx(want.started)
        assert got.duration == pytest.approx(want.duration)
    assert next(a for a in back if a.seq == 3000 and a.attempt == 2).error == "boom"


def test_a_run_of_every_position_is_stored_as_two_numbers() -> None:
    from array import array

    from knot.engine.attempts import pack, unpack

    batch = AttemptBatch("s", 10.0, 11.0, 0.5, array("q", range(100, 600)))
    [row] = list(pack([batch]))
    assert len(row[6]) == 17  # the marker, the first position and the count
    back = unpack(row, range(0, 1000))
    assert [a.seq for a in back] == list(range(100, 600))
    assert back[250].started == pytest.approx(10.5)
    assert back[250].duration == pytest.approx(0.001)


async def test_a_slow_attempt_across_housekeeping_rounds_keeps_its_duration(
    project: Path,
) -> None:
    class Slow(Sink):
        type = "recording"

        async def deliver(self, event: Event) -> DeliveryResult | None:
            await asyncio.sleep(1.2)  # two housekeeping rounds flush the attempts meanwhile
            return DeliveryResult(status=200)

    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(
            Slow(SinkSpec("slow", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN))
        )
        event_id = await rt.emit("t", {})
        await rt.wait_idle()
        [slow] = (await rt.deliveries(event_id)).to_dict()["deliveries"]
    [attempt] = slow["attempts"]
    assert attempt["status"] == 200
    assert attempt["duration_ms"] >= 1100


def test_the_text_trace_shows_what_sinks_printed_inert() -> None:
    # Found by hand: a script's output line with a bidi override (U+202E) or an escape
    # sequence reached the terminal as is through `knot trace`, which could rearrange or
    # recolour what the user reads.
    attempt = {
        "attempt": 1,
        "outcome": "delivered",
        "duration_ms": 1.0,
        "error": "",
        "output": ["Hello, \u202eevil\x1b[31m!", "next\nline"],
    }
    delivery = {"sink": "s", "outcome": "delivered", "attempts": [attempt]}
    node = {"id": "e1", "type": "custom.t", "seq": 1, "ts": "t", "children": []}
    text = render_text({"event": "e1", "root": "e1", "tree": [{**node, "deliveries": [delivery]}]})
    for line in text.splitlines():
        assert line.isprintable(), line  # no escape, no override, no line of its own
    assert "\\u202eevil\\x1b[31m" in text
    assert "next\\nline" in text
