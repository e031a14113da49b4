"""Which runtime the magics reach: a knot serve that needs a token, and a project whose store
a knot serve already holds (real servers, a real in-process IPython shell)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

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
