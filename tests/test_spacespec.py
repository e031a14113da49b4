"""The space model: checking what users declare, storing it, and the health transition rule."""

from __future__ import annotations

import pytest

from knot import SpaceError
from knot.spaces.health import HealthChange, HealthState, HealthTracker, ProbeResult
from knot.spaces.spec import (
    HealthKind,
    OnRestart,
    SpaceRecord,
    SpaceSpec,
    SpaceState,
    check_space,
)

OK = ProbeResult(True, "")
FAIL = ProbeResult(False, "connection refused")


def test_a_full_spec_is_accepted() -> None:
    result = check_space(
        {
            "name": "web-1",
            "cmd": "  python -m http.server 8000  ",
            "urls": ["http://127.0.0.1:8000", "https://web.example.com/x"],
            "health": "http://localhost:8000/health",
            "interval": 2,
            "timeout": 0.5,
            "threshold": 3,
            "template_id": "tpl",
            "startup_script_id": "boot",
            "on_restart": "stop",
            "owner": "alice",
        }
    )
    assert result.errors == ()
    spec = result.spec
    assert spec is not None
    assert spec.cmd == "python -m http.server 8000"
    assert spec.urls == ("http://127.0.0.1:8000", "https://web.example.com/x")
    assert spec.health is not None
    assert spec.health.kind is HealthKind.HTTP
    assert (spec.health.interval, spec.health.timeout, spec.health.threshold) == (2.0, 0.5, 3)
    assert spec.on_restart is OnRestart.STOP
    assert spec.owner == "alice"


def test_a_health_check_that_is_not_a_url_is_a_command() -> None:
    spec = SpaceSpec.from_dict({"name": "db", "health": "pg_isready -q"})
    assert spec.health is not None
    assert spec.health.kind is HealthKind.COMMAND
    assert spec.health.interval == 10.0  # the default
    assert SpaceSpec.from_dict({"name": "db"}).health is None


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"name": "1abc"}, "must start with a letter"),
        ({"name": "a b"}, "must start with a letter"),
        ({"name": "x" * 65}, "must start with a letter"),
        ({}, "space name None"),
        ({"name": "w", "urls": ["ftp://x"]}, "not an http:// or https:// URL"),
        ({"name": "w", "urls": [1]}, "list of URL strings"),
        ({"name": "w", "health": "http://10.0.0.1/"}, "must point at this machine"),
        ({"name": "w", "health": "http://example.com/"}, "must point at this machine"),
        ({"name": "w", "health": "x", "interval": 0}, "interval must be a number"),
        ({"name": "w", "health": "x", "timeout": "1"}, "timeout must be a number"),
        ({"name": "w", "health": "x", "threshold": 0}, "threshold must be an integer >= 1"),
        ({"name": "w", "on_restart": "maybe"}, "'start' or 'stop'"),
        ({"name": "w", "cmd": ["ls"]}, "cmd must be a string"),
        ({"name": "w", "colour": "red"}, "Unknown field: colour"),
    ],
)
def test_bad_specs_are_refused_with_a_sentence_naming_the_problem(
    raw: dict[str, object], words: str
) -> None:
    result = check_space(raw)
    assert result.spec is None
    assert any(words in e for e in result.errors), result.errors
    with pytest.raises(SpaceError, match="is not valid"):
        SpaceSpec.from_dict(raw)


def test_every_problem_is_reported_at_once() -> None:
    result = check_space({"name": "9", "urls": ["nope"], "on_restart": "x"})
    assert len(result.errors) == 3


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "[::1]", "localhost"])
def test_loopback_health_urls_are_accepted(host: str) -> None:
    assert check_space({"name": "w", "health": f"http://{host}:8000/"}).errors == ()


def test_a_record_survives_the_store_round_trip() -> None:
    spec = SpaceSpec.from_dict(
        {"name": "w", "cmd": "sleep 9", "health": "true", "interval": 0.5, "threshold": 2}
    )
    record = SpaceRecord(spec, id="id-1", created_at="2026-01-01T00:00:00Z")
    record.state = SpaceState.RUNNING
    record.pid, record.pid_created, record.resume = 42, 12.5, True
    again = SpaceRecord.from_store(record.to_store())
    assert again == record


def test_health_transitions_only_with_the_first_result_counting() -> None:
    tracker = HealthTracker(threshold=1)
    first = tracker.observe(OK, "t1")
    assert first == HealthChange(HealthState.UNKNOWN, HealthState.HEALTHY, 0, "t1")
    assert tracker.observe(OK, "t2") is None
    down = tracker.observe(FAIL, "t3")
    assert down == HealthChange(HealthState.HEALTHY, HealthState.UNHEALTHY, 1, "t3")
    assert tracker.observe(FAIL, "t4") is None
    assert tracker.consecutive_failures == 2
    assert tracker.last_error == "connection refused"
    up = tracker.observe(OK, "t5")
    assert up == HealthChange(HealthState.UNHEALTHY, HealthState.HEALTHY, 0, "t5")


def test_a_threshold_counts_failures_before_the_flip() -> None:
    tracker = HealthTracker(threshold=3)
    assert tracker.observe(FAIL, "t1") is None  # still unknown
    assert tracker.observe(FAIL, "t2") is None
    change = tracker.observe(FAIL, "t3")
    assert change == HealthChange(HealthState.UNKNOWN, HealthState.UNHEALTHY, 3, "t3")
    tracker.observe(OK, "t4")
    assert tracker.observe(FAIL, "t5") is None  # one failure is not enough any more
    assert tracker.observe(OK, "t6") is None  # ... and a success resets the count
    assert tracker.consecutive_failures == 0
    assert tracker.state is HealthState.HEALTHY


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"on_restart": [1]}, "on_restart must be 'start' or 'stop'"),
        ({"on_restart": {"a": 1}}, "on_restart must be 'start' or 'stop'"),
        ({"urls": ["http://["]}, "is not an http:// or https:// URL"),
        ({"health": "http://[::1"}, "is not a valid URL"),
    ],
)
def test_unhashable_or_unparsable_fields_are_problems_not_crashes(
    fields: dict[str, object], words: str
) -> None:
    """Found by fuzzing: these raised TypeError / ValueError (a 500 from POST /api/spaces)."""
    result = check_space({"name": "web", **fields})
    assert result.spec is None
    assert any(words in e for e in result.errors), result.errors
