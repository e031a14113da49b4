"""examples/methods, as its README runs it: a real `knot serve`, the deploys method script,
subscribed to deploy events through a json-rpc sink and queried with `knot call`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from .helpers import KnotServer, wait_until
from .helpers import run_knot as knot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "methods"


def test_the_example_counts_deploys_per_space_and_answers(tmp_path: Path) -> None:
    project = tmp_path / "methods"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".knot", "__pycache__"))
    server = KnotServer(project)
    try:
        server.wait_for_line(r"loaded method script deploys \(scripts/methods/deploys\.py\)")
        for space, version in [("web", "1.4.2"), ("web", "1.4.3"), ("api", "0.9.0")]:
            payload = json.dumps({"space": space, "version": version})
            assert knot("event", "deploy.finished", payload, port=server.port).returncode == 0
        server.wait_for_line(r"INFO:\s+deploys.record: api: deploy #1 \(0\.9\.0\)")
        assert knot("call", "deploys.count", '{"space": "web"}', port=server.port).stdout == "2\n"
        assert knot("call", "deploys.count", '["api"]', port=server.port).stdout == "1\n"
        summary = knot("call", "summary", port=server.port)
        assert summary.returncode == 0, summary.stderr
        documented = (EXAMPLE / "README.md").read_text().split("```json\n")[1].split("```")[0]
        assert summary.stdout == documented  # the README shows exactly what it prints
        listed = knot("methods", port=server.port).stdout.splitlines()
        assert listed[1].split() == [
            "deploys.count",
            "serial",
            "scripts/methods/deploys.py:30",
        ]
        sinks = {s["name"]: s for s in httpx.get(f"{server.url}/api/sinks").json()["sinks"]}
        assert (sinks["deploys.record"]["type"], sinks["deploys.record"]["delivered"]) == (
            "method",
            3,
        )
        # Ten deploys of one space raise a milestone event.
        for n in range(8):
            payload = json.dumps({"space": "web", "version": f"2.{n}"})
            knot("event", "deploy.finished", payload, port=server.port)
        wait_until(lambda: httpx.get(f"{server.url}/api/sinks/milestones").json()["delivered"] == 1)
        events = knot("events", "custom.deploys.milestone", "--json", port=server.port)
        (milestone,) = [json.loads(line) for line in events.stdout.splitlines()]
        assert milestone["data"] == {"space": "web", "count": 10}
        assert milestone["depth"] == 1
    finally:
        assert server.terminate() == 0


def test_the_example_script_is_the_one_the_repository_serves() -> None:
    served = (ROOT / "scripts" / "methods" / "deploys.py").read_text()
    assert served == (EXAMPLE / "scripts" / "methods" / "deploys.py").read_text()
