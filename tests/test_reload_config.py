"""knot.toml hot reload: real files, real watchfiles, a real runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knot import AuditKind, DeliveryStatus, EventError, RecordingSink, Runtime, SinkOrigin
from knot.scripts.reload import Reloader, ReloadStatus

from .conftest import write_config
from .reloading import Reloads, atomic_save, vim_save

pytestmark = pytest.mark.anyio

BASE = """
[delivery]
attempts = 1
backoff = 0.001

[[sinks]]
name = "flaky"
type = "recording"
events = "custom.a.*"
fail_attempts = 1
"""


@pytest.fixture
async def live(project: Path) -> AsyncIterator[tuple[Runtime, Reloads]]:
    write_config(project, BASE)
    reloader = Reloader(folders={})
    async with Runtime(project, parts=[reloader]) as rt:
        yield rt, Reloads(reloader)


async def test_delivery_settings_apply_to_the_next_event(live: tuple[Runtime, Reloads]) -> None:
    rt, reloads = live
    before = await rt.emit_and_wait("a.x", {})
    assert before.outcomes["flaky"].status is DeliveryStatus.FAILED  # one attempt, it fails

    write_config(rt.project, BASE.replace("\nattempts = 1", "\nattempts = 2"))
    reload = await reloads.named("knot.toml")
    assert reload.status is ReloadStatus.RELOADED
    assert "delivery.attempts" in reload.message

    after = await rt.emit_and_wait("a.x", {})
    assert after.outcomes["flaky"].status is DeliveryStatus.DELIVERED
    assert after.outcomes["flaky"].attempts == 2


async def test_payload_limit_and_sinks_change_live(live: tuple[Runtime, Reloads]) -> None:
    rt, reloads = live
    await rt.emit("a.x", {"blob": "x" * 500})
    text = BASE.replace("backoff = 0.001", "backoff = 0.001\nmax_payload_bytes = 100")
    text = text.replace('events = "custom.a.*"', 'events = "custom.b.*"')
    text += '\n[[sinks]]\nname = "second"\ntype = "recording"\nevents = "*"\n'
    atomic_save(rt.project / "knot.toml", text)
    reload = await reloads.named("knot.toml")
    assert "delivery.max_payload_bytes" in reload.message
    assert "sinks" in reload.message

    with pytest.raises(EventError):
        await rt.emit("a.x", {"blob": "x" * 500})
    # flaky now listens to custom.b.* only (re-routed); second is new.
    report = await rt.emit_and_wait("a.x", {})
    assert set(report.outcomes) == {"second"}
    report = await rt.emit_and_wait("b.x", {})
    assert set(report.outcomes) == {"flaky", "second"}
    assert rt.registry.spec("second").origin is SinkOrigin.CONFIG


async def test_broken_file_keeps_last_good_settings_and_says_where(
    live: tuple[Runtime, Reloads], caplog: pytest.LogCaptureFixture
) -> None:
    rt, reloads = live
    caplog.set_level(logging.INFO, logger="knot")
    write_config(rt.project, BASE.replace("\nattempts = 1", "\nattempts = 0"))
    reload = await reloads.named("knot.toml")
    assert reload.status is ReloadStatus.KEPT
    assert rt.config.delivery.attempts == 1
    assert "flaky" in rt.registry

    # line 3 holds `attempts = 0`; the key is named.
    assert "knot.toml:3: delivery.attempts must be an integer >= 1" in reload.message
    assert reload.message in caplog.text
    await rt.flush()
    (entry,) = [e for e in await rt.audit_entries() if e.kind is AuditKind.CONFIG_REJECTED]
    assert "knot.toml:3: delivery.attempts" in entry.message

    write_config(rt.project, "[delivery\nattempts = 2\n")  # not even TOML
    reload = await reloads.named("knot.toml")
    assert reload.status is ReloadStatus.KEPT
    assert "line 1" in reload.message

    vim_save(rt.project / "knot.toml", BASE.replace("\nattempts = 1", "\nattempts = 2"))
    reload = await reloads.named("knot.toml")
    assert reload.status is ReloadStatus.RELOADED
    assert rt.config.delivery.attempts == 2


async def test_restart_only_settings_are_reported_not_applied(
    live: tuple[Runtime, Reloads], caplog: pytest.LogCaptureFixture
) -> None:
    rt, reloads = live
    caplog.set_level(logging.INFO, logger="knot")
    port = rt.config.server.port
    store = rt.config.store.path
    text = f'zone = "elsewhere"\n[server]\nport = {port + 1}\n[store]\npath = "other.db"\n' + BASE
    write_config(rt.project, text.replace("\nattempts = 1", "\nattempts = 2"))
    reload = await reloads.named("knot.toml")
    assert reload.status is ReloadStatus.RELOADED
    assert rt.config.delivery.attempts == 2  # applied
    assert (rt.config.server.port, rt.config.store.path, rt.config.zone) == (port, store, "local")
    for name in ("server.port", "store.path", "zone"):
        assert f"knot.toml: {name} changed; restart the runtime" in caplog.text
        assert name not in reload.message
    event = rt.make_event("a.x", {})
    assert event.zone == "local"


async def test_removed_sink_gives_up_its_queue_and_deleting_the_file_means_defaults(
    project: Path,
) -> None:
    slow = BASE.replace("fail_attempts = 1", "delay = 30").replace(
        "[delivery]", "[delivery]\nstop_grace = 0.2"
    )
    write_config(project, slow)
    reloader = Reloader(folders={})
    async with Runtime(project, parts=[reloader]) as rt:
        reloads = Reloads(reloader)
        sink = rt.sink("flaky")
        assert isinstance(sink, RecordingSink)
        ids = [await rt.emit("a.x", {"i": i}) for i in range(3)]
        await rt.flush()

        (project / "knot.toml").unlink()
        reload = await reloads.named("knot.toml")
        assert reload.status is ReloadStatus.REMOVED
        assert reload.message == (
            "knot.toml was deleted: defaults apply (delivery.attempts, delivery.backoff, "
            "delivery.stop_grace, sinks)"
        )
        assert "flaky" not in rt.registry
        assert rt.config.delivery.attempts == 3  # the default again
        await rt.flush()
        removed = [e for e in await rt.audit_entries() if e.kind is AuditKind.SINK_REMOVED]
        assert [e.event_id for e in removed] == ids
        assert all("removed from knot.toml" in e.message for e in removed)
        # The first was being delivered: its 30 s attempt was stopped after stop_grace (the
        # setting it started under), so nobody knows whether it arrived.
        assert "may or may not have arrived" in removed[0].message
        assert all("will not be delivered" in e.message for e in removed[1:])


async def test_comment_only_edit_changes_nothing(live: tuple[Runtime, Reloads]) -> None:
    rt, reloads = live
    sink = rt.sink("flaky")
    write_config(rt.project, "# a comment\n" + BASE)
    reload = await reloads.named("knot.toml")
    assert reload.message == "reloaded knot.toml (no setting changed)"
    assert rt.sink("flaky") is sink  # not rebuilt
    touched = rt.project / "knot.toml"
    touched.write_text(touched.read_text())  # same bytes: not even a reload
    assert await reloads.quiet() == []


HOOK = '\n[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.*"\n'


async def test_a_sink_table_that_cannot_start_is_named_by_its_line_and_audited(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A [[sinks]] table that parses but cannot be a sink (a webhook without a url) was logged
    # without its line and not audited, at start and on a reload alike.
    write_config(project, BASE + HOOK)
    reloader = Reloader(folders={})
    with caplog.at_level(logging.ERROR, logger="knot"):
        async with Runtime(project, parts=[reloader]) as rt:
            reloads = Reloads(reloader)
            at = (BASE + HOOK).splitlines().index('name = "hook"')  # its [[sinks]] line
            problem = (
                f"{project / 'knot.toml'}:{at}: The sink 'hook' is not valid: A webhook sink "
                "needs a url (http:// or https://)."
            )
            assert {s.name: s.problem for s in rt.sinks()} == {"flaky": "", "hook": problem}
            assert problem in caplog.messages
            await rt.flush()
            (entry,) = await rt.audit_entries()
            assert (entry.kind, entry.sink, entry.message) == (
                AuditKind.CONFIG_REJECTED,
                "hook",
                problem,
            )

            write_config(project, BASE + HOOK.replace('"hook"', '"hook2"') + HOOK)
            await reloads.named("knot.toml")
            await rt.flush()
            entries = [e.message for e in await rt.audit_entries()]
            assert len(entries) == 2  # the unchanged, still broken `hook` is not said again
            assert entries[-1] == (
                f"knot.toml:{at}: The sink 'hook2' is not valid: A webhook sink needs a url "
                "(http:// or https://)."
            )
            assert entries[-1] in caplog.messages
