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
    servers: list[ServerProcess] = []
    try:
        modes = (["ours", str(tmp_path / "p")], ["script", str(tmp_path / "s")], ["bare"])
        # extend() keeps the servers started before one that fails, for the cleanup below
        servers.extend(ServerProcess([*app, *args], cwd=ROOT, core=None) for args in modes)
        body = json.dumps({"name": "bench"}).encode()
        for server in servers:
            bench_sky._check(server.url, body)
        result = load(
            servers[1].url, path=PATH, body=body, seconds=0.3, max_requests=300, core=None
        )
        assert result.requests > 0
        assert result.errors == 0
    finally:
        for server in servers:
            server.stop()
