"""knot.testing: test sinks and method scripts with pytest, against the real sandbox.

Installed with knot-runtime as a pytest plugin (entry point `pytest11`, name `knot`), so its
fixtures need no import; the same helpers work without pytest:

    def test_greeter(run_sink):
        run = run_sink("scripts/sinks/greeter.py", "custom.hello.greet", {"name": "Ada"})
        assert run.output == ("greeted Ada",)
        assert run.directives[0]["name"] == "say"

    def test_retries(knot_runtime, assert_delivered):
        flaky = knot_runtime.recording_sink("flaky", "custom.*", fail_attempts=2)
        knot_runtime.emit("myapp.deployed", {"version": "1.2"})
        (event,) = assert_delivered(flaky, 1)          # after 5 s and 15 s of fake backoff
        assert knot_runtime.clock.sleeps == [5.0, 15.0]

Fixtures: `run_sink`, `call_method`, `knot_runtime`, `knot_project`, `knot_clock`,
`assert_delivered`; the marker `@pytest.mark.knot_project(PATH)` tests a copy of a project.

clock.py    FakeClock: delivery backoff in virtual time
sinks.py    run_sink / SinkRunner: one script, one event, the production sandbox
runtime.py  RuntimeHarness (an embedded runtime for tests), assert_delivered, copy_project
methods.py  MethodHarness: method scripts called in their real workers

The fixtures themselves are in the top-level module `pytest_knot` (the entry point), which
imports this package only when a test asks for one of them.
"""

from __future__ import annotations

from .clock import FakeClock
from .methods import MethodCall, MethodHarness
from .runtime import RuntimeHarness, assert_delivered, copy_project, wait_delivered
from .sinks import SinkRun, SinkRunFailed, SinkRunner, run_sink

__all__ = [
    "FakeClock",
    "MethodCall",
    "MethodHarness",
    "RuntimeHarness",
    "SinkRun",
    "SinkRunFailed",
    "SinkRunner",
    "assert_delivered",
    "copy_project",
    "run_sink",
    "wait_delivered",
]
