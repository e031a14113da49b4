"""The Sky benchmark's code must keep working: both servers answer the benchmark's request with
the same directive, and a tiny load run against ours has no errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import bench_sky
from benchmarks.common import ServerProcess
from benchmarks.loadgen import load
from benchmarks.sky_apps import PATH

ROOT = Path(__file__).resolve().parents[1]


def test_sky_benchmark_servers_answer_with_the_directive(tmp_path: Path) -> None:
    app = [sys.executable, "-m", "benchmarks.sky_apps"]
    ours = ServerProcess([*app, "ours", str(tmp_path)], cwd=ROOT, core=None)
    try:
        bare = ServerProcess([*app, "bare"], cwd=ROOT, core=None)
        try:
            body = json.dumps({"name": "bench"}).encode()
            bench_sky._check(ours.url, body)
            bench_sky._check(bare.url, body)
            result = load(ours.url, path=PATH, body=body, seconds=0.3, max_requests=300, core=None)
            assert result.requests > 0
            assert result.errors == 0
        finally:
            bare.stop()
    finally:
        ours.stop()
