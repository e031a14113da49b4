from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knot import PatternError
from knot._patterns import (
    Pattern,
    PatternIndex,
    PatternKind,
    parse_patterns,
    reading_pattern,
    validate_patterns,
)


def test_three_kinds() -> None:
    assert Pattern.parse("*").kind is PatternKind.ALL
    assert Pattern.parse("space.*").kind is PatternKind.PREFIX
    assert Pattern.parse("space.created").kind is PatternKind.EXACT


def test_prefix_is_greedy_on_the_dot() -> None:
    p = Pattern.parse("custom.myapp.*")
    assert p.matches("custom.myapp.deploy")
    assert p.matches("custom.myapp.a.b.c")
    assert not p.matches("custom.myapp")
    assert not p.matches("custom.myappx.deploy")


def test_whitespace_trimmed_and_empty_entries_dropped() -> None:
    pats = parse_patterns(" custom.a.* ,, space.started ,")
    assert [p.text for p in pats] == ["custom.a.*", "space.started"]


@pytest.mark.parametrize("bad", ["*.created", "space.*.x", "sp*", "**", "a.**", ".*", "a b"])
def test_other_wildcards_are_refused_naming_the_pattern(bad: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_patterns(f"space.started, {bad}")
    assert info.value.pattern == bad
    assert repr(bad) in str(info.value)


def test_validation_returns_every_problem() -> None:
    patterns, problems = validate_patterns("ok.*, *.bad, sp*")
    assert [p.text for p in patterns] == ["ok.*"]
    assert len(problems) == 2


def test_empty_spec_is_a_problem() -> None:
    _, problems = validate_patterns(" , ")
    assert problems


_segment = st.text(alphabet="abc", min_size=1, max_size=2)
_type = st.lists(_segment, min_size=1, max_size=4).map(".".join)
_pattern = st.one_of(st.just("*"), _type, _type.map(lambda t: t + ".*"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(_pattern, min_size=1, max_size=3), min_size=1, max_size=30),
    st.lists(_type, min_size=1, max_size=20),
)
def test_index_agrees_with_scanning_every_sink(specs: list[list[str]], types: list[str]) -> None:
    index: PatternIndex[int] = PatternIndex()
    parsed = {i: parse_patterns(spec) for i, spec in enumerate(specs)}
    for key, pats in parsed.items():
        index.set(key, pats)
    for event_type in types:
        expected = {k for k, pats in parsed.items() if any(p.matches(event_type) for p in pats)}
        assert set(index.match(event_type)) == expected


def test_index_updates_and_removals_invalidate_the_cache() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.set("a", parse_patterns("x.*"))
    assert index.match("x.y") == ("a",)
    index.set("a", parse_patterns("z"))
    assert index.match("x.y") == ()
    index.set("b", parse_patterns("*"))
    index.discard("a")
    assert index.match("z") == ("b",)


def test_index_lookup_does_not_scan_sinks() -> None:
    """Matching consults buckets by type prefix: its cost must not grow with unrelated sinks."""
    index: PatternIndex[str] = PatternIndex()
    for i in range(500):
        index.set(f"s{i}", parse_patterns(f"custom.app{i}.*, custom.exact{i}"))
    index.set("target", parse_patterns("custom.app7.deploy"))
    probes = 0
    original_get = dict.get

    class CountingDict(dict[str, dict[str, None]]):
        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            nonlocal probes
            probes += 1
            return original_get(self, key, default)

    index._prefix = CountingDict(index._prefix)
    index._exact = CountingDict(index._exact)
    index._cache.clear()
    assert set(index.match("custom.app7.deploy")) == {"s7", "target"}
    assert probes <= 3  # the exact type, "custom.", "custom.app7."


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("zz.*", "custom.zz.*"),
        ("zz.tick", "custom.zz.tick"),
        ("custom.zz.*", "custom.zz.*"),
        ("*", "*"),
        ("space.*", "space.*"),
        ("space.started", "space.started"),
        ("space.nosuch", "custom.space.nosuch"),
        ("spa.*", "custom.spa.*"),
    ],
)
def test_a_typed_reading_pattern_gets_custom_unless_it_matches_system_events(
    typed: str, read: str
) -> None:
    assert reading_pattern(typed).text == read
