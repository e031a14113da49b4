"""Saved scripts across the cluster: a save on one node runs on every node; a refused save
runs nowhere; a node that starts with an older file takes the newer save (and says so)."""

from __future__ import annotations

import os
from pathlib import Path

from .clusterhelpers import cluster, holders, node_project, post, start_nodes
from .helpers import KnotServer, wait_until
from .natshelpers import NatsServer, unique_prefix

SCRIPT = """# events: custom.t.*
import knot.event

knot.event.emit("seen.{v}", {{"n": knot.event.get_int("n")}})
"""


def save(project: Path, source: str) -> Path:
    path = project / "scripts" / "sinks" / "echo.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(".echo.py.tmp")
    temp.write_text(source, encoding="utf-8")
    os.replace(temp, path)  # an atomic save, as editors do
    return path


def seen(node: KnotServer) -> list[str]:
    with node.client() as http:
        events = http.get("/api/events", params={"pattern": "custom.seen.*", "n": 500}).json()
    return [e["type"] for e in events["events"]]


def test_a_save_on_one_node_runs_on_every_node(tmp_path: Path, nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    projects = [node_project(tmp_path / n, nats_server, prefix) for n in ("a", "b")]
    a, b = nodes = start_nodes(projects)
    try:
        wait_until(lambda: all(len(cluster(n)["nodes"]) == 2 for n in nodes))
        save(projects[0], SCRIPT.format(v="v1"))
        copy = projects[1] / "scripts" / "sinks" / "echo.py"
        wait_until(lambda: copy.exists() and "v1" in copy.read_text(), timeout=5)
        wait_until(lambda: any(n["sinks"] == ["echo"] for n in cluster(a)["nodes"]))
        post(a, 1)
        wait_until(lambda: seen(b) == ["custom.seen.v1"])
        # Saved on the other node this time: the new code runs, whoever serves the sink.
        save(projects[1], SCRIPT.format(v="v2"))
        mine = projects[0] / "scripts" / "sinks" / "echo.py"
        wait_until(lambda: "v2" in mine.read_text(), timeout=5)
        # A sink being handed over is held by nobody for a moment: wait for its holder.
        found: list[KnotServer] = []

        def held() -> bool:
            url = holders(a).get("echo")
            found[:] = [n for n in nodes if n.url == url]
            return bool(found)

        wait_until(held, timeout=10)
        found[0].wait_for_line("reloaded sink echo")
        post(b, 2)
        wait_until(lambda: seen(a)[-1:] == ["custom.seen.v2"])
        # A save the sandbox refuses is never published: every node keeps v2.
        save(projects[0], "# events: custom.t.*\nimport os\n")
        a.wait_for_line(r"echo.*(kept|import)")
        post(a, 3)
        wait_until(lambda: seen(b)[-1:] == ["custom.seen.v2"] and len(seen(b)) == 3)
        assert "v2" in copy.read_text()
        # A node that starts with an older file of its own takes the newer save.
        late = node_project(tmp_path / "c", nats_server, prefix)
        old = save(late, SCRIPT.format(v="old"))
        os.utime(old, (1_000_000_000, 1_000_000_000))
        (c,) = start_nodes([late])
        nodes.append(c)
        wait_until(lambda: "v2" in old.read_text(), timeout=5)
        with c.client() as http:
            audit = http.get("/api/audit").json()["audit"]
        assert any(e["kind"] == "script_replaced" and "echo.py" in e["message"] for e in audit)
    finally:
        for node in nodes:
            node.kill()
