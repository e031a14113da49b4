"""knot.testing as users meet it: the pytest plugin, run by pytester in a pytest of its own.

Each test writes a small project and test files into pytester's folder and runs pytest on them
in a subprocess, where the plugin is loaded by its entry point, exactly as in a project that
installed knot-runtime. The inner tests run real sandbox workers and real embedded runtimes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

GREETER = """\
# events: custom.hello.*
# description: greet, and ask for a follow-up
import knot.event

name = knot.event.get_string("name", "world")
print(f"hello {name}")
print(f"from {knot.event.space()['name'] or 'nowhere'}")
knot.event.directive("say", {"text": f"Hello, {name}!"})
knot.event.emit("hello.greeted", {"name": name})
"""

COUNTER = """\
import knot.event
import knot.methods

counts = {}


@knot.methods.method(events=["custom.deploy.done"])
def record(params):
    # Called directly with {"space": ...}; for an event, params are the default template's.
    space = params.get("space") or knot.event.get_string("space", "?")
    counts[space] = counts.get(space, 0) + 1
    print(f"{space}: {counts[space]}")
    knot.event.emit("deploy.counted", {"space": space, "type": knot.event.type()})
    return counts[space]


@knot.methods.method(params=["space"])
def count(params):
    return counts.get(params["space"], 0)


@knot.methods.method
def boom(params):
    raise ValueError("no such deploy")
"""


def project(pytester: pytest.Pytester) -> None:
    """A project in pytester's folder: knot.toml, a sink script and a method script."""
    pytester.makefile(
        ".toml",
        knot="""
        [[sinks]]
        name = "everything"
        type = "recording"
        events = "*"
        """,
    )
    sinks = pytester.mkdir("scripts") / "sinks"
    sinks.mkdir()
    (sinks / "greeter.py").write_text(GREETER)
    methods = pytester.path / "scripts" / "methods"
    methods.mkdir()
    (methods / "counter.py").write_text(COUNTER)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)


def test_the_plugin_is_loaded_by_its_entry_point_and_lists_its_fixtures(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, "--fixtures")
    for name in (
        "run_sink",
        "call_method",
        "knot_runtime",
        "knot_project",
        "knot_clock",
        "assert_delivered",
    ):
        result.stdout.fnmatch_lines([f"{name}*"])
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.knot_project(path)*"])
    pytester.makepyfile("def test_without(knot_clock): pass")
    off = run(pytester, "-p", "no:knot")
    off.stdout.fnmatch_lines(["*fixture 'knot_clock' not found*"])


def test_run_sink_gives_output_emits_and_directives_and_fails_loudly(
    pytester: pytest.Pytester,
) -> None:
    project(pytester)
    pytester.makepyfile(
        test_sinks="""
        import pytest
        from pathlib import Path
        from knot import Space
        from knot.testing import SinkRunFailed

        GREETER = Path(__file__).parent / "scripts" / "sinks" / "greeter.py"

        def test_what_it_did(run_sink):
            run = run_sink(GREETER, "custom.hello.wave", {"name": "Ada"}, space="web")
            assert run.output == ("hello Ada", "from web")
            (emitted,) = run.emitted
            assert (emitted.type, emitted.data) == ("custom.hello.greeted", {"name": "Ada"})
            assert run.directives == ({"name": "say", "options": {"text": "Hello, Ada!"}},)
            full = run_sink(GREETER, "custom.hello.x", space=Space("s1", "api", ("http://a",)))
            assert full.output == ("hello world", "from api")

        def test_an_event_the_runtime_would_never_send_is_a_failure(run_sink):
            with pytest.raises(SinkRunFailed, match="did you mean custom.hello.wave"):
                run_sink(GREETER, "hello.wave", {"name": "Ada"})
            anyway = run_sink(GREETER, "hello.wave", {"name": "Ada"}, check=False)
            assert anyway.output == ("hello Ada", "from nowhere") and not anyway.matched

        def test_a_failing_script_fails_with_what_it_printed(run_sink, tmp_path):
            script = tmp_path / "divider.py"
            script.write_text("# events: *\\nprint('about to divide')\\n1 / 0\\n")
            with pytest.raises(SinkRunFailed) as failed:
                run_sink(script, "custom.x")
            message = str(failed.value)
            assert f"The script {script}:3 raised ZeroDivisionError" in message
            assert "It printed:\\n  about to divide" in message
            assert failed.value.run.output == ("about to divide",)

        def test_a_refused_script_names_file_line_and_rule(run_sink, tmp_path):
            script = tmp_path / "sneaky.py"
            script.write_text("# events: *\\nimport os\\n")
            with pytest.raises(SinkRunFailed, match=r"sneaky.py:2:8: import of 'os'"):
                run_sink(script, "custom.x")

        def test_limits_come_from_a_project(run_sink, tmp_path):
            (tmp_path / "knot.toml").write_text("[scripts]\\ntimeout = 0.2\\n")
            script = tmp_path / "spin.py"
            script.write_text("# events: *\\nwhile True:\\n    pass\\n")
            run = run_sink(script, "custom.x", project=tmp_path, check=False)
            assert "ran longer than 0.2 s (scripts.timeout)" in run.error
        """
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=5)


def test_knot_runtime_retries_on_the_fake_clock_and_assert_delivered_counts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_runtime="""
        import time

        def test_retries_never_sleep(knot_runtime, assert_delivered, knot_clock):
            flaky = knot_runtime.recording_sink("flaky", "custom.deploy.*", fail_attempts=2)
            started = time.monotonic()
            knot_runtime.emit("deploy.done", {"version": "1.2"})
            (event,) = assert_delivered(flaky, 1)
            assert event.type == "custom.deploy.done" and event.data == {"version": "1.2"}
            assert knot_clock.sleeps == [5.0, 15.0]  # knot.toml's default backoff
            assert knot_clock.now == 20.0
            assert time.monotonic() - started < 3

        def test_stepping_through_the_attempts(knot_runtime, assert_delivered, knot_clock):
            knot_clock.auto = False
            flaky = knot_runtime.recording_sink("flaky", fail_attempts=2)
            knot_runtime.emit("deploy.done")
            knot_clock.wait_for_sleepers(1)       # attempt 1 failed; 5 s to wait
            assert knot_clock.pending == [5.0]
            knot_clock.advance(4.9)
            assert flaky.received == 0 and knot_clock.pending == [5.0 - 4.9]
            knot_clock.advance(0.1)
            knot_clock.wait_for_sleepers(1)       # attempt 2 failed; 15 s more
            assert knot_clock.pending == [15.0]
            knot_clock.advance(15)
            assert_delivered(flaky, 1)
            (status,) = [s for s in knot_runtime.sinks() if s.name == "flaky"]
            assert status.retries == 2

        def test_a_give_up_is_audited(knot_runtime, knot_clock):
            knot_runtime.recording_sink("broken", fail_attempts=9)
            report = knot_runtime.emit_and_wait("x", {})
            assert report.outcomes["broken"].attempts == 3
            knot_runtime.wait_idle()
            (entry,) = knot_runtime.audit_entries(sink="broken")
            assert "gave up" in entry.message

        def test_too_few(knot_runtime, assert_delivered):
            rec = knot_runtime.recording_sink("rec", "custom.a.*")
            knot_runtime.emit("a.one", {"n": 1})
            assert_delivered(rec, 2, timeout=0.5)

        def test_too_many(knot_runtime, assert_delivered):
            rec = knot_runtime.recording_sink("rec")
            for n in range(3):
                knot_runtime.emit("a.more", {"n": n})
            knot_runtime.wait_idle()
            assert_delivered(rec, 2)
        """
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: The sink rec received 1 event(s) within 0.5 s, expected 2:",
            "*custom.a.one * {'n': 1}",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*AssertionError: The sink rec received 3 event(s) within 5.0 s, expected 2:"]
    )


def test_knot_project_marker_tests_a_copy_of_a_real_project(pytester: pytest.Pytester) -> None:
    project(pytester)
    tests = pytester.mkdir("tests")
    (tests / "test_project.py").write_text(
        textwrap.dedent(
            """
            import pytest

            pytestmark = pytest.mark.knot_project("..")

            def test_its_sinks_and_methods_run(knot_runtime, knot_project, assert_delivered):
                assert knot_project != knot_runtime.project.parent  # a copy, in tmp_path
                rec = knot_runtime.recording_sink("greeted", "custom.hello.greeted")
                report = knot_runtime.emit_and_wait("hello.wave", {"name": "Ada"})
                (directive,) = report.outcomes["greeter"].result.directives
                assert (directive.name, directive.sink) == ("say", "greeter")
                (event,) = assert_delivered(rec, 1)
                assert event.data == {"name": "Ada"} and event.depth == 1
                knot_runtime.emit("deploy.done", {"space": "web"})
                knot_runtime.wait_idle()
                assert knot_runtime.call_method("counter.count", ["web"]) == 1
                names = {s.name for s in knot_runtime.sinks()}
                assert {"everything", "greeter", "counter.record"} <= names

            def test_saving_a_new_version(knot_runtime, knot_project):
                reload = knot_runtime.write_sink("greeter", "# events: *\\nprint('v2')\\n")
                assert reload.ok, reload.message
                report = knot_runtime.emit_and_wait("hello.wave")
                assert report.outcomes["greeter"].status.value == "delivered"
                broken = knot_runtime.write_sink("greeter", "# events: *\\nimport os\\n")
                assert not broken.ok
                assert "import of 'os' is not allowed" in broken.message

            def test_a_bad_marker_is_a_usage_error(knot_project):
                pass

            test_a_bad_marker_is_a_usage_error = pytest.mark.knot_project("..", "x")(
                test_a_bad_marker_is_a_usage_error
            )
            """
        )
    )
    result = run(pytester, "-v", "tests")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*knot_project takes one argument, the project folder*"])
    assert (pytester.path / "scripts" / "sinks" / "greeter.py").read_text() == GREETER
    assert not (pytester.path / ".knot").exists()  # the project's own store was never made


def test_call_method_keeps_state_and_reports_output_emits_and_errors(
    pytester: pytest.Pytester,
) -> None:
    project(pytester)
    pytester.makepyfile(
        test_methods="""
        import pytest
        from pathlib import Path
        from knot import MethodFailed, ScriptFailed

        COUNTER = Path(__file__).parent / "scripts" / "methods" / "counter.py"

        def test_state_carries_over_between_calls(call_method):
            first = call_method(COUNTER, "record", {"space": "web"})
            assert (first.method, first.result, first.output) == ("counter.record", 1, ("web: 1",))
            (emitted,) = first.emitted
            assert emitted.type == "custom.deploy.counted"
            assert emitted.data == {"space": "web", "type": ""}  # a direct call: no event
            call_method(COUNTER, "record", {"space": "web"})
            assert call_method(COUNTER, "count", ["web"]).result == 2
            assert call_method(COUNTER, "count", {"space": "api"}).result == 0

        def test_a_call_for_an_event(call_method):
            done = call_method(
                COUNTER, "record", {"space": "web"},
                event_type="custom.deploy.finished", event_data={"space": "web"},
            )
            (child,) = done.emitted
            assert child.data["type"] == "custom.deploy.finished" and child.depth == 1

        def test_errors_are_json_rpc_errors(call_method, tmp_path):
            with pytest.raises(MethodFailed) as failed:
                call_method(COUNTER, "boom")
            assert failed.value.code == -32000 and "no such deploy" in failed.value.message
            with pytest.raises(MethodFailed) as bad:
                call_method(COUNTER, "count", {"wrong": 1})
            assert bad.value.code == -32602
            with pytest.raises(Exception, match="declares no method 'nope'"):
                call_method(COUNTER, "nope")
            broken = tmp_path / "broken.py"
            broken.write_text("import os\\n")
            with pytest.raises(ScriptFailed, match="import of 'os' is not allowed"):
                call_method(broken, "x")

        def test_a_changed_script_starts_afresh(call_method, tmp_path):
            script = tmp_path / "tally.py"
            script.write_text(
                "import knot.methods\\nn = []\\n@knot.methods.method\\n"
                "def add(params):\\n    n.append(1)\\n    return len(n)\\n"
            )
            assert [call_method(script, "add").result for _ in range(3)] == [1, 2, 3]
            script.write_text(script.read_text() + "# v2\\n")
            assert call_method(script, "add").result == 1
        """
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=4)


def test_loading_the_plugin_imports_nothing_of_the_runtime_and_knot_not_the_plugin() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import pytest_knot
        assert not [m for m in sys.modules if m == "knot" or m.startswith("knot.")]
        sys.modules.pop("pytest", None)
        for name in [m for m in sys.modules if m.startswith(("pytest", "_pytest"))]:
            del sys.modules[name]
        import knot
        assert "knot.testing" not in sys.modules and "pytest" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
