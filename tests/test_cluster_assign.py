"""What every node decides alike: the assignment (even, stable, only to nodes that can serve
it) and which nodes are live."""

from __future__ import annotations

import json
import time
from collections import Counter

from knot.cluster.membership import Membership, assign

SINKS = [f"s{i}" for i in range(100)]


def test_every_sink_gets_one_node_and_no_node_more_than_its_share() -> None:
    out = assign(SINKS, ["a", "b", "c"])
    assert sorted(out) == sorted(SINKS)
    assert max(Counter(out.values()).values()) == 34  # ceil(100 / 3)
    assert assign(reversed(SINKS), ["c", "a", "b"]) == out  # the same on every node


def test_a_node_joining_moves_only_part_of_the_sinks() -> None:
    before = assign(SINKS, ["a", "b"])
    after = assign(SINKS, ["a", "b", "c"])
    moved = sum(before[s] != after[s] for s in SINKS)
    assert 30 <= moved <= 50  # about a third goes to the newcomer, little else moves
    assert sum(after[s] == "c" for s in SINKS) >= 30


def test_a_node_that_lacks_a_sink_is_never_given_it() -> None:
    out = assign(SINKS, ["a", "b"], can=lambda node, sink: node == "a" or sink != "s7")
    assert out["s7"] == "a"
    assert assign(["x"], ["a", "b"], can=lambda node, sink: False) == {}


class _Entry:
    def __init__(self, key: str, revision: int, node: str | None) -> None:
        self.key = key
        self.revision = revision
        self.operation = None if node else "DEL"
        self.value = json.dumps({"node": node}).encode() if node else b""


class _Storage:
    node_id = "me"


def test_a_node_known_only_by_its_claims_is_live_for_ack_wait() -> None:
    """Heartbeats and claims come through different watches: a newcomer's claim may arrive
    before its first heartbeat, and must not look like a dead node's."""
    membership = Membership(_Storage(), ack_wait=0.2)  # type: ignore[arg-type]
    membership._claim_seen(_Entry("s1", 5, "newcomer"))
    assert membership.live() == {"me", "newcomer"}
    time.sleep(0.3)
    assert membership.live() == {"me"}  # silent for ack_wait since its claim was seen
    membership._claim_seen(_Entry("s1", 4, "older"))  # an older revision changes nothing
    assert membership.claims["s1"].node == "newcomer"
    membership._claim_seen(_Entry("s1", 6, None))  # released
    assert "s1" not in membership.claims
