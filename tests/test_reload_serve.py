"""Hot reload end to end: a real `knot serve` subprocess, files saved the way editors save them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .conftest import write_config
from .helpers import KnotServer, run_knot, wait_until
from .receiver import Receiver
from .reloading import atomic_save, vim_save

SETTINGS = """
[delivery]
attempts = 1
backoff = 0.001

[scripts]
workers = 1
"""


def script(version: str, extra: str = "") -> str:
    return (
        "# events: custom.app.*\n"
        "# description: says which version handled the event\n"
        "import knot.event\n"
        f"{extra}"
        f"print('hello {version} got', knot.event.get_int('i'))\n"
    )


def post(http: httpx.Client, i: int) -> None:
    response = http.post("/event", json={"type": "app.x", "payload": {"i": i}})
    assert response.status_code == 202, response.text


def test_knot_serve_reloads_scripts_and_settings(
    project: Path, server_factory: type[KnotServer]
) -> None:
    write_config(project, SETTINGS)
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    hello = sinks / "hello.py"
    hello.write_text(script("v1"), encoding="utf-8")
    server = server_factory(project)
    server.wait_for_line(r"loaded sink hello \(scripts/sinks/hello\.py\)")
    with server.client() as http:
        post(http, 1)
        server.wait_for_line("hello v1 got 1")

        atomic_save(hello, script("v2"))
        server.wait_for_line(r"reloaded sink hello \(scripts/sinks/hello\.py\)")
        post(http, 2)
        server.wait_for_line("hello v2 got 2")

        vim_save(hello, script("v2", extra="import socket\n"))
        line = server.wait_for_line("kept the last good version of sink hello")
        assert line.endswith(
            "(scripts/sinks/hello.py): scripts/sinks/hello.py:4:8: import of 'socket' is not "
            "allowed"
        )
        status = http.get("/api/sinks/hello").json()
        assert status["problem"] == "scripts/sinks/hello.py:4:8: import of 'socket' is not allowed"
        audit = http.get("/api/audit").json()["audit"]
        assert any(
            e["title"] == "Event Sink Script Rejected" and "hello.py:4:8" in e["message"]
            for e in audit
        )
        post(http, 3)
        server.wait_for_line("hello v2 got 3")  # the last good version still runs

        everything = '[[sinks]]\nname = "everything"\ntype = "recording"\nevents = "*"\n'
        write_config(project, SETTINGS + everything)
        server.wait_for_line(r"reloaded knot\.toml \(sinks\)")
        assert http.get("/api/sinks/everything").json()["origin"] == "config"

        write_config(project, SETTINGS.replace("workers = 1", "workers = -1"))
        server.wait_for_line(
            r"kept the last good settings of knot\.toml: knot\.toml:7: scripts\.workers"
        )
        assert http.get("/api/sinks/everything").status_code == 200

        hello.unlink()
        server.wait_for_line(r"removed sink hello \(scripts/sinks/hello\.py was deleted\)")
        assert http.get("/api/sinks/hello").status_code == 404


def test_removing_a_webhook_sink_mid_delivery_audits_only_what_it_did_not_get(
    project: Path, server_factory: type[KnotServer], receiver: Receiver
) -> None:
    # A slow receiver (0.3 s per answer) and 10 events; the sink is removed from knot.toml
    # after a second. The event being delivered then used to be cancelled mid-request and
    # audited as "will not be delivered" although the receiver had it: 11 for 10 events.
    receiver.delay = 0.3
    hook = (
        f'[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.*"\n'
        f'url = "{receiver.url()}"\n'
    )
    write_config(project, SETTINGS + hook)
    server = server_factory(project)
    with server.client() as http:
        for i in range(10):
            post(http, i)
        time.sleep(1.0)
        write_config(project, SETTINGS)
        server.wait_for_line(r"reloaded knot\.toml \(sinks\)", timeout=15)
        audit = http.get("/api/audit").json()["audit"]
    got = {r.headers["x-knot-event-id"] for r in receiver.requests}
    removed = {e["event_id"] for e in audit if e["kind"] == "sink_removed"}
    assert 0 < len(got) < 10
    assert not got & removed, "an event the receiver got was audited as not delivered"
    assert len(got) + len(removed) == 10


def test_a_sink_broken_since_start_up_counts_the_events_waiting_for_it(
    project: Path, server_factory: type[KnotServer]
) -> None:
    # Its script broke while the runtime was down: the listing said PENDING 0 (and no
    # events) although everything after its cursor waits for the fixed script.
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    hello = sinks / "hello.py"
    hello.write_text(script("v1"), encoding="utf-8")
    server = server_factory(project)
    with server.client() as http:
        post(http, 1)
        server.wait_for_line("hello v1 got 1")
    assert server.terminate() == 0
    hello.write_text(script("v2", extra="print(\n"), encoding="utf-8")  # a syntax error
    server = server_factory(project)
    server.wait_for_line("could not load sink hello")
    with server.client() as http:
        post(http, 2)
        post(http, 3)
        http.post("/event", json={"type": "other.x", "payload": {}})
        status = http.get("/api/sinks/hello").json()
        assert (status["events"], status["pending"]) == ("custom.app.*", 2)
        row = run_knot("sinks", port=server.port).stdout.splitlines()[1].split()
        assert row[:5] == ["hello", "script", "custom.app.*", "2", "0"]  # PENDING, DELIVERED

        # Without a good `# events:` header nobody can tell which events wait: "?".
        atomic_save(hello, "print('no header')\n")
        wait_until(lambda: "missing '# events:'" in http.get("/api/sinks/hello").json()["problem"])
        assert http.get("/api/sinks/hello").json()["pending"] is None
        assert run_knot("sinks", port=server.port).stdout.splitlines()[1].split()[2] == "?"

        atomic_save(hello, script("v3"))  # fixed: the backlog goes to the new code
        server.wait_for_line("hello v3 got 3")
        assert server.output().count("hello v3 got 2") == 1
        assert http.get("/api/sinks/hello").json()["pending"] == 0
