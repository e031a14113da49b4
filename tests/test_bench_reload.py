"""The hot-reload benchmark must keep working: both sides, a couple of saves each."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import bench_reload

pytestmark = pytest.mark.anyio


async def test_ours_measures_each_save(tmp_path: Path) -> None:
    samples = await bench_reload.ours(tmp_path / "knot", 2)
    assert len(samples) == 2
    assert all(0 < s < 10 for s in samples)


def test_uvicorn_reload_baseline_measures_each_save(tmp_path: Path) -> None:
    samples = bench_reload.uvicorn_reload(tmp_path / "uvicorn", 1)
    assert len(samples) == 1
    assert 0 < samples[0] < 30
