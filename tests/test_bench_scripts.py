"""The script-sink benchmark must keep working: each measurement once, tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import bench_scripts

pytestmark = pytest.mark.anyio


async def test_script_benchmark_measurements_run_and_check_their_counts(tmp_path: Path) -> None:
    assert await bench_scripts._pipeline(tmp_path / "plain", 500, sandboxed=False) > 0
    assert await bench_scripts._pipeline(tmp_path / "script", 500, sandboxed=True) > 0
    sandboxed, plain = bench_scripts._per_call(50)
    assert sandboxed > plain > 0
    assert await bench_scripts._worker_start(1) > 0
