"""Nodes of one cluster for tests: project folders on one NATS, real `knot serve` processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .helpers import KnotServer, start_server, wait_until
from .natshelpers import NatsServer
from .receiver import Receiver

ACK_WAIT = 2.0  # seconds: fail-over must happen within ACK_WAIT + 2


def node_project(
    folder: Path,
    server: NatsServer,
    prefix: str,
    *,
    receiver: Receiver | None = None,
    sinks: tuple[str, ...] = (),
    zone: str = "local",
    extra: str = "",
) -> Path:
    """A project folder for one node: same NATS, same streams, same sinks as its peers."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        f'zone = "{zone}"\n[store]\nurl = "{server.url}"\nstream_prefix = "{prefix}"\n'
        f"ack_wait = {ACK_WAIT}\n[delivery]\nbackoff = [0.05]\nqueue_size = 1000\n{extra}\n"
    )
    for name in sinks:
        assert receiver is not None
        text += (
            f'[[sinks]]\nname = "{name}"\ntype = "webhook"\nevents = "*"\n'
            f'url = "{receiver.url("/" + name)}"\nsecret = "s3cret"\n'
        )
    (folder / "knot.toml").write_text(text, encoding="utf-8")
    return folder


def cluster(node: KnotServer) -> dict[str, Any]:
    with node.client() as http:
        answer = http.get("/api/cluster")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def holders(node: KnotServer) -> dict[str, str]:
    """sink → the address of the node serving it, as `node` sees the cluster."""
    return {sink: n["address"] for n in cluster(node)["nodes"] for sink in n["sinks"]}


def settled(nodes: list[KnotServer], sinks: tuple[str, ...], timeout: float = 15.0) -> None:
    """Wait until every node sees every sink held by exactly one of them, all nodes busy."""

    def check() -> bool:
        for node in nodes:
            view = cluster(node)["nodes"]
            if len(view) != len(nodes):
                return False
            held = [s for n in view for s in n["sinks"]]
            if sorted(held) != sorted(sinks):
                return False
            if len(sinks) >= len(nodes) and any(not n["sinks"] for n in view):
                return False  # enough sinks for every node: every node works
        return True

    wait_until(check, timeout=timeout, interval=0.1)


def post(node: KnotServer, n: int) -> str:
    with node.client() as http:
        answer = http.post("/event", json={"type": "t.n", "payload": {"n": n}})
        assert answer.status_code == 202, answer.text
        event_id: str = answer.json()["id"]
        return event_id


def ids_at(receiver: Receiver, sink: str) -> list[str]:
    return [r.headers["x-knot-event-id"] for r in receiver.at("/" + sink)]


def in_order_at_least_once(got: list[str], sent: list[str]) -> None:
    """Every event, in the order sent; a fail-over may replay a short run once (at most
    twice each), never anything out of order apart from that replay."""
    first: list[str] = []
    seen: set[str] = set()
    for event_id in got:
        if event_id not in seen:
            first.append(event_id)
            seen.add(event_id)
    assert first == sent, "an event is missing or out of order"
    counts: dict[str, int] = {}
    for event_id in got:
        counts[event_id] = counts.get(event_id, 0) + 1
    assert max(counts.values(), default=1) <= 2, "an event was delivered three times"


STARTED: list[KnotServer] = []  # every node a test started; conftest kills what is left


def start_nodes(projects: list[Path]) -> list[KnotServer]:
    nodes: list[KnotServer] = []
    for project in projects:
        nodes.append(start_server(project))
        STARTED.append(nodes[-1])
    return nodes


def timed(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    wait_until(predicate, timeout=timeout, interval=0.01)
    return time.monotonic() - started
