from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing import globalipapp

from knot import RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns

from .clusterhelpers import STARTED
from .fuzz_server import FuzzTarget, start_fuzz_target, stop_fuzz_target
from .helpers import KnotServer, start_server
from .natshelpers import NatsServer
from .receiver import Receiver

# Fuzz budgets (tests/fuzzing.py scales each test's examples from max_examples): "ci" keeps
# the suite quick; KNOT_FUZZ=deep, or pytest --hypothesis-profile=deep, digs 40 times deeper.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("deep", max_examples=4000, deadline=None)
settings.load_profile("deep" if os.environ.get("KNOT_FUZZ", "") == "deep" else "ci")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a runtime it did not start, or a user's real settings."""
    for name in ("KNOT_API_PORT", "KNOT_URL", "KNOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (no knot.toml: every default)."""
    path = tmp_path / "project"
    path.mkdir()
    return path


def write_config(project: Path, text: str) -> Path:
    path = project / "knot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def recording(name: str = "rec", events: str = "*", **options: object) -> RecordingSink:
    return RecordingSink(
        SinkSpec(
            name, "recording", parse_patterns(events), options=options, origin=SinkOrigin.BUILTIN
        )
    )


@pytest.fixture
async def runtime(project: Path) -> AsyncIterator[Runtime]:
    async with Runtime(project) as rt:
        yield rt


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[KnotServer]]:
    started: list[KnotServer] = []

    class Factory(KnotServer):
        def __init__(self, project: Path, **kwargs: object) -> None:
            super().__init__(project, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Factory
    for server in started:
        server.kill()


@pytest.fixture
def knot_server(project: Path) -> Iterator[KnotServer]:
    server = start_server(project)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """A real `knot serve` for the fuzz suites, shared by the tests of one module."""
    target = start_fuzz_target(tmp_path_factory.mktemp("fuzz"))
    yield target
    stop_fuzz_target(target)


@pytest.fixture
def jupyter_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jupyter's and IPython's folders (kernels, connection files, history) under tmp_path."""
    home = tmp_path / "jupyter"
    for name, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("JUPYTER_PATH", str(home / "prefix" / "share" / "jupyter"))
    return home


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> InteractiveShell:
    """IPython's own test shell (history in a temp file, profile in a temp IPYTHONDIR)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        globalipapp.start_ipython()  # type: ignore[no-untyped-call]
    shell = InteractiveShell.instance()
    # A terminal shows text only; a Jupyter kernel asks for HTML too, as here.
    formatter: Any = shell.display_formatter
    formatter.formatters["text/html"].enabled = True
    return shell


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 that records every request."""
    server = Receiver()
    yield server
    server.close()


def pytest_report_header() -> str:
    return f"knot tests: python {sys.version.split()[0]}, cwd {os.getcwd()}"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream for the session; tests keep apart by stream prefix."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_orphan_nodes() -> Iterator[None]:
    """A cluster test that fails midway leaves no `knot serve` node running."""
    yield
    while STARTED:
        STARTED.pop().kill()
