"""The benchmark code itself must keep working: run each measurement once, tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import bench_engine
from benchmarks.common import Result

pytestmark = pytest.mark.anyio


async def test_engine_measurements_run_and_check_their_own_counts(tmp_path: Path) -> None:
    assert await bench_engine._pipeline(tmp_path / "one", 2_000, 1) > 0
    assert await bench_engine._pipeline(tmp_path / "ten", 1_000, 10) > 0
    assert await bench_engine._bare(2_000) > 0
    delays = await bench_engine._latency(tmp_path / "lat", 500, 0.2)
    assert len(delays) == 100
    assert all(d >= 0 for d in delays)


def test_result_targets() -> None:
    assert Result("x", 30_000, "events/s", ">= 25000").met is True
    assert Result("x", 1.0, "ms", "<= 2.0").met is True
    assert Result("x", 3.0, "ms", "<= 2.0").met is False
    assert Result("x", 60, "req/s", ">= 0.7x", baseline=100).met is False
    assert Result("x", 80, "req/s", ">= 0.7x", baseline=100).met is True
