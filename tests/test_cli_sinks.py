"""`knot sinks add|list|test|secret|remove` against a real `knot serve` and receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import KnotServer, run_knot
from .receiver import Receiver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    project = tmp_path_factory.mktemp("clisinks")
    (project / "knot.toml").write_text("[delivery]\nbackoff = 0.01\nattempts = 2\n")
    srv = KnotServer(project)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def knot(server: KnotServer, *args: str) -> tuple[int, str, str]:
    result = run_knot(*args, env={"KNOT_API_PORT": str(server.port)})
    return result.returncode, result.stdout, result.stderr


def test_add_list_test_secret_remove(server: KnotServer, hooks: Receiver, tmp_path: Path) -> None:
    template = tmp_path / "body.tmpl"
    template.write_text('{"who": "${{ .actor.username }}", "v": ${{ json .event.data.v }}}')
    code, out, err = knot(
        server,
        "sinks",
        "add",
        "deploy_hook",
        "--events",
        "custom.cli.*",
        "--url",
        hooks.url("/deploy"),
        "--header",
        "X-Team=infra",
        "--template-file",
        str(template),
        "--description",
        "tells the deploy bot",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Added sink deploy_hook (webhook, global) for events: custom.cli.*"
    secret = lines[-1]
    assert secret.startswith("whsec_")

    code, out, _ = knot(server, "sinks")
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "TYPE",
        "EVENTS",
        "OWNER",
        "PENDING",
        "DELIVERED",
        "FAILED",
        "DROPPED",
        "PROBLEM",
    ]
    assert row.split()[:3] == ["deploy_hook", "webhook", "custom.cli.*"]
    code, out, _ = knot(server, "sinks", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["description"] == "tells the deploy bot"
    assert "secret" not in listed  # generated secrets live apart from the definition
    assert secret not in out

    code, out, err = knot(server, "sinks", "test", "deploy_hook", "--data", '{"v": 7}')
    assert code == 0, err
    assert out.startswith("Delivered test event ")
    assert out.rstrip().endswith(
        'to deploy_hook: HTTP 200 OK: {"received": "/deploy", "status": 200}'
    )
    (hit,) = hooks.at("/deploy")
    assert hit.json() == {"who": "local", "v": 7}
    assert hit.headers["x-team"] == "infra"
    expected = "sha256=" + hmac.new(secret.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hit.headers["x-knot-signature"] == expected

    assert knot(server, "sinks", "secret", "deploy_hook")[1].strip() == secret
    code, out, _ = knot(server, "sinks", "remove", "deploy_hook")
    assert code == 0
    assert out.strip() == "Removed sink deploy_hook."
    assert "deploy_hook" not in knot(server, "sinks")[1]


def test_test_reports_the_receivers_refusal(server: KnotServer, hooks: Receiver) -> None:
    hooks.plan("/refuses", [422])
    code, _, err = knot(
        server, "sinks", "add", "picky", "--events", "*", "--url", hooks.url("/refuses")
    )
    assert code == 0, err
    code, out, err = knot(server, "sinks", "test", "picky")
    assert code == 1
    assert out == ""
    assert err.startswith("knot: The test event ")
    assert "was not delivered to picky: The receiver at " in err
    assert 'answered HTTP 422 Unprocessable Entity: {"received": "/refuses", "status": 422}' in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ("sinks", "add", "x", "--events", "*", "--url", "http://h/"),
            "The sink name 'x' is not valid",
        ),
        (
            (
                "sinks",
                "add",
                "tpl",
                "--events",
                "*",
                "--url",
                "http://h/",
                "--template",
                "${{ .nope }}",
            ),
            "line 1, column 5: there is no .nope",
        ),
        (
            ("sinks", "add", "hdr", "--events", "*", "--url", "http://h/", "--header", "novalue"),
            "must look like NAME=VALUE",
        ),
        (("sinks", "remove", "missing_sink"), "There is no sink named 'missing_sink'."),
        (("sinks", "test", "missing_sink"), "There is no sink named 'missing_sink'."),
        (("sinks", "secret", "missing_sink"), "There is no sink named 'missing_sink'."),
    ],
)
def test_errors_are_one_line(server: KnotServer, args: tuple[str, ...], words: str) -> None:
    code, out, err = knot(server, *args)
    assert code == 1
    assert out == ""
    assert words in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("knot: ")


def test_other_sink_types_with_options(server: KnotServer) -> None:
    code, out, err = knot(
        server,
        "sinks",
        "add",
        "rec",
        "--type",
        "recording",
        "--events",
        "custom.cli.rec",
        "--option",
        "limit=5",
        "--inactive",
    )
    assert code == 0, err
    (row,) = [
        json.loads(line)
        for line in knot(server, "sinks", "--json")[1].splitlines()
        if json.loads(line)["name"] == "rec"
    ]
    assert row["limit"] == 5
    assert row["active"] is False
    assert "Signing secret" not in out


@pytest.mark.parametrize("name", ["../users/admin", "..", "\x1f", "a/b"])
def test_a_sink_name_is_one_path_segment(server: KnotServer, name: str) -> None:
    """Found by fuzzing: names went into the URL as given, so `knot sinks remove ../users/x`
    became DELETE /api/users/x (httpx resolves dot segments) and a control character crashed
    the client with a traceback."""
    code, _, err = knot(server, "sinks", "remove", name)
    assert code == 1
    (line,) = err.splitlines()
    # The runtime decodes %2F before routing: "a/b" then matches no route, and is not a sink.
    assert line.startswith(
        ("knot: There is no sink named", "knot: There is no route /api/event-sinks/")
    ), line
