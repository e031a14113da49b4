"""The assignment every node computes alike: even, stable, and only to nodes that can serve."""

from __future__ import annotations

from collections import Counter

from knot.cluster.membership import assign

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
