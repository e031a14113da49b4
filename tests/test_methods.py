"""Method scripts in a real runtime: calls, names, subscriptions as sinks, emits, directives.

Every test runs real method-script workers loaded from a project's `scripts/methods/` by the
runtime's reloader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knot import (
    Actor,
    ActorKind,
    AuditKind,
    DeliveryStatus,
    MethodFailed,
    NotFound,
    Runtime,
    SinkOrigin,
    Space,
    parse_config,
)

from .conftest import recording, write_config

pytestmark = pytest.mark.anyio

SETTINGS = """
[delivery]
attempts = 2
backoff = 0.01
max_depth = 4

[methods]
timeout = 5
restart_backoff = [0.05]

[[sinks]]
name = "deploy_params"
type = "json-rpc"
events = "custom.deploy.done"
body_template = '''{"space": "${{ .space.name }}", "version": "${{ .event.data.version }}"}'''

[[sinks]]
name = "other_params"
type = "json-rpc"
events = "custom.nothing.*"
body_template = '''["never"]'''
"""

DEPLOYS = """\
import knot.methods
import knot.event

counts = {}
seen = []

@knot.methods.method(events=["custom.deploy.*"], event_sinks=["other_params", "deploy_params"])
def record(params):
    seen.append(params)
    if "space" in params:
        counts[params["space"]] = counts.get(params["space"], 0) + 1
    knot.event.directive("counted", {"type": knot.event.type()})
    print("recorded", knot.event.type())
    return len(seen)

@knot.methods.method
def count(params):
    return counts.get(params["space"], 0)

@knot.methods.method
def history(params):
    return seen

@knot.methods.method
def whoami(params):
    return {"event": knot.event.id(), "emitted": knot.event.emit("said.hello", {"n": 1})}
"""

OTHER = """\
import knot.methods

@knot.methods.method
def count(params):
    return "the other count"

@knot.methods.method(events="custom.flaky.*")
def flaky(params):
    raise ValueError(f"no luck with {params['data']['n']}")
"""

PING = """\
import knot.methods
import knot.event

@knot.methods.method(events=["custom.ping"])
def ping(params):
    return knot.event.emit("pong", {"hops": params["data"]["hops"] + 1})
"""

PONG = """\
# events: custom.pong
import knot.event

knot.event.emit("ping", {"hops": knot.event.get_int("hops") + 1})
"""


BATCHED = """\
import knot.methods
import knot.event
import time

seen = []

@knot.methods.method(events=["custom.batch.*"])
def take(params):
    n = params["data"]["n"]
    if n == 0:
        time.sleep(0.2)  # the others queue up meanwhile, and go to the worker together
    if params["data"].get("fail"):
        raise ValueError(f"not {n}")
    seen.append(n)
    knot.event.emit("child.of", {"n": n})

@knot.methods.method
def taken(params):
    return seen
"""


def write_script(project: Path, folder: str, name: str, source: str) -> Path:
    path = project / "scripts" / folder / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


@pytest.fixture
async def rt(project: Path) -> AsyncIterator[Runtime]:
    write_config(project, SETTINGS)
    write_script(project, "methods", "deploys", DEPLOYS)
    write_script(project, "methods", "other", OTHER)
    async with Runtime(project) as runtime:
        yield runtime


async def test_the_methods_folder_is_loaded_at_start(rt: Runtime) -> None:
    assert rt.methods.scripts() == ["deploys", "other"]
    assert [m.full_name for m in rt.methods.all()] == [
        "deploys.count",
        "deploys.history",
        "deploys.record",
        "deploys.whoami",
        "other.count",
        "other.flaky",
    ]
    (deploys,) = [s for s in rt.methods.statuses() if s["script"] == "deploys"]
    assert deploys["state"] == "running"
    assert deploys["path"] == "scripts/methods/deploys.py"
    assert deploys["pid"] == rt.methods.worker_pid("deploys")


async def test_names_full_plain_ambiguous_and_unknown(rt: Runtime) -> None:
    assert await rt.methods.call_name("deploys.count", {"space": "web"}) == 0
    assert await rt.methods.call_name("other.count", {}) == "the other count"
    assert await rt.methods.call_name("history", {}) == []  # only deploys has it
    with pytest.raises(NotFound) as ambiguous:
        await rt.methods.call_name("count", {})
    assert str(ambiguous.value) == (
        "The method name 'count' is ambiguous (deploys.count, other.count); call it by its "
        "full name."
    )
    with pytest.raises(NotFound, match=r"There is no method named 'deploys\.nope'"):
        await rt.methods.call_name("deploys.nope")
    with pytest.raises(NotFound):
        await rt.methods.call("nosuch", "count")


async def test_a_method_that_raises_is_a_server_error(rt: Runtime) -> None:
    with pytest.raises(MethodFailed) as failed:
        await rt.methods.call("deploys", "count", {})
    assert failed.value.code == -32000
    assert failed.value.method == "deploys.count"
    assert failed.value.data == {"type": "KeyError", "message": "'space'", "line": 18}
    assert str(failed.value) == (
        "The method deploys.count raised KeyError: 'space' (scripts/methods/deploys.py:18)."
    )


async def test_subscriptions_are_method_sinks_with_templated_params_in_order(rt: Runtime) -> None:
    spec = rt.registry.spec("deploys.record")
    assert spec.type == "method"
    assert spec.origin is SinkOrigin.METHOD
    assert spec.events_text == "custom.deploy.*"
    web = Space("sp-1", "web")
    for version in ("1.0", "1.1", "1.2"):
        await rt.emit("deploy.done", {"version": version}, space=web)
    unformatted = await rt.emit("deploy.started", {"version": "2.0"})
    await rt.wait_idle()
    history = await rt.methods.call("deploys", "history")
    # deploy.done matches deploy_params (other_params is first but does not match it).
    assert history[:3] == [
        {"space": "web", "version": "1.0"},
        {"space": "web", "version": "1.1"},
        {"space": "web", "version": "1.2"},
    ]
    # deploy.started matches no json-rpc sink it names: the default template.
    event = await rt.get_event(unformatted)
    assert event is not None
    assert history[3] == {
        "event_id": unformatted,
        "event_type": "custom.deploy.started",
        "event_ts": event.ts,
        "data": {"version": "2.0"},
    }
    assert await rt.methods.call("deploys", "count", {"space": "web"}) == 3
    status = next(s for s in rt.sinks() if s.name == "deploys.record")
    assert (status.delivered, status.failed) == (4, 0)


async def test_json_rpc_sinks_are_never_routed_to(rt: Runtime) -> None:
    rec = recording("rec", "custom.deploy.*")
    await rt.add_sink(rec)
    await rt.emit("deploy.done", {"version": "1"})
    await rt.wait_idle()
    assert [e.type for e in rec.events] == ["custom.deploy.done"]
    status = next(s for s in rt.sinks() if s.name == "deploy_params")
    assert status.spec.type == "json-rpc"
    assert status.delivered == 0
    assert "deploy_params" not in rt.router.route(rec.events[0])


async def test_a_json_rpc_sink_can_be_added_through_the_api(rt: Runtime) -> None:
    await rt.add_sink(
        {
            "name": "started_params",
            "type": "json-rpc",
            "events": "custom.deploy.started",
            "body_template": (
                '{"v": "${{ .event.data.version }}", "upper": "${{ toUpper .event.type }}"}'
            ),
        }
    )
    # A method naming it picks it up on its next load; deploys names other sinks only, so
    # check the formatter through the runtime's lookup as a method sink would use it.
    formatter = rt.methods.formatter("started_params")
    assert formatter is not None
    event = rt.make_event("deploy.started", {"version": "3"})
    assert formatter.accepts(event)
    assert formatter.params(event) == '{"v":"3","upper":"CUSTOM.DEPLOY.STARTED"}'
    assert rt.methods.formatter("deploys.record") is None  # not a json-rpc sink


async def test_testing_a_json_rpc_sink_shows_what_it_renders(rt: Runtime) -> None:
    event = rt.make_event("deploy.done", {"version": "7"}, space=Space("sp-2", "api"))
    result = await rt.sink("deploy_params").deliver(event)
    assert result is not None
    assert result.detail == '{"space":"api","version":"7"}'


async def test_a_direct_call_emits_as_its_caller(rt: Runtime) -> None:
    alice = Actor("u-1", "alice", ActorKind.USER)
    answer = await rt.methods.call_name("deploys.whoami", {}, owner="alice", actor=alice)
    event = await rt.get_event(answer["emitted"])
    assert event is not None
    assert (event.owner, event.actor) == ("alice", alice)


async def test_bad_json_rpc_sinks_are_refused(rt: Runtime) -> None:
    with pytest.raises(Exception, match="json-rpc sinks have no destination"):
        await rt.add_sink({"name": "x1", "type": "json-rpc", "events": "*", "url": "http://a"})
    with pytest.raises(Exception, match="The body_template is not valid"):
        await rt.add_sink({"name": "x2", "type": "json-rpc", "events": "*", "body_template": "${{"})


async def test_failing_subscribed_calls_are_retried_then_given_up_and_audited(rt: Runtime) -> None:
    report = await rt.emit_and_wait("flaky.x", {"n": 7}, timeout=10)
    outcome = report.outcomes["other.flaky"]
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.attempts == 2
    assert outcome.error == (
        "The method other.flaky raised ValueError: no luck with 7 (scripts/methods/other.py:9)."
    )
    await rt.flush()
    (entry,) = [e for e in await rt.audit_entries() if e.kind is AuditKind.METHOD_FAILED]
    assert entry.sink == "other.flaky"
    assert entry.event_id == report.id
    assert "gave up on event" in entry.message
    assert "after 2 attempts" in entry.message


async def test_directives_and_output_of_a_subscribed_call(rt: Runtime) -> None:
    report = await rt.emit_and_wait("deploy.done", {"version": "9"}, timeout=10)
    outcome = report.outcomes["deploys.record"]
    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.result is not None
    assert outcome.result.output == ("recorded custom.deploy.done",)
    (directive,) = outcome.result.directives
    assert directive.to_dict(report.id) == {
        "type": "directive",
        "name": "counted",
        "options": {"type": "custom.deploy.done"},
        "meta": {"rid": "deploys.record", "eid": report.id},
    }


async def test_a_direct_call_has_no_event_and_emits_as_the_caller(rt: Runtime) -> None:
    answer = await rt.methods.call("deploys", "whoami", {})
    assert answer["event"] == ""
    event = await rt.get_event(answer["emitted"])
    assert event is not None
    assert event.type == "custom.said.hello"
    assert event.depth == 0
    assert event.parent == ""


async def test_events_flow_from_methods_to_script_sinks_and_back_within_the_depth_limit(
    project: Path,
) -> None:
    write_config(project, SETTINGS)
    write_script(project, "methods", "pinger", PING)
    write_script(project, "sinks", "ponger", PONG)
    async with Runtime(project) as rt:
        first = await rt.emit("ping", {"hops": 0})
        await rt.wait_idle()
        await rt.flush()
        chain = [e for e in await rt.events(limit=20) if e.type in ("custom.ping", "custom.pong")]
        assert [(e.type, e.depth, e.data["hops"]) for e in chain] == [
            ("custom.ping", 0, 0),
            ("custom.pong", 1, 1),
            ("custom.ping", 2, 2),
            ("custom.pong", 3, 3),
            ("custom.ping", 4, 4),
        ]
        assert chain[1].parent == first
        dropped = [e for e in await rt.audit_entries() if e.kind is AuditKind.DEPTH_EXCEEDED]
        assert len(dropped) == 1
        assert "custom.pong" in dropped[0].message
        assert dropped[0].event_id == chain[-1].id


async def test_subscriptions_resume_after_a_restart_of_the_runtime(project: Path) -> None:
    write_config(project, SETTINGS)
    write_script(project, "methods", "deploys", DEPLOYS)
    async with Runtime(project) as rt:
        await rt.emit_and_wait("deploy.done", {"version": "1"}, timeout=10)
    (project / "scripts" / "methods" / "deploys.py").rename(project / "deploys.py.off")
    async with Runtime(project) as rt:
        await rt.emit("deploy.done", {"version": "2"})  # no subscriber now
        await rt.flush()
    (project / "deploys.py.off").rename(project / "scripts" / "methods" / "deploys.py")
    async with Runtime(project) as rt:
        await rt.wait_idle()
        # The new worker has fresh state; the engine resumed the sink after its cursor.
        assert await rt.methods.call("deploys", "history") == [{"space": "", "version": "2"}]


async def test_queued_events_go_to_a_method_together_in_order_with_their_own_parents(
    project: Path,
) -> None:
    write_config(project, SETTINGS)
    write_script(project, "methods", "batched", BATCHED)
    async with Runtime(project) as rt:
        ids = await asyncio.gather(
            *(rt.emit("batch.x", {"n": n, "fail": n == 3}) for n in range(8))
        )
        await rt.wait_idle()
        await rt.flush()
        assert await rt.methods.call("batched", "taken") == [0, 1, 2, 4, 5, 6, 7]
        children = [e for e in await rt.events("custom.child.of", limit=20)]
        assert [(e.data["n"], e.parent, e.depth) for e in children] == [
            (n, ids[n], 1) for n in (0, 1, 2, 4, 5, 6, 7)
        ]
        status = next(s for s in rt.sinks() if s.name == "batched.take")
        assert (status.delivered, status.failed, status.retries) == (7, 1, 1)
        (gave_up,) = [e for e in await rt.audit_entries() if e.kind is AuditKind.METHOD_FAILED]
        assert gave_up.event_id == ids[3]
        assert gave_up.message.endswith(
            "The method batched.take raised ValueError: not 3 (scripts/methods/batched.py:13)."
        )


def test_methods_settings_are_validated() -> None:
    config = parse_config(
        "[methods]\ntimeout = 2.5\nmemory_mb = 64\nthreads = 2\nrestart_backoff = [0.5, 2]\n"
    ).raise_for_errors()
    assert config.methods.timeout == 2.5
    assert config.methods.memory_mb == 64
    assert config.methods.threads == 2
    assert config.methods.restart_backoff == (0.5, 2.0)
    result = parse_config("[methods]\nthreads = 0\ntimeout = -1\n")
    assert not result.ok
    assert "methods.threads must be an integer >= 1" in " ".join(result.errors)
    assert "methods.timeout must be a number >= 0.001" in " ".join(result.errors)


async def test_concurrent_callers_share_one_worker_and_its_state(rt: Runtime) -> None:
    pid = rt.methods.worker_pid("deploys")
    results = await asyncio.gather(
        *(rt.methods.call("deploys", "count", {"space": f"s{i}"}) for i in range(20))
    )
    assert results == [0] * 20
    assert rt.methods.worker_pid("deploys") == pid


def test_plain_python_knot_methods_records_declarations_and_keeps_the_function() -> None:
    import knot.methods

    @knot.methods.method(events="custom.deploy.*, space.started", mode="concurrent")
    def record(params: dict[str, int]) -> int:
        return params["n"] + 1

    @knot.methods.method
    def count(params: object) -> int:
        return 0

    assert record({"n": 1}) == 2  # still the function itself
    declared = getattr(record, "knot_method")  # noqa: B009 - set by the decorator at run time
    assert (declared.name, declared.events, declared.mode) == (
        "record",
        ("custom.deploy.*", "space.started"),
        "concurrent",
    )
    assert getattr(count, "knot_method").name == "count"  # noqa: B009
    with pytest.raises(ValueError, match="mode must be 'serial' or 'concurrent'"):
        knot.methods.method(mode="sometimes")(len)
    error = knot.methods.error(-32602, "nope", {"field": "x"})
    assert isinstance(error, knot.methods.JSONRPCError)
    assert error.to_dict() == {"code": -32602, "message": "nope", "data": {"field": "x"}}
