"""OpenTelemetry spans, checked with the SDK's in-memory exporter, and W3C context propagation
from ingress requests through events, script sinks, methods and webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from knot import Runtime
from knot.observe.tracing import enable_from_env, enable_tracing
from knot.server.app import create_app

from .conftest import recording, write_config
from .helpers import start_server

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
INCOMING = f"00-{TRACE_ID}-b7ad6b7169203331-01"

CHAIN = """\
# events: custom.order.placed
import knot.event
knot.event.emit("order.billed", {})
"""

METHODS = """\
import knot.methods

@knot.methods.method(events=["custom.order.billed"])
def bill(params):
    return {}

@knot.methods.method
def ping(params):
    return "pong"
"""


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _project(project: Path) -> None:
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "methods").mkdir(parents=True)
    (project / "scripts" / "sinks" / "chain.py").write_text(CHAIN)
    (project / "scripts" / "methods" / "billing.py").write_text(METHODS)
    write_config(
        project,
        "[delivery]\nattempts = 2\nbackoff = [0.01]\n\n"
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.order.billed"\n'
        'url = "http://127.0.0.1:9/hook"\n',
    )


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {})[key]


def _hex(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


async def test_a_trace_follows_the_event_from_the_request_to_webhooks_and_children(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    _project(project)
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503 if len(sent) == 1 else 200)  # the retry succeeds

    async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
        enable_tracing(rt, provider)
        await _until(lambda: rt.methods.all())
        app = create_app(rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            answer = await http.post(
                "/event",
                json={"type": "order.placed", "payload": {}},
                headers={"traceparent": INCOMING},
            )
            await _until(lambda: len(sent) == 2)
            await rt.wait_idle()
            call = await http.post(
                "/json-rpc",
                json={"jsonrpc": "2.0", "method": "billing.ping", "id": 1},
                headers={"traceparent": INCOMING.replace("b7ad", "c7ad")},
            )
        root = answer.json()["id"]
        billed = (await rt.events("custom.order.billed"))[0]
    assert call.json()["result"] == "pong"
    finished = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in finished} == {TRACE_ID}  # one trace
    ingests = {_attr(s, "knot.event.id"): s for s in finished if s.name == "knot ingest"}
    delivers = [s for s in finished if s.name == "knot deliver"]
    calls = [s for s in finished if s.name == "knot call"]
    assert set(ingests) == {root, billed.id}
    # The request's traceparent is the parent of the ingest span...
    root_ingest = ingests[root]
    assert root_ingest.parent is not None
    assert f"{root_ingest.parent.span_id:016x}" == "b7ad6b7169203331"
    assert _attr(root_ingest, "knot.event.seq") == 1
    # ... whose deliveries are its children; the script sink's child event continues there.
    [chain] = [s for s in delivers if _attr(s, "knot.sink") == "chain"]
    assert chain.parent is not None
    assert chain.parent.span_id == root_ingest.context.span_id
    child_ingest = ingests[billed.id]
    assert child_ingest.parent is not None
    assert child_ingest.parent.span_id == chain.context.span_id
    assert billed.trace == f"00-{TRACE_ID}-{_hex(child_ingest)}-01"  # carried, journaled
    # Two webhook attempts: the retry links to the first; each sent its own span's context.
    hooks = sorted(
        (s for s in delivers if _attr(s, "knot.sink") == "hook"),
        key=lambda s: _attr(s, "knot.attempt"),
    )
    assert [_attr(s, "knot.attempt") for s in hooks] == [1, 2]
    assert all(
        s.parent is not None and s.parent.span_id == child_ingest.context.span_id for s in hooks
    )
    assert hooks[0].status.is_ok is False
    assert [link.context.span_id for link in hooks[1].links] == [hooks[0].context.span_id]
    assert [r.headers["traceparent"] for r in sent] == [
        f"00-{TRACE_ID}-{_hex(s)}-01" for s in hooks
    ]
    assert sent[0].headers["x-knot-root-id"] == root
    assert sent[0].headers["x-knot-parent-id"] == root
    # The subscribed method call runs inside its delivery's span; a direct call under the
    # request's traceparent.
    [bill_deliver] = [s for s in delivers if _attr(s, "knot.sink") == "billing.bill"]
    by_method = {_attr(s, "knot.method"): s for s in calls}
    assert by_method["billing.bill"].parent is not None
    assert by_method["billing.bill"].parent.span_id == bill_deliver.context.span_id
    assert by_method["billing.ping"].parent is not None
    assert f"{by_method['billing.ping'].parent.span_id:016x}" == "c7ad6b7169203331"


async def test_sky_events_honour_traceparent(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with Runtime(project) as rt:
        enable_tracing(rt, provider)
        await rt.add_sink(recording("rec", "*"))
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            created = await http.post("/api/channels", json={"eci": "demo"})
            assert created.status_code == 201
            answer = await http.get(
                "/sky/event/demo/e1/shop/order", headers={"traceparent": INCOMING}
            )
    assert answer.status_code == 200
    [ingest] = [s for s in exporter.get_finished_spans() if s.name == "knot ingest"]
    assert f"{ingest.context.trace_id:032x}" == TRACE_ID
    assert ingest.parent is not None
    assert f"{ingest.parent.span_id:016x}" == "b7ad6b7169203331"


async def test_without_tracing_an_incoming_traceparent_is_passed_on_as_is(project: Path) -> None:
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    write_config(
        project,
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
        assert rt.hooks.tracer is None
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            await http.post("/event", json={"type": "a"}, headers={"traceparent": INCOMING})
            await http.post("/event", json={"type": "b"}, headers={"traceparent": "garbage"})
            await http.post("/event", json={"type": "c"})
        await rt.wait_idle()
    by_type = {r.headers["x-knot-event-type"]: r.headers for r in sent}
    assert by_type["custom.a"]["traceparent"] == INCOMING
    assert "traceparent" not in by_type["custom.b"]  # an invalid header is ignored
    assert "traceparent" not in by_type["custom.c"]
    assert "x-knot-parent-id" not in by_type["custom.a"]  # a root event has no parent


async def test_a_failing_tracer_is_reported_once_and_stops_nothing(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        """Fails everywhere: giving events their context, deriving attempts', calls."""

        def ingest(self, trace: str) -> str:
            raise RuntimeError("tracer bug")

        def delivery(self, event: Any, sink: str, attempt: int) -> str:
            raise RuntimeError("tracer bug")

        def child(self, parent: str) -> str:
            raise RuntimeError("tracer bug")

        def resumed(self, events: Any) -> None:
            raise RuntimeError("tracer bug")

        def called(self, *args: Any) -> None:
            raise RuntimeError("tracer bug")

    write_config(
        project,
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
        rt.hooks.tracer = Broken()
        sink = recording("rec", "*")
        await rt.add_sink(sink)
        for n in range(5):
            await rt.emit("t", {"n": n})
        await rt.wait_idle()
    assert [e.data["n"] for e in sink.events] == list(range(5))
    assert len(sent) == 5  # the webhook asked the tracer for its header: it went without
    assert sum(1 for r in caplog.records if "the tracer" in r.getMessage()) == 1


def test_the_environment_decides_whether_tracing_is_on(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(project)
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert enable_from_env(runtime) is None
    assert runtime.hooks.tracer is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert enable_from_env(runtime) is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    tracer = enable_from_env(runtime)
    assert tracer is not None
    assert runtime.hooks.tracer is tracer


def test_knot_serve_exports_spans_as_the_otel_variables_say(tmp_path: Path) -> None:
    project = tmp_path / "traced"
    project.mkdir()
    write_config(project, '[[sinks]]\nname = "rec"\ntype = "recording"\nevents = "*"\n')
    server = start_server(
        project, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "shop"}
    )
    try:
        with server.client() as http:
            http.post("/event", json={"type": "a"}, headers={"traceparent": INCOMING})
    finally:
        assert server.terminate() == 0
    output = server.output()
    assert '"name": "knot ingest"' in output
    assert '"name": "knot deliver"' in output
    assert f'"trace_id": "0x{TRACE_ID}"' in output
    assert '"service.name": "shop"' in output


async def test_a_parent_sampled_out_makes_no_span_but_its_trace_goes_on(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans  # the SDK's default sampler: parent-based
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    write_config(
        project,
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    unsampled = INCOMING[:-2] + "00"
    async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
        enable_tracing(rt, provider)
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            await http.post("/event", json={"type": "a"}, headers={"traceparent": unsampled})
        await rt.wait_idle()
    assert exporter.get_finished_spans() == ()
    [request] = sent
    assert request.headers["traceparent"] == unsampled  # the caller's context goes on


async def test_root_events_are_sampled_by_the_providers_sampler(project: Path) -> None:
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    write_config(
        project,
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    found: dict[str, tuple[ReadableSpan, ...]] = {}
    for name, sampler in (("on", ParentBased(ALWAYS_ON)), ("off", ParentBased(ALWAYS_OFF))):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
            enable_tracing(rt, provider)
            event_id = await rt.emit(name, {})
            await rt.wait_idle()
            event = await rt.get_event(event_id)
        assert event is not None
        found[name] = exporter.get_finished_spans()
        assert sent[-1].headers["traceparent"].split("-")[1] == event.trace.split("-")[1]
        if name == "on":
            ingest = next(s for s in found[name] if s.name == "knot ingest")
            assert event.trace.split("-")[1] == f"{ingest.context.trace_id:032x}"
            assert int(event.trace[-2:], 16) & 1  # sampled
        else:
            assert not int(event.trace[-2:], 16) & 1  # a trace of its own, sampled out
        provider.shutdown()
    assert {s.name for s in found["on"]} == {"knot ingest", "knot deliver"}
    assert found["off"] == ()


async def test_batched_deliveries_are_traced_event_by_event(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Tracing no longer turns batching off: events a script sink or a method gets together
    still each have their attempt's span, and what each raises or calls hangs under it."""
    provider, exporter = spans
    _project(project)
    async with Runtime(
        project, http_transport=httpx.MockTransport(lambda r: httpx.Response(200))
    ) as rt:
        enable_tracing(rt, provider)
        await _until(lambda: rt.methods.all())
        placed = await asyncio.gather(*(rt.emit("order.placed", {"n": n}) for n in range(8)))
        await _until(lambda: len(exporter.get_finished_spans()) >= 8 * 6)
        await rt.wait_idle()
        billed = await rt.events("custom.order.billed")
    finished = exporter.get_finished_spans()
    delivers = {
        (_attr(s, "knot.sink"), _attr(s, "knot.event.id")): s
        for s in finished
        if s.name == "knot deliver"
    }
    ingests = {_attr(s, "knot.event.id"): s for s in finished if s.name == "knot ingest"}
    assert len(billed) == 8
    for child in billed:  # each continues the attempt on its own parent
        ingest = ingests[child.id]
        assert ingest.parent is not None
        assert ingest.parent.span_id == delivers["chain", child.parent].context.span_id
    calls = [s for s in finished if s.name == "knot call"]
    assert len(calls) == 8
    assert {c.parent.span_id for c in calls if c.parent is not None} == {
        delivers["billing.bill", child.id].context.span_id for child in billed
    }
    assert set(placed) == {child.parent for child in billed}


async def test_contexts_made_here_are_version_00_whatever_version_came_in(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    sent: list[httpx.Request] = []
    write_config(
        project,
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    future = f"01-{TRACE_ID}-b7ad6b7169203331-01-whatever-comes-next"
    async with Runtime(project, http_transport=httpx.MockTransport(_answer(sent))) as rt:
        enable_tracing(rt, provider)
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            answer = await http.post("/event", json={"type": "a"}, headers={"traceparent": future})
        await rt.wait_idle()
        event = await rt.get_event(answer.json()["id"])
    assert event is not None
    [ingest] = [s for s in exporter.get_finished_spans() if s.name == "knot ingest"]
    assert event.trace == f"00-{TRACE_ID}-{_hex(ingest)}-01"
    assert ingest.parent is not None
    assert f"{ingest.parent.span_id:016x}" == "b7ad6b7169203331"
    [request] = sent
    assert request.headers["traceparent"].startswith(f"00-{TRACE_ID}-")


def _answer(sent: list[httpx.Request], status: int = 200) -> Any:
    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status)

    return receiver


async def test_deliveries_resumed_after_a_restart_are_traced_under_their_events(
    project: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    write_config(
        project,
        "[delivery]\nattempts = 2\nbackoff = [60.0]\n\n"
        '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n',
    )
    refused: list[httpx.Request] = []
    async with Runtime(project, http_transport=httpx.MockTransport(_answer(refused, 503))) as rt:
        enable_tracing(rt, provider)
        event_id = await rt.emit("a", {})
        await _until(lambda: len(refused) == 1)  # then it waits a minute for its retry
        event = await rt.get_event(event_id)
    assert event is not None
    exporter.clear()
    sent: list[httpx.Request] = []
    restarted = Runtime(project, http_transport=httpx.MockTransport(_answer(sent)))
    enable_tracing(restarted, provider)  # before start, as knot serve does: sinks resume then
    async with restarted as rt:
        await _until(lambda: len(sent) == 1)
        await rt.wait_idle()
    [deliver] = [s for s in exporter.get_finished_spans() if s.name == "knot deliver"]
    assert _attr(deliver, "knot.event.id") == event_id
    assert deliver.parent is not None
    assert f"{deliver.parent.span_id:016x}" == event.trace[36:52]  # the ingest of run 1
    assert sent[0].headers["traceparent"] == f"00-{event.trace[3:35]}-{_hex(deliver)}-01"
