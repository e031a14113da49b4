"""The example scripts of `scripts/` and `examples/`, tested as their users would: with
knot.testing's fixtures (`run_sink`, `call_method`, `knot_runtime` on a copy of the project),
in the production sandbox."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from knot import Event, Space
from knot.testing import MethodHarness, RuntimeHarness, SinkRunner

ROOT = Path(__file__).resolve().parent.parent
SINKS = ROOT / "scripts" / "sinks"
DEPLOYS = ROOT / "scripts" / "methods" / "deploys.py"
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize(
    ("data", "space", "line"),
    [
        ({"version": "1.4.2", "commit": "9f1c2e7d"}, "web", "Deploying 1.4.2 (9f1c2e7) from web"),
        ({"version": "2.0"}, None, "Deploying 2.0 (no commit) from outside any space"),
        (
            {"version": 3, "commit": None},
            None,
            "Deploying unknown (no commit) from outside any space",
        ),
    ],
)
def test_deploy_notify_announces_version_commit_and_space(
    run_sink: SinkRunner, data: dict[str, object], space: str | None, line: str
) -> None:
    run = run_sink(SINKS / "deploy_notify.py", "custom.myapp.deployed", data, space=space)
    assert run.output == (line,)
    assert run.emitted == ()
    assert run.directives == ()


def test_greeter_answers_with_a_directive(run_sink: SinkRunner) -> None:
    run = run_sink(SINKS / "greeter.py", "custom.hello.greet", {"name": "Ada"})
    assert run.directives == ({"name": "say", "options": {"message": "Hello, Ada!", "lang": "en"}},)
    assert run.output == ("greeted Ada",)
    blank = run_sink(SINKS / "greeter.py", "custom.hello.greet", {"name": "   "})
    assert blank.directives[0]["options"]["message"] == "Hello, world!"


def test_space_alert_raises_an_alert_from_the_third_failure_on(run_sink: SinkRunner) -> None:
    script = SINKS / "space_alert.py"
    quiet = run_sink(script, "space.unhealthy", {"space_name": "web", "consecutive_failures": 2})
    assert quiet.emitted == ()
    assert quiet.output == ("web failed 2 check(s); alerting at 3",)
    loud = run_sink(
        script,
        "space.unhealthy",
        {"consecutive_failures": 3, "checked_at": "2026-01-01T00:00:00Z"},
        space=Space("sp-1", "api"),
    )
    (alert,) = loud.emitted
    assert alert.type == "custom.alerts.space_down"
    assert alert.data == {"space": "api", "failures": 3, "checked_at": "2026-01-01T00:00:00Z"}
    assert loud.output == (f"api failed 3 checks in a row: raised alert {alert.id}",)


def test_deploys_counts_per_space_and_raises_a_milestone_every_tenth(
    call_method: MethodHarness,
) -> None:
    for n in range(1, 10):
        done = call_method(DEPLOYS, "record", {"space": "web", "version": f"1.{n}"})
        assert done.result == {"count": n, "last": f"1.{n}"}
        assert done.output == (f"web: deploy #{n} (1.{n})",)
        assert done.emitted == ()
    tenth = call_method(DEPLOYS, "record", {"space": "web", "version": "2.0"})
    (milestone,) = tenth.emitted
    assert (milestone.type, milestone.data) == (
        "custom.deploys.milestone",
        {"space": "web", "count": 10},
    )
    call_method(DEPLOYS, "record", {"version": "0.1"})
    assert call_method(DEPLOYS, "count", {"space": "web"}).result == 10
    assert call_method(DEPLOYS, "count", ["(no space)"]).result == 1
    summary = call_method(DEPLOYS, "summary").result
    assert (summary["deploys"], summary["spaces"], summary["busiest"]) == (11, 2, "web")


@pytest.mark.knot_project("..")
def test_the_repository_project_routes_deploys_to_the_method_through_its_template(
    knot_runtime: RuntimeHarness,
) -> None:
    # knot.toml's deploy_params renders the method's params: the event's space, else the
    # payload's, and the version.
    for version in ("1.0", "1.1"):
        knot_runtime.emit("deploy.finished", {"space": "web", "version": version})
    knot_runtime.emit("myapp.deployed", {"version": "1.1"})
    knot_runtime.wait_idle()
    assert knot_runtime.call_method("deploys.count", {"space": "web"}) == 2
    sinks = {s.name: s for s in knot_runtime.sinks()}
    assert sinks["deploy_notify"].delivered == 1
    assert sinks["everything"].delivered == 3
    assert sinks["deploy_notify"].problem == ""


def test_the_sky_example_greets_with_the_event_type(run_sink: SinkRunner) -> None:
    script = EXAMPLES / "sky" / "scripts" / "sinks" / "greeter.py"
    run = run_sink(script, "custom.greet.hello", {"name": "Ada"})
    assert run.directives == (
        {"name": "say", "options": {"text": "Hello, Ada!", "event": "custom.greet.hello"}},
    )


@pytest.mark.parametrize(
    ("event_type", "data", "line"),
    [
        (
            "space.unhealthy",
            {"space_name": "web", "consecutive_failures": 2, "checked_at": "t1"},
            "web is unhealthy: 2 failed checks in a row (at t1)",
        ),
        (
            "space.healthy",
            {"space_name": "web", "previous": "unhealthy", "checked_at": "t2"},
            "web is healthy again (at t2)",
        ),
        ("space.healthy", {"space_name": "web", "checked_at": "t0"}, "web is healthy (at t0)"),
    ],
)
def test_the_spaces_example_reports_health_transitions(
    run_sink: SinkRunner, event_type: str, data: dict[str, object], line: str
) -> None:
    script = EXAMPLES / "spaces" / "scripts" / "sinks" / "report_health.py"
    assert run_sink(script, event_type, data).output == (line,)


@pytest.mark.knot_project("../examples/methods")
def test_the_methods_example_raises_milestones_its_recording_sink_keeps(
    knot_runtime: RuntimeHarness, assert_delivered: Callable[..., list[Event]]
) -> None:
    milestones = knot_runtime.sink("milestones")
    for n in range(10):
        knot_runtime.emit("deploy.finished", {"space": "api", "version": f"0.{n}"})
    knot_runtime.wait_idle()
    assert knot_runtime.call_method("deploys.count", ["api"]) == 10
    (event,) = assert_delivered(milestones, 1)
    assert event.data == {"space": "api", "count": 10}
    assert event.depth == 1
