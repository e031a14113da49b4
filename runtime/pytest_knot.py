"""The pytest plugin of knot.testing (entry point `pytest11`: `knot`; `-p no:knot` turns it off).

A module of its own, outside the `knot` package, so that loading the plugin (pytest does in
every run of an environment that has knot-runtime) imports nothing but pytest: the runtime is
imported by the first fixture a test uses. Importing `knot` costs ~0.3 s.

Fixtures:
  run_sink          run one sink script on one event in the production sandbox → a SinkRun
  call_method       call a method script's method in its real worker → a MethodCall
  knot_runtime      an embedded runtime (RuntimeHarness) on `knot_project`, backoff on
                    `knot_clock`; stopped after the test
  knot_project      the test's project folder: empty, or a copy of the project the
                    `knot_project(PATH)` marker names (PATH relative to the test file)
  knot_clock        the FakeClock delivery waits on (`auto=False` to step through retries)
  assert_delivered  `assert_delivered(sink, n, timeout=5.0)` → the events a recording sink got
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from knot import Event
    from knot.testing import FakeClock, MethodHarness, RuntimeHarness, SinkRunner

MARKER = "knot_project"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path): test a copy of this project's knot.toml and scripts folder (a "
        "relative path is relative to the test file); knot_runtime and call_method use it",
    )


@pytest.fixture
def knot_clock() -> FakeClock:
    """The fake clock `knot_runtime` and `call_method` wait on between delivery attempts."""
    from knot.testing import FakeClock

    return FakeClock()


@pytest.fixture
def knot_project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The test's project folder (override it to write a knot.toml or scripts first)."""
    from knot.testing import copy_project

    folder = tmp_path / "knot-project"
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        folder.mkdir()
        return folder
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes one argument, the project folder, e.g. "
            f'@pytest.mark.{MARKER}("..") for the folder above the tests.'
        )
    source = Path(marker.args[0])
    if not source.is_absolute():
        source = request.path.parent / source
    return copy_project(source, folder)


@pytest.fixture
def knot_runtime(knot_project: Path, knot_clock: FakeClock) -> Iterator[RuntimeHarness]:
    """An embedded runtime on `knot_project` (its knot.toml and scripts), started for the
    test and stopped after it; delivery backoff runs on `knot_clock`."""
    from knot.testing import RuntimeHarness

    with RuntimeHarness(knot_project, clock=knot_clock) as harness:
        yield harness


@pytest.fixture(scope="session")
def _knot_sink_runner() -> Iterator[SinkRunner]:
    from knot.testing import SinkRunner

    runner = SinkRunner()
    yield runner
    runner.close()


@pytest.fixture
def run_sink(_knot_sink_runner: SinkRunner) -> SinkRunner:
    """`run_sink(script, event_type, data=None, *, space=None, actor=None, owner="",
    project=None, check=True)`: one run of a sink script in the production sandbox."""
    return _knot_sink_runner


@pytest.fixture
def call_method(
    tmp_path: Path, knot_project: Path, knot_clock: FakeClock
) -> Iterator[MethodHarness]:
    """`call_method(script, method, params=None, *, event_type=None, event_data=None)`: a
    method script's method, called in its real worker (state kept for the test)."""
    from knot.testing import MethodHarness

    harness = MethodHarness(tmp_path / "knot-methods", project=knot_project, clock=knot_clock)
    yield harness
    harness.close()


@pytest.fixture
def assert_delivered() -> Callable[..., list[Event]]:
    """`assert_delivered(sink, count, *, timeout=5.0)`: see knot.testing.assert_delivered."""
    from knot.testing import assert_delivered

    return assert_delivered
