"""Prometheus metrics of one runtime, fed by its hooks, served as text by `GET /metrics`.

Counting happens on the event path, so it is as cheap as counting can be: each listener adds to
a plain dict or list, and the Prometheus families are built from those only when scraped (a
custom collector, as prometheus-client's own process collector does). What the engine already
counts (per-sink give-ups and drops) and what is a state rather than a count (queue depth, lag)
is read at scrape time and costs the event path nothing.

Label values are sink, method and route names and fixed words, never ids or payloads, so the
number of series stays bounded by the number of sinks, methods and routes.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._events import Event
from ..engine.attempts import DELIVERED, AttemptBatch
from ..engine.hooks import Hooks

if TYPE_CHECKING:
    from ..engine.delivery import DeliveryEngine

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Deliveries run from microseconds (a recording sink) to the webhook timeout (10 s by default).
DURATION_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class _SinkCounts:
    """One sink's attempt counts and its duration histogram (a bucket list and a sum)."""

    __slots__ = ("buckets", "delivered", "failed", "total")

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.total = 0.0  # seconds, summed
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf


class Metrics(Collector):
    """The metrics of one runtime: `Metrics(hooks, delivery=lambda: runtime.delivery)`.

    `attach()` subscribes to the hooks, `detach()` stops counting; `render()` is the
    Prometheus text exposition of everything (what `GET /metrics` answers).
    """

    def __init__(self, hooks: Hooks, *, delivery: Callable[[], DeliveryEngine | None]) -> None:
        self.hooks = hooks
        self._delivery = delivery
        self.journaled = 0
        self.sinks: dict[str, _SinkCounts] = {}
        self.reloads: dict[str, int] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self.requests: dict[tuple[str, int], int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._unsubscribe: list[Callable[[], None]] = []

    def attach(self) -> Metrics:
        hooks = self.hooks
        self._unsubscribe = [
            hooks.on_journaled(self._journaled),
            hooks.on_attempt(self._attempt),
            hooks.on_reload(self._reload),
            hooks.on_call(self._call),
            hooks.on_request(self._request),
        ]
        return self

    def detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- listeners (on the event loop; each one a few dict and list operations) --------------

    def _journaled(self, events: list[Event]) -> None:
        self.journaled += len(events)

    def _attempt(self, batch: AttemptBatch) -> None:
        counts = self.sinks.get(batch.sink)
        if counts is None:
            counts = self.sinks[batch.sink] = _SinkCounts()
        run = len(batch.seqs)
        if run:  # a run: each of its attempts took the run's average
            counts.delivered += run
            counts.total += batch.busy
            average = batch.busy / run
            counts.buckets[bisect_left(DURATION_BUCKETS, average)] += run
        for attempt in batch.records:
            if attempt.outcome == DELIVERED:
                counts.delivered += 1
            else:
                counts.failed += 1
            counts.total += attempt.duration
            counts.buckets[bisect_left(DURATION_BUCKETS, attempt.duration)] += 1

    def _reload(self, result: str) -> None:
        self.reloads[result] = self.reloads.get(result, 0) + 1

    def _call(self, method: str, outcome: str, seconds: float) -> None:
        key = (method, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1

    def _request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    # -- the collector (at scrape time) ------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "knot_events_journaled",
            "Events committed to the journal (duplicates by id not counted).",
            value=self.journaled,
        )
        yield from self._deliveries()
        yield from self._queues()
        reloads = CounterMetricFamily(
            "knot_script_reloads",
            "Script and knot.toml reloads by result (loaded, reloaded, kept, rejected, removed).",
            labels=["result"],
        )
        for result, n in sorted(self.reloads.items()):
            reloads.add_metric([result], n)
        yield reloads
        calls = CounterMetricFamily(
            "knot_method_calls",
            "Method script calls (direct and subscribed) by method and outcome (ok, error).",
            labels=["method", "outcome"],
        )
        for (method, outcome), n in sorted(self.calls.items()):
            calls.add_metric([method, outcome], n)
        yield calls
        requests = CounterMetricFamily(
            "knot_http_requests",
            "HTTP API requests answered, by route template and status.",
            labels=["route", "status"],
        )
        for (route, status), n in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests

    def _deliveries(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "knot_sink_deliveries",
            "Delivery attempts by sink and outcome (delivered; failed: an attempt failed and "
            "is retried or given up), and events given up after the last attempt (given_up).",
            labels=["sink", "outcome"],
        )
        durations = HistogramMetricFamily(
            "knot_delivery_duration_seconds",
            "How long each delivery attempt took, by sink.",
            labels=["sink"],
        )
        engine = self._delivery()
        given_up = {n: w.stats.failed for n, w in engine.workers.items()} if engine else {}
        for sink in sorted({*self.sinks, *given_up}):
            counts = self.sinks.get(sink) or _SinkCounts()
            deliveries.add_metric([sink, "delivered"], counts.delivered)
            deliveries.add_metric([sink, "failed"], counts.failed)
            deliveries.add_metric([sink, "given_up"], given_up.get(sink, 0))
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*DURATION_BUCKETS, float("inf")), counts.buckets, strict=True):
                cumulative += n
                buckets.append((_bound(bound), cumulative))
            durations.add_metric([sink], buckets, counts.total)
        yield deliveries
        yield durations

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "knot_sink_queue_depth",
            "Events queued or in flight for a sink.",
            labels=["sink"],
        )
        dropped = CounterMetricFamily(
            "knot_sink_dropped",
            "Events dropped for a sink because its queue was full.",
            labels=["sink"],
        )
        lag = GaugeMetricFamily(
            "knot_sink_lag_seconds",
            "Age of the oldest event a sink has not handled yet (0 when it is idle).",
            labels=["sink"],
        )
        engine = self._delivery()
        now = time.time()
        for name, worker in sorted(engine.workers.items() if engine else ()):
            depth.add_metric([name], worker.pending)
            dropped.add_metric([name], worker.stats.dropped)
            oldest = worker.inflight[0] if worker.inflight else (worker.queue or [None])[0]
            lag.add_metric([name], max(0.0, now - _epoch(oldest.ts)) if oldest else 0.0)
        yield depth
        yield dropped
        yield lag


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _epoch(ts: str) -> float:
    """An event's RFC 3339 UTC timestamp as seconds since the epoch (0 if it does not parse)."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
