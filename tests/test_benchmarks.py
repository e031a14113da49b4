"""The benchmark code itself must keep working: run each measurement once, tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import (
    bench_cluster,
    bench_engine,
    bench_notebook,
    bench_observe,
    bench_onecore,
    bench_ui,
)
from benchmarks.__main__ import finish
from benchmarks.common import Result

from knot._config import StoreSettings

from .natshelpers import NatsServer, unique_prefix

pytestmark = pytest.mark.anyio


async def test_engine_measurements_run_and_check_their_own_counts(tmp_path: Path) -> None:
    assert await bench_engine._pipeline(tmp_path / "one", 2_000, 1) > 0
    assert await bench_engine._pipeline(tmp_path / "ten", 1_000, 10) > 0
    assert await bench_engine._bare(2_000) > 0
    delays = await bench_engine._latency(tmp_path / "lat", 500, 0.2)
    assert len(delays) == 100
    assert all(d >= 0 for d in delays)


async def test_observe_measurements_run_in_every_setup(tmp_path: Path) -> None:
    for index, (name, setup) in enumerate(bench_observe.SETUPS.items()):
        wall, cpu, counts = await bench_observe._pipeline(tmp_path / str(index), 500, 2, setup)
        assert wall > 0
        assert cpu > 0
        if name == "tracing on (all sampled)":  # the exporter process built every span
            assert counts["built"] == counts["due"] == 500 * 3
            assert counts["dropped"] == counts["unknown"] == 0


async def test_ui_measurements_run_and_check_their_pages(tmp_path: Path) -> None:
    times = await bench_ui._page_times(tmp_path / "pages", 2_000, 1)
    assert set(times) >= {"first page", "sink filter", "payload search, no match"}
    assert all(len(t) == 1 for t in times.values())
    for tail in (False, True):
        wall, cpu = await bench_ui._pipeline(tmp_path / f"tail-{tail}", 1_000, tail)
        assert wall > 0
        assert cpu > 0


def test_result_targets() -> None:
    assert Result("x", 30_000, "events/s", ">= 25000").met is True
    assert Result("x", 1.0, "ms", "<= 2.0").met is True
    assert Result("x", 3.0, "ms", "<= 2.0").met is False
    assert Result("x", 60, "req/s", ">= 0.7x", baseline=100).met is False
    assert Result("x", 80, "req/s", ">= 0.7x", baseline=100).met is True


def test_a_missed_target_makes_the_run_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    met = Result("fast", 30_000, "events/s", ">= 25000")
    missed = Result("slow", 3.0, "ms", "<= 2.0")
    untargeted = Result("info", 1.0, "ms")
    assert finish([met, untargeted]) == 0
    assert capsys.readouterr().out == "\nall targets met\n"
    assert finish([met, missed, untargeted]) == 1
    assert capsys.readouterr().out == "\n1 target(s) not met\n"


def test_notebook_measurements_run(tmp_path: Path, jupyter_home: Path) -> None:
    (magic, _), (plain, _) = bench_notebook._in_process(tmp_path, 5)
    assert magic > 0
    assert plain > 0
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    assert all(p50 > 0 for p50 in bench_notebook._in_kernel(kernel, 3))
    # Both ran against the runtime they were pointed at.
    assert (tmp_path / ".knot" / "knot.db").is_file()
    assert (kernel / ".knot" / "knot.db").is_file()


async def test_cluster_ingest_measurement_runs(tmp_path: Path, nats_server: NatsServer) -> None:
    store = StoreSettings(url=nats_server.url, stream_prefix=unique_prefix())
    assert await bench_cluster._ingest(tmp_path / "nats", store, 500) > 0


def test_onecore_measurements_run_pinned_and_drained() -> None:
    """Every pair is measured (the script sink's rounds wait until it ran on every event, and
    the run checks that every process of every server stayed on one core), and a save reaches
    the webhook receiver in the served project."""
    results = bench_onecore.run(quick=True)
    assert len(results) == 7  # three pairs, each by throughput and by CPU time; the reload
    for result in results[:6]:
        assert result.value > 0
        assert result.ratio is not None
        assert result.ratio > 0
    assert 0 < results[6].value < 10_000
