"""Hot reload of script sinks: real files, real watchfiles, a real runtime and sandbox workers."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from knot import AuditKind, DeliveryStatus, Event, Outcome, Runtime
from knot.scripts.reload import Reloader, ReloadStatus

from .conftest import write_config
from .reloading import Reloads, atomic_save, vim_save

pytestmark = pytest.mark.anyio

SETTINGS = """
[delivery]
attempts = 1
backoff = 0.001

[scripts]
workers = 1
"""


def script(version: str, events: str = "custom.app.*", extra: str = "") -> str:
    return (
        f"# events: {events}\n"
        "import knot.event\n"
        "import time\n"
        "if knot.event.get_bool('block'):\n"
        "    time.sleep(0.6)\n"
        f"{extra}"
        f"print('{version}', knot.event.get_int('i'))\n"
    )


def reloader_of(rt: Runtime) -> Reloader:
    (reloader,) = [p for p in rt.parts if isinstance(p, Reloader)]
    return reloader


@dataclass
class Live:
    rt: Runtime
    reloads: Reloads
    sinks: Path

    async def output(self, event_type: str = "app.x", **data: object) -> tuple[str, ...]:
        """Raise one event and return what the sink `hello` printed for it."""
        report = await self.rt.emit_and_wait(event_type, data, timeout=10)
        outcome = report.outcomes["hello"]
        assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
        assert outcome.result is not None
        return outcome.result.output


@pytest.fixture
async def live(project: Path) -> AsyncIterator[Live]:
    write_config(project, SETTINGS)
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    (sinks / "hello.py").write_text(script("v1"), encoding="utf-8")
    async with Runtime(project) as rt:
        yield Live(rt, Reloads(reloader_of(rt)), sinks)


async def test_scripts_present_at_start_are_loaded(live: Live) -> None:
    assert live.rt.registry.spec("hello").type == "script"
    assert await live.output(i=1) == ("v1 1",)


async def test_modify_create_delete_rename(live: Live) -> None:
    hello = live.sinks / "hello.py"
    hello.write_text(script("v2"), encoding="utf-8")
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.RELOADED
    assert reload.message == "reloaded sink hello (scripts/sinks/hello.py)"
    assert await live.output(i=2) == ("v2 2",)

    (live.sinks / "other.py").write_text(script("o1", "custom.other"), encoding="utf-8")
    reload = await live.reloads.named("other")
    assert reload.status is ReloadStatus.LOADED
    assert live.rt.registry.spec("other").events_text == "custom.other"

    (live.sinks / "other.py").unlink()
    reload = await live.reloads.named("other")
    assert reload.status is ReloadStatus.REMOVED
    assert "other" not in live.rt.registry

    os.rename(hello, live.sinks / "renamed.py")
    removed = await live.reloads.named("hello")
    loaded = await live.reloads.named("renamed")
    assert (removed.status, loaded.status) == (ReloadStatus.REMOVED, ReloadStatus.LOADED)
    assert "hello" not in live.rt.registry
    report = await live.rt.emit_and_wait("app.x", {"i": 3}, timeout=10)
    outcome = report.outcomes["renamed"]
    assert outcome.result is not None
    assert outcome.result.output == ("v2 3",)


async def test_atomic_save_and_vim_save_reload(live: Live) -> None:
    hello = live.sinks / "hello.py"
    atomic_save(hello, script("atomic"))
    assert (await live.reloads.named("hello")).status is ReloadStatus.RELOADED
    assert await live.output(i=1) == ("atomic 1",)

    vim_save(hello, script("vim"))
    assert (await live.reloads.named("hello")).status is ReloadStatus.RELOADED
    assert await live.output(i=2) == ("vim 2",)

    # The same text saved again (touch, vim :w without edits) is no reload at all, and the
    # editors' leftovers (4913, hello.py~, .hello.py.tmpNNN) never became sinks.
    vim_save(hello, script("vim"))
    atomic_save(hello, script("vim"))
    assert await live.reloads.quiet() == []
    assert sorted(live.rt.registry.names()) == ["hello"]


async def test_a_vanished_file_that_comes_back_soon_is_a_modify(live: Live) -> None:
    """vim's rename-away, write-anew split across two notifications keeps the sink (and queue)."""
    hello = live.sinks / "hello.py"
    backup = live.sinks / "hello.py~"
    os.replace(hello, backup)
    await asyncio.sleep(0.04)  # long enough for watchfiles to report the deletion on its own
    hello.write_text(script("back"), encoding="utf-8")
    backup.unlink()
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.RELOADED
    assert await live.output(i=1) == ("back 1",)


async def test_ignored_files_change_nothing(live: Live) -> None:
    (live.sinks / "notes.txt").write_text("x", encoding="utf-8")
    (live.sinks / ".hidden.py").write_text("import os\n", encoding="utf-8")
    (live.sinks / "#hello.py#").write_text("import os\n", encoding="utf-8")
    (live.sinks / "__pycache__").mkdir()
    (live.sinks / "__pycache__" / "x.py").write_text("import os\n", encoding="utf-8")
    (live.sinks / "nested").mkdir()
    (live.sinks / "nested" / "deep.py").write_text("# events: *\n", encoding="utf-8")
    assert await live.reloads.quiet() == []
    assert sorted(live.rt.registry.names()) == ["hello"]


async def test_broken_save_keeps_the_last_good_version_and_reports_where(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="knot")
    hello = live.sinks / "hello.py"
    hello.write_text(script("v2", extra="import os\n"), encoding="utf-8")
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.KEPT
    (problem,) = reload.problems
    assert problem == "scripts/sinks/hello.py:6:8: import of 'os' is not allowed"
    assert reload.message == (
        f"kept the last good version of sink hello (scripts/sinks/hello.py): {problem}"
    )
    # the log, the sink's status and the audit all say file:line:col: rule
    assert reload.message in caplog.text
    (status,) = [s for s in live.rt.sinks() if s.name == "hello"]
    assert status.problem == problem
    assert status.spec.active
    await live.rt.flush()
    (entry,) = [e for e in await live.rt.audit_entries() if e.kind is AuditKind.SCRIPT_REJECTED]
    assert problem in entry.message
    assert entry.sink == "hello"
    # ...and the old code goes on handling events
    assert await live.output(i=7) == ("v1 7",)

    hello.write_text("# events: custom.app.*\nprint(\n", encoding="utf-8")  # a syntax error
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.KEPT
    assert reload.problems[0].startswith("scripts/sinks/hello.py:2:"), reload.problems

    hello.write_text(script("v3"), encoding="utf-8")
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.RELOADED
    assert live.rt.registry.problem("hello") == ""
    assert await live.output(i=8) == ("v3 8",)


async def test_broken_from_the_first_save_is_listed_then_fixed(live: Live) -> None:
    path = live.sinks / "fresh.py"
    path.write_text("print('no header')\n", encoding="utf-8")
    reload = await live.reloads.named("fresh")
    assert reload.status is ReloadStatus.REJECTED
    assert reload.problems[0].startswith("scripts/sinks/fresh.py:1:1: missing '# events:'")
    (status,) = [s for s in live.rt.sinks() if s.name == "fresh"]
    assert status.problem
    assert not status.spec.active
    assert "fresh" not in live.rt.registry

    path.write_text(script("f1", "custom.fresh"), encoding="utf-8")
    assert (await live.reloads.named("fresh")).status is ReloadStatus.LOADED
    (status,) = [s for s in live.rt.sinks() if s.name == "fresh"]
    assert status.problem == ""

    path.unlink()  # a deleted broken-then-fixed script: gone from every listing
    assert (await live.reloads.named("fresh")).status is ReloadStatus.REMOVED
    assert [s.name for s in live.rt.sinks()] == ["hello"]


async def test_changed_events_header_reroutes(live: Live) -> None:
    (live.sinks / "hello.py").write_text(script("b", "custom.other.*"), encoding="utf-8")
    await live.reloads.named("hello")
    report = await live.rt.emit_and_wait("app.x", {"i": 1})
    assert "hello" not in report.outcomes
    assert await live.output("other.y", i=2) == ("b 2",)


def collect(rt: Runtime, sink: str) -> list[tuple[Event, Outcome]]:
    got: list[tuple[Event, Outcome]] = []
    rt.on_outcome(lambda e, o: got.append((e, o)) if o.sink == sink else None)
    return got


async def block_with_queue(live: Live, queued: int) -> list[str]:
    """One event running for 0.6 s in `hello`, `queued` more waiting behind it; their ids."""
    worker = live.rt.delivery.workers["hello"]
    ids = [await live.rt.emit("app.x", {"i": 0, "block": True})]
    async with asyncio.timeout(5):
        while not worker.inflight:
            await asyncio.sleep(0.005)
    ids += [await live.rt.emit("app.x", {"i": i}) for i in range(1, queued + 1)]
    await live.rt.flush()
    async with asyncio.timeout(5):
        while len(worker.queue) < queued:
            await asyncio.sleep(0.005)
    return ids


async def test_queued_events_survive_a_reload_in_order(live: Live) -> None:
    got = collect(live.rt, "hello")
    ids = await block_with_queue(live, 5)
    (live.sinks / "hello.py").write_text(script("v2"), encoding="utf-8")
    await live.reloads.named("hello")
    assert live.rt.delivery.workers["hello"].pending == 6  # nothing lost by the swap

    await live.rt.wait_idle()
    assert [e.id for e, _ in got] == ids
    assert all(o.status is DeliveryStatus.DELIVERED for _, o in got)
    outputs = [o.result.output for _, o in got if o.result is not None]
    assert outputs == [("v1 0",)] + [(f"v2 {i}",) for i in range(1, 6)]


async def test_deleting_a_script_gives_up_its_queue_with_audit(live: Live) -> None:
    got = collect(live.rt, "hello")
    ids = await block_with_queue(live, 3)
    (live.sinks / "hello.py").unlink()
    reload = await live.reloads.named("hello")
    assert reload.status is ReloadStatus.REMOVED
    assert reload.message == "removed sink hello (scripts/sinks/hello.py was deleted)"
    assert "hello" not in live.rt.registry
    # The run in flight finishes (it is not cut off and audited as lost); the queue is given up.
    assert [o.status for _, o in got] == [DeliveryStatus.DELIVERED] + [DeliveryStatus.REMOVED] * 3
    await live.rt.flush()
    removed = [e for e in await live.rt.audit_entries() if e.kind is AuditKind.SINK_REMOVED]
    assert sorted(e.event_id for e in removed) == sorted(ids[1:])
    assert all("scripts/sinks/hello.py was deleted" in e.message for e in removed)


async def test_scripts_folder_deleted_and_created_again(live: Live) -> None:
    scripts = live.rt.project / "scripts"
    shutil.rmtree(scripts)
    assert (await live.reloads.named("hello")).status is ReloadStatus.REMOVED
    assert live.rt.registry.names() == []

    staging = live.rt.project / "staging"
    (staging / "sinks").mkdir(parents=True)
    (staging / "sinks" / "again.py").write_text(script("a1"), encoding="utf-8")
    os.rename(staging, scripts)  # appears all at once, with a script inside
    assert (await live.reloads.named("again")).status is ReloadStatus.LOADED
    # and the new folder is watched
    (scripts / "sinks" / "again.py").write_text(script("a2"), encoding="utf-8")
    assert (await live.reloads.named("again")).status is ReloadStatus.RELOADED


async def test_script_settings_from_knot_toml_apply_to_the_next_run(live: Live) -> None:
    (live.sinks / "hello.py").write_text(script("slow", extra="time.sleep(0.3)\n"), "utf-8")
    await live.reloads.named("hello")
    assert await live.output(i=1) == ("slow 1",)
    write_config(live.rt.project, SETTINGS.replace("workers = 1", "workers = 1\ntimeout = 0.1"))
    assert (await live.reloads.named("knot.toml")).ok
    report = await live.rt.emit_and_wait("app.x", {"i": 2}, timeout=10)
    outcome = report.outcomes["hello"]
    assert outcome.status is DeliveryStatus.FAILED
    assert "scripts.timeout" in outcome.error


async def test_a_scripts_folder_created_after_start_is_watched(project: Path) -> None:
    write_config(project, SETTINGS)
    async with Runtime(project) as rt:
        reloads = Reloads(reloader_of(rt))
        sinks = project / "scripts" / "sinks"
        sinks.mkdir(parents=True)
        (sinks / "late.py").write_text(script("l1"), encoding="utf-8")
        assert (await reloads.named("late")).status is ReloadStatus.LOADED
        (sinks / "late.py").write_text(script("l2"), encoding="utf-8")
        assert (await reloads.named("late")).status is ReloadStatus.RELOADED
        report = await rt.emit_and_wait("app.x", {"i": 1}, timeout=10)
        outcome = report.outcomes["late"]
        assert outcome.result is not None
        assert outcome.result.output == ("l2 1",)


async def test_a_script_cannot_take_the_name_of_a_sink_from_knot_toml(project: Path) -> None:
    write_config(
        project, SETTINGS + '[[sinks]]\nname = "taken"\ntype = "recording"\nevents = "*"\n'
    )
    async with Runtime(project) as rt:
        reloads = Reloads(reloader_of(rt))
        sinks = project / "scripts" / "sinks"
        sinks.mkdir(parents=True)
        (sinks / "taken.py").write_text(script("t1"), encoding="utf-8")
        reload = await reloads.named("taken")
        assert reload.status is ReloadStatus.REJECTED
        assert "already exists (a [[sinks]] table in knot.toml)" in reload.message
        assert rt.registry.spec("taken").type == "recording"  # untouched, still delivering
        report = await rt.emit_and_wait("app.x", {"i": 1})
        assert report.outcomes["taken"].status is DeliveryStatus.DELIVERED
