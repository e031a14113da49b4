"""Method scripts in a cluster: one worker for the whole cluster, called from any node over
NATS; when its node dies another node takes the lease (and the script's state starts afresh)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .clusterhelpers import ACK_WAIT, cluster, node_project, start_nodes, timed
from .helpers import KnotServer, wait_until
from .natshelpers import NatsServer, unique_prefix

COUNTER = """import knot.methods

state = {"n": 0}


@knot.methods.method()
def bump(params):
    state["n"] = state["n"] + 1
    return {"n": state["n"]}
"""


def call(node: KnotServer, method: str = "counter.bump") -> dict[str, Any]:
    with node.client() as http:
        answer: dict[str, Any] = http.post(
            "/json-rpc", json={"jsonrpc": "2.0", "method": method, "params": {}, "id": 1}
        ).json()
        return answer


def holder_of(node: KnotServer, script: str) -> str:
    found = [n["address"] for n in cluster(node)["nodes"] if script in n["methods"]]
    return found[0] if found else ""


def settled_holder(nodes: list[KnotServer], script: str, *, steady: float = 1.5) -> str:
    """The node every node names as the script's holder, once that has not changed for
    `steady` seconds: when the other node gets the synced script it becomes able to run it
    too, and the assignment may move the lease there (its state starting afresh)."""
    since, seen = time.monotonic(), ""

    def check() -> bool:
        nonlocal since, seen
        holders = {holder_of(n, script) for n in nodes}
        now = holders.pop() if len(holders) == 1 else ""
        if now != seen or not now:
            since, seen = time.monotonic(), now
        return bool(seen) and time.monotonic() - since >= steady

    wait_until(check, timeout=15, interval=0.1)
    return seen


def test_one_worker_serves_calls_from_every_node_and_moves_when_its_node_dies(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    prefix = unique_prefix()
    projects = [node_project(tmp_path / n, nats_server, prefix) for n in ("a", "b")]
    script = projects[0] / "scripts" / "methods" / "counter.py"
    script.parent.mkdir(parents=True)
    script.write_text(COUNTER, encoding="utf-8")
    a, b = nodes = start_nodes(projects)
    try:
        b.wait_for_line("loaded method script counter", timeout=10)  # the synced script
        settled_holder(nodes, "counter")
        answers = [call(nodes[i % 2]) for i in range(6)]
        assert all("result" in x for x in answers), answers
        counts = [x["result"]["n"] for x in answers]
        assert counts == [1, 2, 3, 4, 5, 6]  # one worker, whichever node was asked
        holder = next(n for n in nodes if n.url == holder_of(a, "counter"))
        survivor = b if holder is a else a
        holder.kill()
        took = timed(lambda: call(survivor).get("result", {}).get("n") == 1, ACK_WAIT + 4)
        assert took <= ACK_WAIT + 2, f"the method script moved after {took:.1f} s"
        assert call(survivor)["result"]["n"] == 2  # its state started afresh there
    finally:
        for node in nodes:
            node.kill()
