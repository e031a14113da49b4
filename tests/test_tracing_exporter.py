"""Tracing as `knot serve` does it: spans built and exported by the exporter process, from the
records the runtime pipes to it; and the runtime never waiting for that process."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from knot import RecordingSink, Runtime
from knot.observe.exporter import ExporterProcess
from knot.observe.tracing import OtelTracer, enable_from_env

from .conftest import recording, write_config

pytestmark = pytest.mark.anyio

HOOK = '[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "*"\nurl = "http://127.0.0.1:9/h"\n'


def _spans(output: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (one indented JSON object each)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    at = output.find("{")
    while at != -1:
        value, end = decoder.raw_decode(output, at)
        if isinstance(value, dict) and "context" in value:
            found.append(value)
        at = output.find("{", end)
    return found


def _traced(rt: Runtime, monkeypatch: pytest.MonkeyPatch, exporter: str) -> OtelTracer:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    tracer = enable_from_env(rt)
    assert tracer is not None
    assert isinstance(tracer.out, ExporterProcess)
    return tracer


async def _exporting(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> tuple[OtelTracer, ExporterProcess, RecordingSink]:
    """Tracing on through an exporter process that is up, and a recording sink."""
    tracer = _traced(rt, monkeypatch, "none")
    out = tracer.out
    assert isinstance(out, ExporterProcess)
    assert await out.ready()
    sink = recording("rec", "*")
    await rt.add_sink(sink)
    return tracer, out, sink


async def test_the_exporter_process_builds_the_spans_the_runtime_handed_context_for(
    project: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    write_config(project, HOOK)
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with Runtime(project, http_transport=httpx.MockTransport(receiver)) as rt:
        tracer = _traced(rt, monkeypatch, "console")
        await rt.add_sink(recording("rec", "*"))
        ids = [await rt.emit("order.placed", {"n": n}) for n in range(3)]
        await rt.wait_idle()
    counts = await tracer.close()  # after the runtime handed over its last attempts
    assert counts == {"built": 9, "unknown": 0, "sent": counts["sent"], "dropped": 0}
    spans = _spans(capfd.readouterr().out)
    ingests = {s["attributes"]["knot.event.id"]: s for s in spans if s["name"] == "knot ingest"}
    assert set(ingests) == set(ids)
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"shop"}
    delivers = [s for s in spans if s["name"] == "knot deliver"]
    assert sorted(
        (d["attributes"]["knot.event.id"], d["attributes"]["knot.sink"]) for d in delivers
    ) == sorted((i, sink) for i in ids for sink in ("hook", "rec"))
    for deliver in delivers:  # each a child of its event's ingest span, after it
        ingest = ingests[deliver["attributes"]["knot.event.id"]]
        assert deliver["parent_id"] == ingest["context"]["span_id"]
        assert deliver["context"]["trace_id"] == ingest["context"]["trace_id"]
        assert deliver["start_time"] >= ingest["end_time"]
    # What the webhook was sent (derived in the runtime) is the span built in the exporter.
    by_event = {
        d["attributes"]["knot.event.id"]: d
        for d in delivers
        if d["attributes"]["knot.sink"] == "hook"
    }
    for request in sent:
        deliver = by_event[request.headers["x-knot-event-id"]]
        trace_id, span_id = deliver["context"]["trace_id"][2:], deliver["context"]["span_id"][2:]
        assert request.headers["traceparent"] == f"00-{trace_id}-{span_id}-01"
        assert deliver["attributes"]["http.response.status_code"] == 200


async def test_an_exporter_that_died_costs_its_spans_and_nothing_else(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(project) as rt:
        tracer, out, sink = await _exporting(rt, monkeypatch)
        os.kill(out.process.pid, signal.SIGKILL)
        out.process.wait()
        for n in range(20):
            await rt.emit("t", {"n": n})
        await rt.wait_idle()
        assert [e.data["n"] for e in sink.events] == list(range(20))
        assert out.dropped > 0
    counts = await tracer.close()
    assert counts["dropped"] > 0
    warnings = [r for r in caplog.records if "span exporter process" in r.getMessage()]
    assert len(warnings) == 1
    assert "has exited" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING


async def test_an_exporter_that_falls_behind_makes_the_runtime_drop_never_wait(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Runtime(project) as rt:
        tracer, out, _sink = await _exporting(rt, monkeypatch)
        process = out.process
        os.kill(process.pid, signal.SIGSTOP)  # it reads nothing more: the pipe fills
        try:
            sent = 0
            while not out.dropped:
                await rt.emit("t", {})  # awaited one by one: a commit, a record, each
                sent += 1
                assert sent < 200_000, "the pipe never filled"
            await rt.wait_idle()
            assert [s.delivered for s in rt.sinks()] == [sent]
        finally:
            os.kill(process.pid, signal.SIGCONT)
    counts = await tracer.close()
    assert counts["dropped"] == out.dropped > 0
    assert counts["built"] > 0  # what got through before it stopped is exported
    assert sum("is behind" in r.getMessage() for r in caplog.records) == 1


async def test_closing_does_not_wait_for_a_stuck_exporter_past_its_timeout(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Runtime(project) as rt:
        tracer, out, _sink = await _exporting(rt, monkeypatch)
        os.kill(out.process.pid, signal.SIGSTOP)
        while not out.pending:  # records wait here: the pipe is full
            await rt.emit("t", {})
    counts = await out.close(timeout=0.5)
    assert out.process.returncode == -signal.SIGKILL
    assert counts["dropped"] > 0
    assert tracer.out is out
