"""The script_io benchmark must keep working: each measurement once, tiny, its counts checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from benchmarks import bench_script_io
from benchmarks.bench_webhooks import _stats
from benchmarks.common import ServerProcess

pytestmark = pytest.mark.anyio


async def test_script_io_measurements_run_and_check_their_counts(tmp_path: Path) -> None:
    receiver = ServerProcess([sys.executable, "-m", "benchmarks.webhook_receiver"], core=None)
    try:
        for script in (True, False):
            _stats(receiver.url, reset=True)
            rate = await bench_script_io._deliveries(
                tmp_path / str(script), receiver.url, 30, 2, script=script
            )
            assert rate > 0
            bench_script_io._check_paths(receiver.url, 30, 2)
    finally:
        receiver.stop()
    inside, direct = await bench_script_io._kv(tmp_path / "kv", 20)
    assert set(inside) == {"set", "get", "incr", "exists"}
    assert all(value > 0 for value in [*inside.values(), *direct.values()])
