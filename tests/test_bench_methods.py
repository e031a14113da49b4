"""The method benchmark must keep working: each measurement once, tiny."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import bench_methods

pytestmark = pytest.mark.anyio


async def test_method_benchmark_measurements_run_and_check_their_counts(tmp_path: Path) -> None:
    assert len(await bench_methods._in_process(tmp_path / "calls", 20)) == 20
    assert len(await bench_methods._pipe(20)) == 20
    assert await bench_methods._subscribed(tmp_path / "sub", 200, method=True) > 0
    assert await bench_methods._subscribed(tmp_path / "plain", 200, method=False) > 0
