"""Local spaces in an embedded runtime: real processes, real health checks on loopback, and
the system events they raise, checked field by field and in order at every sink."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from knot import (
    ActorKind,
    Config,
    Event,
    NotFound,
    RecordingSink,
    Runtime,
    SinkOrigin,
    SinkSpec,
    SpaceError,
    SpaceState,
    parse_patterns,
)
from knot._config import SpaceSettings

from .conftest import recording
from .spacehelpers import (
    KNOT_FIELDS,
    ToggleServer,
    group_members,
    parse_ts,
    process_alive,
    until,
)

pytestmark = pytest.mark.anyio

LONG = "sleep 60; true"  # a shell with a child, so the whole process group matters


def config(grace: float = 2.0) -> Config:
    return Config(spaces=SpaceSettings(stop_grace=grace))


@pytest.fixture
async def rt(project: Path) -> AsyncIterator[Runtime]:
    async with Runtime(project, config=config()) as runtime:
        yield runtime


async def space_events(rt: Runtime, sink: RecordingSink, count: int) -> list[Event]:
    await sink.wait_for(count)
    await rt.wait_idle()
    return list(sink.events)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def test_every_event_type_carries_exactly_knots_payload_fields(
    rt: Runtime, project: Path
) -> None:
    sink = recording("spaces", "space.*")
    await rt.add_sink(sink)
    flag = project / "healthy.flag"
    flag.touch()
    created = await rt.spaces.create(
        "web",
        cmd=LONG,
        urls=["http://127.0.0.1:8000", "https://web.example.com"],
        health=f"test -f {flag}",
        interval=0.02,
        threshold=2,
        template_id="tpl-1",
        startup_script_id="boot-1",
    )
    await rt.spaces.start("web")
    await sink.wait_for(3)  # created, started, healthy
    flag.unlink()
    await sink.wait_for(4)  # unhealthy after two failed checks
    await rt.spaces.delete("web")  # stops it first
    events = await space_events(rt, sink, 6)

    assert types(events) == [
        "space.created",
        "space.started",
        "space.healthy",
        "space.unhealthy",
        "space.stopped",
        "space.deleted",
    ]
    for event in events:
        assert set(event.data) == KNOT_FIELDS[event.type], event.type
        assert event.data["space_name"] == "web"
        assert event.data["space_id"] == created.id
        assert event.space is not None
        assert event.space.to_dict() == {
            "id": created.id,
            "name": "web",
            "urls": ["http://127.0.0.1:8000", "https://web.example.com"],
        }
        assert event.owner == ""
        assert event.actor.kind is ActorKind.SYSTEM
    c, st, healthy, unhealthy, stopped, deleted = (e.data for e in events)
    assert c["space_urls"] == ["http://127.0.0.1:8000", "https://web.example.com"]
    assert (c["template_id"], c["startup_script_id"]) == ("tpl-1", "boot-1")
    assert st["space_urls"] == c["space_urls"]
    assert st["node_id"] == rt.spaces.node_id
    assert uuid.UUID(str(st["node_id"]))
    assert (healthy["previous"], healthy["current"]) == ("unknown", "healthy")
    assert (unhealthy["previous"], unhealthy["current"]) == ("healthy", "unhealthy")
    assert unhealthy["consecutive_failures"] == 2
    times = [
        parse_ts(st["started_at"]),
        parse_ts(healthy["checked_at"]),
        parse_ts(unhealthy["checked_at"]),
        parse_ts(stopped["stopped_at"]),
        parse_ts(deleted["deleted_at"]),
    ]
    assert times == sorted(times)
    assert parse_ts(created.created_at) <= times[0]


async def test_start_runs_the_cmd_in_its_own_group_with_output_in_a_log(rt: Runtime) -> None:
    info = await rt.spaces.create("talk", cmd="echo hello from $KNOT_SPACE_NAME; exec sleep 60")
    assert info.state is SpaceState.STOPPED
    assert info.pid == 0
    running = await rt.spaces.start("talk")
    assert running.state is SpaceState.RUNNING
    assert os.getpgid(running.pid) == running.pid
    assert os.getsid(running.pid) == running.pid  # its own session: not our signals
    await until(lambda: "hello from talk" in Path(running.log).read_text())
    assert Path(running.log) == Path(rt.store.path).parent / "spaces" / "talk.log"
    lines = await rt.spaces.logs("talk")
    assert lines[0].endswith("knot: starting space talk: " + running.spec.cmd)
    assert lines[1] == "hello from talk"
    again = await rt.spaces.start("talk")  # already running: nothing changes
    assert again.pid == running.pid
    stopped = await rt.spaces.stop("talk")
    assert stopped.state is SpaceState.STOPPED
    assert stopped.exit_code == -signal.SIGTERM
    assert not process_alive(running.pid)


async def test_stop_sends_sigterm_then_sigkill_after_the_grace(project: Path) -> None:
    async with Runtime(project, config=config(grace=0.3)) as rt:
        # The shell and its child both ignore SIGTERM: only SIGKILL ends them.
        cmd = "trap '' TERM; echo ready; sleep 60; true"
        running = await rt.spaces.create("stubborn", cmd=cmd, start=True)
        # A line of its own: the log's header line holds the command, "ready" included.
        await until(lambda: "ready" in Path(running.log).read_text().splitlines())
        began = time.monotonic()
        stopped = await rt.spaces.stop("stubborn")
        assert time.monotonic() - began >= 0.3
        assert stopped.exit_code == -signal.SIGKILL
        assert group_members(running.pid) == []


async def test_a_process_killed_from_outside_moves_the_space_to_stopped(rt: Runtime) -> None:
    sink = recording("spaces", "space.*")
    await rt.add_sink(sink)
    running = await rt.spaces.create("crashy", cmd=LONG, start=True)
    await until(lambda: len(group_members(running.pid)) == 2)  # sh and its sleep
    os.kill(running.pid, signal.SIGKILL)  # the leader only; its child must not survive
    events = await space_events(rt, sink, 3)
    assert types(events) == ["space.created", "space.started", "space.stopped"]
    info = rt.spaces.get("crashy")
    assert info.state is SpaceState.STOPPED
    assert info.exit_code == -signal.SIGKILL
    await until(lambda: group_members(running.pid) == [])
    # It can be started again, and stops again with its events.
    await rt.spaces.start("crashy")
    await rt.spaces.stop("crashy")
    events = await space_events(rt, sink, 5)
    assert types(events)[3:] == ["space.started", "space.stopped"]


async def test_a_cmd_that_exits_on_its_own_stops_the_space(rt: Runtime) -> None:
    sink = recording("spaces", "space.*")
    await rt.add_sink(sink)
    await rt.spaces.create("oneshot", cmd="echo done; exit 3", start=True)
    events = await space_events(rt, sink, 3)
    assert types(events) == ["space.created", "space.started", "space.stopped"]
    info = rt.spaces.get("oneshot")
    assert (info.state, info.exit_code, info.pid) == (SpaceState.STOPPED, 3, 0)
    assert "done" in await rt.spaces.logs("oneshot")


async def test_health_flips_when_the_server_stops_answering_and_back(rt: Runtime) -> None:
    sink = recording("health", "space.healthy, space.unhealthy")
    await rt.add_sink(sink)
    server = ToggleServer()
    server.start()
    try:
        await rt.spaces.create(
            "api", health=server.url, interval=0.02, timeout=0.5, threshold=3, start=True
        )
        await sink.wait_for(1)
        server.stop()
        await sink.wait_for(2)
        down = rt.spaces.get("api").health
        assert down is not None
        assert down["state"] == "unhealthy"
        assert "failed" in str(down["last_error"])
        server.start()
        await sink.wait_for(3)
        await asyncio.sleep(0.2)  # about ten more healthy checks: none of them is news
    finally:
        server.stop()
    await rt.spaces.stop("api")
    await rt.wait_idle()
    assert [(e.data["previous"], e.data["current"]) for e in sink.events] == [
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "healthy"),
    ]
    assert sink.events[1].data["consecutive_failures"] == 3


async def test_a_health_command_that_runs_too_long_is_a_failure(rt: Runtime) -> None:
    sink = recording("health", "space.unhealthy")
    await rt.add_sink(sink)
    await rt.spaces.create("slow", health="sleep 5", interval=0.02, timeout=0.05, start=True)
    (event,) = await sink.wait_for(1)
    assert event.data["previous"] == "unknown"
    health = rt.spaces.get("slow").health
    assert health is not None
    assert "ran over 0.05 s" in str(health["last_error"])


async def test_health_checks_run_only_while_the_space_runs(rt: Runtime, project: Path) -> None:
    sink = recording("health", "space.healthy, space.unhealthy")
    await rt.add_sink(sink)
    flag = project / "up"
    flag.touch()
    await rt.spaces.create("w", health=f"test -f {flag}", interval=0.02, start=True)
    await sink.wait_for(1)
    await rt.spaces.stop("w")
    flag.unlink()
    await asyncio.sleep(0.15)
    assert len(sink.events) == 1
    stopped = rt.spaces.get("w").health
    assert stopped is not None
    assert stopped["state"] == "unknown"
    flag.touch()
    await rt.spaces.start("w")  # a new start: the first result is news again
    await sink.wait_for(2)
    assert sink.events[1].data["previous"] == "unknown"


async def test_runtime_restart_follows_each_spaces_policy(project: Path) -> None:
    async with Runtime(project, config=config()) as rt:
        again = await rt.spaces.create("again", cmd=LONG, start=True)
        stays = await rt.spaces.create("stays", cmd=LONG, on_restart="stop", start=True)
        await rt.spaces.create("idle", cmd=LONG, on_restart="start")  # never started
        await rt.spaces.create("record", urls=["http://127.0.0.1:1"], start=True)  # no cmd
        node = rt.spaces.node_id
    # The runtime's own stop ended both processes and said so.
    assert not process_alive(again.pid)
    assert not process_alive(stays.pid)
    async with Runtime(project, config=config()) as rt:
        states = {s.name: s.state for s in rt.spaces.list()}
        assert states == {
            "again": SpaceState.RUNNING,
            "stays": SpaceState.STOPPED,
            "idle": SpaceState.STOPPED,
            "record": SpaceState.RUNNING,
        }
        restarted = rt.spaces.get("again")
        assert restarted.pid != again.pid
        assert process_alive(restarted.pid)
        assert rt.spaces.node_id == node
        by_space: dict[str, list[str]] = {}
        for event in await rt.events("space.*", limit=100):
            by_space.setdefault(str(event.data["space_name"]), []).append(event.type)
        assert by_space == {
            "again": ["space.created", "space.started", "space.stopped", "space.started"],
            "stays": ["space.created", "space.started", "space.stopped"],
            "idle": ["space.created"],
            "record": ["space.created", "space.started"],
        }
    assert not process_alive(restarted.pid)


async def test_lifecycle_events_stay_in_order_at_every_sink(project: Path) -> None:
    class Jitter(RecordingSink):
        async def deliver(self, event: Event) -> None:
            await asyncio.sleep(random.random() * 0.002)
            await super().deliver(event)

    def jitter(name: str, events: str, owner: str = "") -> Jitter:
        patterns = parse_patterns(events)
        return Jitter(SinkSpec(name, "recording", patterns, owner=owner, origin=SinkOrigin.BUILTIN))

    sinks = [
        jitter("everything", "*"),
        jitter("spaces", "space.*"),
        jitter("starts", "space.started, space.stopped"),
        jitter("alices", "space.*", owner="alice"),
    ]
    async with Runtime(project, config=config()) as rt:
        for sink in sinks:
            await rt.add_sink(sink)
        names = ["s0", "s1", "s2"]
        for name in names:
            await rt.spaces.create(name, cmd="sleep 60", owner="alice")

        async def churn(name: str) -> None:
            # Starts and stops of one space racing each other: the lock decides the order.
            calls = [rt.spaces.start if i % 2 == 0 else rt.spaces.stop for i in range(12)]
            random.shuffle(calls)
            await asyncio.gather(*(call(name) for call in calls))
            await rt.spaces.delete(name)

        await asyncio.gather(*(churn(n) for n in names))
        await rt.wait_idle()
        journal = await rt.events("space.*", limit=1000)

    assert journal
    for name in names:
        expected = [e.id for e in journal if e.data["space_name"] == name]
        kinds = [e.type for e in journal if e.data["space_name"] == name]
        # The journal itself tells a possible story: created, then started/stopped
        # alternating, then deleted (after a stop when it was running).
        assert kinds[0] == "space.created"
        assert kinds[-1] == "space.deleted"
        middle = kinds[1:-1]
        assert middle == ["space.started", "space.stopped"] * (len(middle) // 2)
        for sink in sinks:
            got = [e.id for e in sink.events if e.data.get("space_name") == name]
            wanted = [i for i in expected if any(e.id == i for e in sink.events)]
            assert got == wanted, f"{sink.name} saw {name}'s events out of order"
        assert sum(1 for e in sinks[2].events if e.data["space_name"] == name) == len(middle)
    assert len(sinks[3].events) == len(journal)


async def test_user_owned_sinks_fire_only_for_their_own_spaces(rt: Runtime) -> None:
    alice = RecordingSink(replace(recording("alice_sink", "space.*").spec, owner="alice"))
    bob = RecordingSink(replace(alice.spec, name="bob_sink", owner="bob"))
    everyone = recording("global_sink", "space.*")
    for sink in (alice, bob, everyone):
        await rt.add_sink(sink)
    await rt.spaces.create("a1", owner="alice", start=True)
    await rt.spaces.create("b1", owner="bob")
    await rt.spaces.create("mine")
    await everyone.wait_for(4)
    await rt.wait_idle()
    assert [(e.type, e.data["space_name"]) for e in alice.events] == [
        ("space.created", "a1"),
        ("space.started", "a1"),
    ]
    assert [e.data["space_name"] for e in bob.events] == ["b1"]
    assert all(e.owner == "alice" for e in alice.events)
    assert [e.data["space_name"] for e in everyone.events] == ["a1", "a1", "b1", "mine"]
    assert [s.name for s in rt.spaces.list(owner="alice")] == ["a1"]
    with pytest.raises(NotFound):
        await rt.spaces.stop("a1", owner="bob")


async def test_clients_cannot_raise_system_events(rt: Runtime) -> None:
    system = recording("system", "space.*")
    custom = recording("custom", "custom.space.*")
    await rt.add_sink(system)
    await rt.add_sink(custom)
    await rt.emit("space.created", {"space_name": "fake"})
    await rt.emit("space.unhealthy", {"consecutive_failures": 99})
    await custom.wait_for(2)
    await rt.wait_idle()
    assert types(list(custom.events)) == ["custom.space.created", "custom.space.unhealthy"]
    assert all(e.actor.kind is ActorKind.USER for e in custom.events)
    assert list(system.events) == []


async def test_names_are_unique_and_unknown_spaces_are_not_found(rt: Runtime) -> None:
    info = await rt.spaces.create("solo")
    with pytest.raises(SpaceError, match="already exists"):
        await rt.spaces.create("solo", cmd="true")
    with pytest.raises(SpaceError, match="is not valid"):
        await rt.spaces.create("bad name")
    with pytest.raises(NotFound, match="no space named 'ghost'"):
        await rt.spaces.start("ghost")
    assert rt.spaces.get(info.id).name == "solo"  # by id, too
    await rt.spaces.delete("solo")
    assert rt.spaces.list() == []
    with pytest.raises(NotFound):
        await rt.spaces.delete("solo")
    await rt.spaces.create("solo")  # the name is free again
