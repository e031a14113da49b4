"""examples/spaces, as its README runs it: a real `knot serve`, the example server as a space,
and the example script sink reporting its health transitions."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import httpx

from .helpers import KnotServer
from .helpers import run_knot as knot
from .spacehelpers import free_port, process_alive

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "spaces"


def test_the_example_reports_unhealthy_with_the_failure_count(tmp_path: Path) -> None:
    project = tmp_path / "spaces"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".knot", "__pycache__"))
    server = KnotServer(project)
    try:
        server.wait_for_line(r"loaded sink report_health \(scripts/sinks/report_health\.py\)")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        made = knot(
            "space", "create", "web", "--cmd", f"{shlex.quote(sys.executable)} server.py {port}",
            "--url", base, "--health", f"{base}/health",
            "--interval", "0.25", "--threshold", "2", "--start",
            port=server.port,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        # The first check comes one interval after the start: time enough for the server.
        first = server.wait_for_line(r"INFO:\s+report_health: web is (un)?healthy")  # the sink
        assert "web is healthy (at " in first
        assert httpx.post(f"{base}/sick").status_code == 200
        server.wait_for_line(r"web is unhealthy: 2 failed checks in a row \(at ")
        assert httpx.post(f"{base}/well").status_code == 200
        server.wait_for_line(r"web is healthy again \(at ")
        logs = knot("space", "logs", "web", port=server.port).stdout.splitlines()
        assert logs[1:] == [
            f"serving on {base}",
            "health is now failing",
            "health is now passing",
        ]
        (space,) = [
            json.loads(line)
            for line in knot("space", "list", "--json", port=server.port).stdout.splitlines()
        ]
        assert process_alive(space["pid"])
    finally:
        code = server.terminate()
    assert code == 0
    assert not process_alive(space["pid"])  # stopping the runtime stopped the space
