"""`Runtime.replay`: a script sink's current version on journaled events, against its records.

Real runtime, real sandbox workers, a real SQLite store: the sink runs for real first (its
attempts recorded), its script changes, and the replay runs the new one in the sandbox.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from knot import Config, Runtime
from knot._allowlist import AllowList
from knot._config import DeliverySettings, ScriptSettings, StoreSettings
from knot._exceptions import InvalidInput, NotFound
from knot._replay import ReplayReport
from knot.engine.attempts import Attempt
from knot.scripts import load_script

from .conftest import recording
from .receiver import Receiver

pytestmark = pytest.mark.anyio

GREETER = """\
import knot.event
name = knot.event.get_string("name", "nobody")
print("hello " + name)
"""


def config(project: Path) -> Config:
    return Config(
        store=StoreSettings(path=str(project / ".knot" / "knot.db")),
        delivery=DeliverySettings(attempts=1, backoff=(0.001,)),
        scripts=ScriptSettings(timeout=5.0, memory_mb=64, workers=1),
    )


async def install(rt: Runtime, project: Path, body: str, *, name: str = "greeter") -> None:
    """Write the sink's script and load it, as a save of scripts/sinks/<name>.py does."""
    folder = project / "sinks"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"# events: custom.greet.*\n{body}", encoding="utf-8")
    load = load_script(path)
    assert load.spec is not None, load.problems
    await rt.add_sink(load.spec)


async def greet(rt: Runtime, *names: str) -> list[str]:
    ids = [await rt.emit("greet.someone", {"name": n}) for n in names]
    await rt.wait_idle()
    return ids


def statuses(report: ReplayReport) -> list[str]:
    return [e.status.value for e in report.events]


async def test_an_unchanged_script_replays_the_same(project: Path) -> None:
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        ids = await greet(rt, "ada", "bob", "cy")
        report = await rt.replay("greeter")
    assert [e.id for e in report.events] == ids
    assert statuses(report) == ["same"] * 3
    assert report.summary == {
        "same": 3,
        "changed": 0,
        "now_failing": 0,
        "now_passing": 0,
        "no_record": 0,
    }
    assert report.events[0].then is not None
    assert report.events[0].then.output == ("hello ada",)
    assert report.events[0].then.version == report.version
    assert not report.differs


async def test_a_changed_script_shows_changed_with_the_diff(project: Path) -> None:
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        await greet(rt, "ada", "bob")
        old = rt.sink("greeter").version
        changed = GREETER.replace('"hello "', '"hi "')
        await install(rt, project, changed + 'knot.event.emit("greeted", {"who": name})\n')
        report = await rt.replay("greeter")
    assert statuses(report) == ["changed", "changed"]
    first = report.events[0]
    assert first.then is not None
    assert first.then.version == old != report.version
    assert first.diff[0].startswith(f"--- then (version {old[:12]})")
    assert "-print  hello ada" in first.diff
    assert "+print  hi ada" in first.diff
    assert '+emit   custom.greeted {"who":"ada"}' in first.diff
    text = report.render_text()
    assert "Replayed 2 events on greeter" in text
    assert "2 changed" in text
    assert "+print  hi bob" in text


async def test_a_script_that_now_raises_is_now_failing_and_a_fixed_one_now_passing(
    project: Path,
) -> None:
    broken = GREETER + 'if name == "bob":\n    raise ValueError("no bobs")\n'
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        await greet(rt, "ada", "bob")
        await install(rt, project, broken)
        failing = await rt.replay("greeter")
        await greet(rt, "bob")  # fails for real now, and is recorded failing
        await install(rt, project, GREETER)
        fixed = await rt.replay("greeter")
    assert statuses(failing) == ["same", "now_failing"]
    bob = failing.events[1]
    assert bob.now.failed
    assert "ValueError: no bobs" in bob.now.error
    assert any(line.startswith("+error  ") and "no bobs" in line for line in bob.diff)
    assert statuses(fixed) == ["same", "same", "now_passing"]
    assert fixed.events[2].then is not None
    assert fixed.events[2].then.failed


async def test_events_without_a_record_show_no_record(project: Path) -> None:
    async with Runtime(project, config=config(project)) as rt:
        early = await greet(rt, "ada")  # journaled before the sink existed: never delivered
        await install(rt, project, GREETER)
        later = await greet(rt, "bob", "cy")
        rt.delivery.flush_attempts()
        await rt.flush()
    # An older knot-runtime recorded attempts without a version (and without emits): their
    # rows as it wrote them.
    db = sqlite3.connect(project / ".knot" / "knot.db")
    with db:
        db.execute("UPDATE attempts SET version = ''")
        rows = db.execute("SELECT id, records FROM attempts WHERE records != ''").fetchall()
        for row_id, records in rows:
            old = json.dumps([r[:8] for r in json.loads(records)])
            db.execute("UPDATE attempts SET records = ? WHERE id = ?", (old, row_id))
    db.close()
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        newest = await greet(rt, "dee", "eve")
        rt.delivery.flush_attempts()
        await rt.flush()
        eve = await rt.get_event(newest[1])
        assert eve is not None
        # A store that has forgotten one record (pruned apart from its event): nothing to say.
        with sqlite3.connect(project / ".knot" / "knot.db") as db:
            db.execute("DELETE FROM attempts WHERE lo <= ? AND hi >= ?", (eve.seq, eve.seq))
        report = await rt.replay("greeter")
    assert [e.id for e in report.events] == early + later + newest
    assert statuses(report) == ["no_record", "no_record", "no_record", "same", "no_record"]
    assert report.events[0].now.output == ("hello ada",)
    assert report.events[4].then is None
    assert report.events[4].now.output == ("hello eve",)
    assert any("no record" in note for note in report.notes)


async def test_a_replay_delivers_journals_and_writes_nothing(project: Path) -> None:
    body = (
        "import knot.event, knot.kv\n"
        "n = knot.kv.incr('seen')\n"
        "knot.event.emit('greeted', {'n': n})\n"
        "knot.event.directive('hello', {'n': n})\n"
        "print('seen', n)\n"
    )
    async with Runtime(project, config=config(project)) as rt:
        watcher = recording("watcher", "*")
        await rt.add_sink(watcher)
        await install(rt, project, body)
        await greet(rt, "ada", "bob")
        seen = len(watcher.events)
        head = (await rt.events(limit=1))[0].seq
        report = await rt.replay("greeter")
        await rt.wait_idle()
        after = (await rt.events(limit=1))[0].seq
        kv = await rt.journal.call(lambda s: s.kv_get("script:sinks/greeter", "seen", now=0))
        attempts = rt.store.sink_attempts("greeter", 0, after)
    assert seen == 4  # two greetings, two emits
    assert len(watcher.events) == seen
    assert after == head
    assert kv is not None
    assert kv.value == 2
    assert len(attempts) == 2  # the replay's runs are not attempts
    # The scratch copy starts from the keys now (2) and carries from event to event.
    assert [e.now.output for e in report.events] == [("seen 3",), ("seen 4",)]
    assert statuses(report) == ["changed", "changed"]
    assert report.events[0].now.emitted == (("custom.greeted", '{"n":3}'),)
    assert report.events[0].now.directives == (("hello", '{"n":3}'),)


async def test_since_from_limit_and_patterns_choose_the_events(project: Path) -> None:
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        ids = await greet(rt, *[f"n{i}" for i in range(8)])
        await rt.emit("greet.other", {"name": "x"})
        await rt.emit("unrelated", {})
        await rt.wait_idle()
        events = {e.id: e for e in await rt.events(limit=20)}
        seqs = [events[i].seq for i in ids]
        newest = await rt.replay("greeter", limit=3)
        every = await rt.replay("greeter")
        from_fifth = await rt.replay("greeter", from_seq=seqs[4], limit=2)
        since = await rt.replay("greeter", since=events[ids[6]].ts)
        future = await rt.replay("greeter", since="2999-01-01")
        ago = await rt.replay("greeter", since="1h", events="custom.greet.someone")
        other = await rt.replay("greeter", events="custom.greet.other")
    assert len(every.events) == 9  # the eight greetings and greet.other, not `unrelated`
    assert [e.id for e in newest.events] == [*ids[6:], every.events[-1].id]
    assert [e.seq for e in from_fifth.events] == seqs[4:6]
    assert [e.id for e in since.events] == [*ids[6:], every.events[-1].id]
    assert future.events == ()
    assert future.notes == ("No journaled event matched.",)
    assert [e.id for e in ago.events] == ids
    assert [e.type for e in other.events] == ["custom.greet.other"]


async def test_hostile_requests_are_refused_with_reasons(project: Path) -> None:
    async with Runtime(project, config=config(project)) as rt:
        await install(rt, project, GREETER)
        await rt.add_sink(
            {"name": "hook", "type": "webhook", "events": "*", "url": "http://127.0.0.1:9/"}
        )
        with pytest.raises(NotFound, match="no sink named 'nope'"):
            await rt.replay("nope")
        with pytest.raises(InvalidInput, match="webhook sink: it runs no script"):
            await rt.replay("hook")
        with pytest.raises(InvalidInput, match="between 1 and 10000"):
            await rt.replay("greeter", limit=10**9)
        with pytest.raises(InvalidInput, match="between 1 and 10000"):
            await rt.replay("greeter", limit=0)
        with pytest.raises(InvalidInput, match="not understood"):
            await rt.replay("greeter", since="last tuesday")
        with pytest.raises(InvalidInput, match="not both"):
            await rt.replay("greeter", since="1d", from_seq=3)
        with pytest.raises(InvalidInput, match="from 0 to"):
            await rt.replay("greeter", from_seq=-5)
        with pytest.raises(InvalidInput, match="from 0 to"):
            await rt.replay("greeter", from_seq=10**30)  # past what SQLite holds
        with pytest.raises(InvalidInput, match="not supported"):
            await rt.replay("greeter", events="*.created")
        huge = await rt.replay("greeter", since="999999w", limit=10_000)
    assert huge.events == ()


async def test_a_method_sink_is_refused_with_the_reason(project: Path) -> None:
    methods = project / "scripts" / "methods"
    methods.mkdir(parents=True)
    (methods / "tally.py").write_text(
        "import knot.methods\n\n"
        "@knot.methods.method(events=['custom.greet.*'])\n"
        "def count(params):\n    return {'n': 1}\n",
        encoding="utf-8",
    )
    cfg = replace(config(project), scripts=replace(config(project).scripts, dir="scripts"))
    async with Runtime(project, config=cfg) as rt:
        for _ in range(200):
            if "tally.count" in {s.name for s in rt.sinks()}:
                break
            await rt.wait_idle()
        await greet(rt, "ada")
        rt.delivery.flush_attempts()
        await rt.flush()
        with pytest.raises(InvalidInput, match="method script's method; replay takes script"):
            await rt.replay("tally.count")
        [attempt] = rt.store.sink_attempts("tally.count", 0, 10)
    # Method deliveries are recorded all the same: version and result.
    assert attempt.version
    assert attempt.result == '{"n":1}'


async def test_http_requests_are_not_sent_and_said_so(project: Path, receiver: Receiver) -> None:
    url = receiver.url("/status")
    body = f"import requests\nr = requests.post({url!r}, data='x')\nprint(r.status_code, r.text)\n"
    host = url.split("/")[2]
    cfg = config(project)
    cfg = replace(cfg, scripts=replace(cfg.scripts, http_allow=AllowList.parse([host])))
    async with Runtime(project, config=cfg) as rt:
        await install(rt, project, body)
        ids = await greet(rt, "ada")
        sent = len(receiver.at("/status"))
        report = await rt.replay("greeter")
    assert sent == 1
    assert len(receiver.at("/status")) == 1  # the replay's request never left
    [event] = report.events
    assert event.id == ids[0]
    assert event.then is not None
    assert event.then.output[0].startswith("200 ")
    assert event.now.output == ("200 {}",)  # the stand-in answer
    assert event.status.value == "changed"
    assert event.notes == (f"HTTP POST {url} not sent",)
    assert any("1 HTTP request(s) were checked" in note for note in report.notes)


async def test_what_a_run_emitted_then_is_read_back_from_the_journal(project: Path) -> None:
    emitting = (
        "import knot.event\n"
        "name = knot.event.get_string('name')\n"
        "try:\n"
        "    knot.event.emit('not a type!', {})  # refused: it still takes an index\n"
        "except Exception:\n"
        "    pass\n"
        "knot.event.emit('greeted', {'who': name, 'n': 1})\n"
        "knot.event.emit('greeted', {'who': name, 'n': 2})\n"
    )
    async with Runtime(project, config=config(project)) as rt:
        watcher = recording("watcher", "custom.greeted")
        await rt.add_sink(watcher)
        await install(rt, project, emitting)
        await greet(rt, "ada", "bob")
        same = await rt.replay("greeter")
        await install(rt, project, emitting.replace("'n': 2", "'n': 3"))
        changed = await rt.replay("greeter")
    assert len(watcher.events) == 4
    assert [e.status.value for e in same.events] == ["same", "same"]
    first = same.events[0]
    assert first.then is not None
    assert first.then.emitted == (
        ("custom.greeted", '{"n":1,"who":"ada"}'),
        ("custom.greeted", '{"n":2,"who":"ada"}'),
    )
    assert first.now.emitted == first.then.emitted
    assert statuses(changed) == ["changed", "changed"]
    assert changed.events[1].diff[2:] == (
        "@@ -1,2 +1,2 @@",
        ' emit   custom.greeted {"n":1,"who":"bob"}',
        '-emit   custom.greeted {"n":2,"who":"bob"}',
        '+emit   custom.greeted {"n":3,"who":"bob"}',
    )


def test_records_keep_what_they_said_through_the_store_in_each_form() -> None:
    from array import array

    from knot.engine.attempts import AttemptBatch, pack, unpack

    webhook = Attempt.new("s", 1, 1, 10.0, 0.1, status=204)  # no script: no version
    silent = Attempt.new("s", 2, 1, 10.1, 0.1, version="v1")  # its version only
    directed = Attempt.new(
        "s", 3, 1, 10.2, 0.1, version="v1", directives=(("hi", '{"a":1}'),), output=("x",)
    )
    answered = Attempt.new("s", 4, 1, 10.3, 0.1, version="v2", result='{"n":1}')
    failed = Attempt.new("s", 5, 2, 10.4, 0.1, version="v2", error="boom", output=("y",))
    records = (webhook, silent, directed, answered, failed)
    batch = AttemptBatch("s", 10.0, 10.5, 0.5, array("q", [6, 7]), records, "v2")
    [row] = list(pack([batch]))
    back = {a.seq: a for a in unpack(row, range(10))}
    for record in records:
        assert back[record.seq] == record
    assert [back[6].version, back[7].version] == ["v2", "v2"]  # the run's
    assert (back[2].directives, back[2].result) == ((), "")
    assert json.loads(row[7])[1] == [2, 1, 10.1, 0.1, "delivered", 0, "", [], "v1"]
