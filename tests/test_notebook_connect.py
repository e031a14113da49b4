"""Which runtime the magics reach: a knot serve that needs a token, and a project whose store
a knot serve already holds (real servers, a real in-process IPython shell)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from knot import SyncRuntime

from .conftest import write_config
from .helpers import KnotServer
from .notebookhelpers import knot_magic, run_cell

TOKEN = "nb-token-0123456789abcdef"
USERS = f'[users.ada]\ntoken_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'


@pytest.fixture
def ip(
    shell: InteractiveShell, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with `%load_ext knot`, its kernel folder an empty project."""
    monkeypatch.chdir(project)
    shell.run_line_magic("load_ext", "knot")
    yield shell
    shell.run_line_magic("unload_ext", "knot")


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[KnotServer]:
    """A knot serve with one user: every API call but /healthz needs a token."""
    served = tmp_path / "guarded"
    served.mkdir()
    write_config(served, USERS)
    server = KnotServer(served, quiet=True)
    yield server
    server.kill()


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("knot: ")
    return err[len("knot: ") : -1]


def test_connect_without_a_token_says_the_server_needs_one_and_how_to_pass_it(
    ip: InteractiveShell, guarded: KnotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = guarded.url
    assert run_cell(ip, f"%knot connect {url}").success
    assert _one_error(capsys) == (
        f"The knot serve at {url} has users and needs a token: connect with "
        f"`%knot connect {url} --token TOKEN` (or run `%env KNOT_TOKEN=TOKEN` before "
        f"`%knot connect {url}`)."
    )
    # Not connected: the kernel still has no runtime, rather than one that refuses everything.
    assert knot_magic(ip, "status").text.startswith("no runtime started yet")

    assert run_cell(ip, f"%knot connect {url} --token not-{TOKEN}").success
    assert _one_error(capsys).startswith(
        f"The knot serve at {url} did not accept the token: connect with "
        f"`%knot connect {url} --token TOKEN`"
    )
    assert knot_magic(ip, "status").text.startswith("no runtime started yet")


def test_connect_with_a_token_from_the_line_or_the_environment(
    ip: InteractiveShell,
    guarded: KnotServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = guarded.url
    status = knot_magic(ip, f"connect {url} --token {TOKEN}")
    assert status.text == f"connected to the knot serve at {url}"
    raised = knot_magic(ip, "event tour.with_token")
    with guarded.client() as http:
        rows = http.get("/api/events", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [(e["id"], e["owner"]) for e in rows["events"]] == [(raised.id, "ada")]

    monkeypatch.setenv("KNOT_TOKEN", TOKEN)  # what `%env KNOT_TOKEN=...` does in the kernel
    knot_magic(ip, f"connect {url}")
    assert [r["id"] for r in knot_magic(ip, "events").rows] == [raised.id]
    assert capsys.readouterr().err == ""


def test_a_project_a_knot_serve_runs_points_to_connect(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    server = KnotServer(served, quiet=True)
    try:
        assert run_cell(ip, f"%knot project {served}").success
        store = served / ".knot" / "knot.db"
        hint = (
            f"The knot serve at {server.url} (pid {server.proc.pid}) already runs on this "
            f"project (store {store}); use it with `%knot connect {server.url}` instead of a "
            "second runtime."
        )
        assert _one_error(capsys) == hint
        assert "--project" not in hint
        assert knot_magic(ip, "status").text.startswith("no runtime started yet")
        # The embedded runtime started at first use in the kernel's folder says the same.
        ip.run_line_magic("cd", str(served))
        assert run_cell(ip, "%knot event tour.hello").success
        assert _one_error(capsys) == hint
        # Following the hint works.
        assert knot_magic(ip, f"connect {server.url}").text.endswith(server.url)
        raised = knot_magic(ip, "event tour.hello")
        assert [r["id"] for r in knot_magic(ip, "events").rows] == [raised.id]
    finally:
        server.kill()


def test_a_project_another_embedded_runtime_holds_says_so(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with SyncRuntime(other):  # as another kernel's embedded runtime would: no HTTP API
        assert run_cell(ip, f"%knot project {other}").success
    assert _one_error(capsys) == (
        f"The store {other / '.knot' / 'knot.db'} is in use by another knot runtime (pid "
        f"{os.getpid()}) that answers no HTTP here (another kernel's embedded runtime?); stop "
        "it, or use `%knot connect URL` if it is a knot serve, or `%knot project DIR` for "
        "another folder."
    )


def test_a_refused_project_keeps_the_runtime_in_use(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `%knot project` on the folder the connected server runs is refused; it used to let go
    # of the connection first, so the next `%knot event` went into a new embedded store.
    served = tmp_path / "served"
    served.mkdir()
    server = KnotServer(served, quiet=True)
    try:
        knot_magic(ip, f"connect {server.url}")
        assert run_cell(ip, f"%knot project {served}").success
        assert "already runs on this project" in _one_error(capsys)
        assert knot_magic(ip, "status").text == f"connected to the knot serve at {server.url}"
        raised = knot_magic(ip, "event tour.hello")
        with server.client() as http:
            assert [e["id"] for e in http.get("/api/events").json()["events"]] == [raised.id]
        # An embedded runtime is kept the same way when the next project cannot start.
        own = tmp_path / "own"
        own.mkdir()
        knot_magic(ip, f"project {own}")
        assert run_cell(ip, f"%knot project {served}").success
        assert "already runs on this project" in _one_error(capsys)
        assert knot_magic(ip, "status").text.startswith(f"embedded runtime on {own}")
        # Starting the project in use again restarts it (its store is its own).
        assert knot_magic(ip, f"project {own}").text.startswith(f"embedded runtime on {own}")
    finally:
        server.kill()
