"""Script sinks in a runtime: `knot.event` in scripts, emit, directives, output, the folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from knot import AuditKind, Config, DeliveryStatus, Runtime, Space
from knot._config import DeliverySettings, ScriptSettings
from knot._events import Actor, ActorKind
from knot.scripts import load_script
from knot.scripts.reload import Reloader
from knot.scripts.sinks import ScriptSinks
from knot.sinks import Directive

from .conftest import recording

pytestmark = pytest.mark.anyio


def config(**delivery: object) -> Config:
    settings = {"attempts": 1, "backoff": (0.01,), **delivery}
    return Config(
        delivery=DeliverySettings(**settings),  # type: ignore[arg-type]
        scripts=ScriptSettings(timeout=5.0, memory_mb=64, workers=1),
    )


def write_script(folder: Path, name: str, events: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"# events: {events}\n{body}", encoding="utf-8")
    return path


async def add_script(rt: Runtime, folder: Path, name: str, events: str, body: str) -> None:
    load = load_script(write_script(folder, name, events, body))
    assert load.spec is not None, load.problems
    await rt.add_sink(load.spec)


ACCESSORS = """
import json, knot.event
e = knot.event
print(json.dumps({
    "id": e.id(), "type": e.type(), "ts": e.ts(), "data": e.data(),
    "space": e.space(), "space_urls": e.space_urls(), "actor": e.actor(), "custom": e.custom(),
    "s": e.get_string("s"), "s_wrong": e.get_string("n", "dflt"), "s_missing": e.get_string("x"),
    "i": e.get_int("n"), "i_float": e.get_int("whole"), "i_frac": e.get_int("frac", -1),
    "i_wrong": e.get_int("s", 7), "i_bool": e.get_int("flag", 3), "i_missing": e.get_int("x"),
    "b": e.get_bool("flag"), "b_wrong": e.get_bool("n", True), "b_missing": e.get_bool("x"),
    "l": e.get_list("items"), "l_wrong": e.get_list("s", ["d"]), "l_missing": e.get_list("x"),
    "d": e.get_dict("obj"), "d_wrong": e.get_dict("items", {"d": 1}), "d_missing": e.get_dict("x"),
}, sort_keys=True))
"""

PAYLOAD = {
    "s": "hello",
    "n": 42,
    "whole": 3.0,
    "frac": 2.5,
    "flag": True,
    "items": [1, "two"],
    "obj": {"k": "v"},
}


async def test_every_accessor_and_default(tmp_path: Path) -> None:
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "look", "*", ACCESSORS)
        space = Space("sp1", "web", ("http://127.0.0.1:8080",))
        actor = Actor("u1", "ada", ActorKind.USER)
        report = await rt.emit_and_wait("myapp.deployed", PAYLOAD, space=space, actor=actor)
        outcome = report.outcomes["look"]
        assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
        assert outcome.result is not None
        seen = json.loads(outcome.result.output[0])
        event = report.event
        assert seen == {
            "id": event.id,
            "type": "custom.myapp.deployed",
            "ts": event.ts,
            "data": PAYLOAD,
            "space": {"id": "sp1", "name": "web", "urls": ["http://127.0.0.1:8080"]},
            "space_urls": ["http://127.0.0.1:8080"],
            "actor": {"id": "u1", "username": "ada", "kind": "User"},
            "custom": PAYLOAD,
            "s": "hello",
            "s_wrong": "dflt",
            "s_missing": "",
            "i": 42,
            "i_float": 3,
            "i_frac": -1,
            "i_wrong": 7,
            "i_bool": 3,
            "i_missing": 0,
            "b": True,
            "b_wrong": True,
            "b_missing": False,
            "l": [1, "two"],
            "l_wrong": ["d"],
            "l_missing": [],
            "d": {"k": "v"},
            "d_wrong": {"d": 1},
            "d_missing": {},
        }


async def test_system_events_have_no_custom_scope_and_spaceless_events_an_empty_space(
    tmp_path: Path,
) -> None:
    body = "import knot.event\nprint(knot.event.custom(), knot.event.space()['name'] == '')\n"
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "sys", "space.started, custom.*", body)
        started = await rt.emit_system("space.started", {"space_name": "web"}, space=None)
        await rt.emit("plain", {"a": 1})
        await rt.wait_idle()
        assert started
        assert rt.sink("sys").status()["output"] == ["{} True", "{'a': 1} True"]


async def test_emit_raises_a_child_event_one_level_deeper(tmp_path: Path) -> None:
    body = (
        "import knot.event\n"
        "child = knot.event.emit('deploy.logged', {'from': knot.event.id()})\n"
        "print('child', child)\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "logger", "custom.deploy.done", body)
        rec = recording("rec", "custom.deploy.logged")
        await rt.add_sink(rec)
        report = await rt.emit_and_wait("deploy.done", {}, owner="u9")
        (child,) = await rec.wait_for(1)
        assert child.type == "custom.deploy.logged"
        assert child.data == {"from": report.id}
        assert child.parent == report.id
        assert child.depth == 1
        assert child.owner == "u9"
        assert report.outcomes["logger"].result is not None
        assert report.outcomes["logger"].result.output == (f"child {child.id}",)


async def test_emit_chains_stop_at_max_depth_with_an_audit_entry(tmp_path: Path) -> None:
    body = "import knot.event\nknot.event.emit('loop', {'n': knot.event.get_int('n') + 1})\n"
    async with Runtime(tmp_path, config=config(max_depth=3)) as rt:
        await add_script(rt, tmp_path / "s", "looper", "custom.loop", body)
        await rt.emit("loop", {"n": 0})
        for _ in range(50):
            await rt.wait_idle()
            if len(await rt.events("custom.loop")) >= 4:
                break
        await rt.wait_idle()
        await rt.flush()
        chain = await rt.events("custom.loop")
        assert [e.depth for e in chain] == [0, 1, 2, 3]
        assert [e.data["n"] for e in chain] == [0, 1, 2, 3]
        audit = await rt.audit_entries()
        assert [e.kind for e in audit] == [AuditKind.DEPTH_EXCEEDED]
        assert "more than delivery.max_depth = 3" in audit[0].message


async def test_a_bad_emit_is_an_exception_the_script_can_catch(tmp_path: Path) -> None:
    body = (
        "import knot.event\n"
        "try:\n    knot.event.emit('bad type!', {})\nexcept ValueError as e:\n"
        "    print('refused:', e)\n"
        "knot.event.emit('fine', [1])\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "emitter", "custom.go", body)
        report = await rt.emit_and_wait("go", {})
        outcome = report.outcomes["emitter"]
        assert outcome.status is DeliveryStatus.FAILED
        assert "TypeError: knot.event.emit() needs the payload as a dict" in outcome.error
        lines = rt.sink("emitter").status()["output"]
        assert len(lines) == 1
        assert lines[0].startswith("refused: The event type 'bad type!' is not valid")


async def test_directives_reach_the_synchronous_answer(tmp_path: Path) -> None:
    body = (
        "import knot.event\n"
        "knot.event.directive('say', {'message': 'hi ' + knot.event.get_string('name')})\n"
        "knot.event.directive('noop')\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "greeter", "custom.hello.greet", body)
        report = await rt.emit_and_wait("hello.greet", {"name": "Ada"})
        result = report.outcomes["greeter"].result
        assert result is not None
        assert result.directives == (
            Directive("say", {"message": "hi Ada"}, sink="greeter"),
            Directive("noop", {}, sink="greeter"),
        )
        assert result.directives[0].to_dict(eid="e1") == {
            "type": "directive",
            "name": "say",
            "options": {"message": "hi Ada"},
            "meta": {"rid": "greeter", "eid": "e1"},
        }


async def test_print_output_goes_to_the_log_and_the_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = "import knot.event\nprint('line one')\nprint('two', 2, sep='|')\n"
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "talker", "*", body)
        with caplog.at_level(logging.INFO, logger="knot.sink.talker"):
            await rt.emit_and_wait("x", {})
        assert [r.getMessage() for r in caplog.records if r.name == "knot.sink.talker"] == [
            "talker: line one",
            "talker: two|2",
        ]
        (status,) = [s for s in rt.sinks() if s.name == "talker"]
        assert status.to_dict()["output"] == ["line one", "two|2"]


async def test_huge_output_is_truncated(tmp_path: Path) -> None:
    body = "for i in range(100000):\n    print('x' * 100)\n"
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "loud", "*", body)
        report = await rt.emit_and_wait("x", {})
        result = report.outcomes["loud"].result
        assert result is not None
        assert result.output[-1] == "[output truncated at 65536 bytes]"
        kept = "\n".join(result.output[:-1])
        assert 65536 - 101 <= len(kept) <= 65536


async def test_the_scripts_folder_is_loaded_at_start(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    sinks = project / "scripts" / "sinks"
    write_script(sinks, "good", "custom.a.*", "print('good')\n")
    bad = write_script(sinks, "bad", "*", "import os\n")
    (sinks / "no_header.py").write_text("x = 1\n")
    (sinks / "notes.txt").write_text("not a script")
    async with Runtime(project, config=config()) as rt:
        statuses = {s.name: s for s in rt.sinks()}
        assert set(statuses) == {"good", "bad", "no_header"}
        assert statuses["good"].problem == ""
        assert statuses["good"].spec.events_text == "custom.a.*"
        assert bad.exists()
        assert statuses["bad"].problem == "scripts/sinks/bad.py:2:8: import of 'os' is not allowed"
        assert statuses["bad"].spec.type == "script"
        assert not statuses["bad"].spec.active
        assert "missing '# events:' header" in statuses["no_header"].problem
        report = await rt.emit_and_wait("a.b", {})
        assert list(report.outcomes) == ["good"]
        await rt.flush()
        rejected = [e for e in await rt.audit_entries() if e.kind is AuditKind.SCRIPT_REJECTED]
        assert {e.sink for e in rejected} == {"bad", "no_header"}
        assert all(e.to_dict()["title"] == "Event Sink Script Rejected" for e in rejected)


async def test_apply_keeps_the_last_good_version_and_unload_removes(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    path = write_script(project / "scripts" / "sinks", "live", "*", "print('v1')\n")
    async with Runtime(project, config=config()) as rt:
        (reloader,) = [p for p in rt.parts if isinstance(p, Reloader)]
        part = reloader.folders["sinks"]
        assert isinstance(part, ScriptSinks)
        assert (await rt.emit_and_wait("x", {})).outcomes["live"].result.output == ("v1",)  # type: ignore[union-attr]
        # This test drives the part itself: the watcher, noticing the same saves, could apply
        # a version it read before the unlink after the unload below (then undo it once it
        # sees the unlink), which a loaded machine showed.
        await reloader.stop()
        path.write_text("# events: *\nprint('v2')\n")
        assert (await part.load(rt, path, path.read_text())).ok
        assert (await rt.emit_and_wait("x", {})).outcomes["live"].result.output == ("v2",)  # type: ignore[union-attr]
        path.write_text("# events: *\nimport socket\n")
        assert not (await part.load(rt, path, path.read_text())).ok
        report = await rt.emit_and_wait("x", {})
        assert report.outcomes["live"].result.output == ("v2",)  # type: ignore[union-attr]
        (status,) = [s for s in rt.sinks() if s.name == "live"]
        assert "import of 'socket' is not allowed" in status.problem
        path.unlink()
        assert await part.unload(rt, path)
        assert [s.name for s in rt.sinks()] == []
