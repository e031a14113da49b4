"""The real `knot serve` the HTTP and CLI fuzz suites aim at, and how they read its state.

One server per test module (started by the `fuzz_target` fixture in conftest.py): a recording
sink, a script sink that answers Sky events with a directive, a method script (`fuzzm`: echo,
count, boom), an open channel and a channel that lets only `custom.fuzz.*` in, and a small body
limit so 413s are cheap to provoke.

It has users (from knot.toml, so no request can remove them): `admin` may do everything and
is who the client is by default; `bob` manages only his own sinks. Once users exist every
request needs a token, so the fuzzer also sends bob's token, none, or a wrong one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx

from knot import AuditKind

from .helpers import KnotServer, wait_until

__all__ = [
    "ADMIN_TOKEN",
    "BARRIER",
    "MAX_BODY",
    "TOKENS",
    "FuzzTarget",
    "start_fuzz_target",
    "stop_fuzz_target",
]

MAX_BODY = 4096
ADMIN_TOKEN = "knot_fuzz_admin_0123456789abcdef"
BOB_TOKEN = "knot_fuzz_bob_0123456789abcdef"
TOKENS = {"admin": ADMIN_TOKEN, "bob": BOB_TOKEN, "none": "", "wrong": "knot_not_a_token_at_all"}
CONFIG = f"""
[server]
max_body_bytes = {MAX_BODY}
[delivery]
attempts = 1
backoff = [0.01]
queue_size = 100000
sync_timeout = 2.0
[scripts]
timeout = 2.0
memory_mb = 64
workers = 1
[methods]
timeout = 2.0
memory_mb = 64
threads = 2
[users.admin]
token = "{ADMIN_TOKEN}"
manage_global_sinks = true
manage_users = true
[users.bob]
token = "{BOB_TOKEN}"
[[sinks]]
name = "rec"
type = "recording"
events = "*"
limit = 100
"""
SCRIPT = """# events: custom.fuzz.*
import knot.event
knot.event.directive("seen", {"type": knot.event.type(), "n": len(knot.event.data())})
"""
METHODS = """import knot.methods


@knot.methods.method
def echo(params):
    return params


@knot.methods.method(params=["space"])
def count(params):
    return len(str(params["space"]))


@knot.methods.method
def boom(params):
    raise ValueError("boom")
"""
BARRIER = "knot-fuzz-barrier.sent"  # not a type the strategies make
# Audit entries about deliveries: events accepted earlier (to a sink the fuzzer made that
# posts to a closed port, say) fail later, whatever the request being checked does.
OUTCOMES = tuple(
    kind.name
    for kind in (
        AuditKind.DROPPED,
        AuditKind.DELIVERY_FAILED,
        AuditKind.SCRIPT_FAILED,
        AuditKind.DEPTH_EXCEEDED,
        AuditKind.METHOD_FAILED,
        AuditKind.WORKER_RESTARTED,
    )
)
_PROBLEMS = ("Traceback", "unhandled error", "Exception in ASGI")


@dataclass
class FuzzTarget:
    server: KnotServer
    client: httpx.Client
    store: Path
    eci: str
    strict_eci: str  # a channel that lets nothing but custom.fuzz.* in
    event_id: str

    def state(self) -> dict[str, int]:
        """Row counts of everything a request could change, once earlier writes committed.

        A write can be acknowledged before the audit entries it causes are committed, so a
        barrier event goes first: the journal commits in order, so once the barrier is
        acknowledged everything written before it is in the file.
        """
        marks = ",".join("?" * len(OUTCOMES))
        barrier = self.client.post("/event", json={"type": BARRIER})
        assert barrier.status_code == 202, barrier.text
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
            counts = {
                "events": db.execute(
                    "SELECT count(*) FROM events WHERE type != ?", (f"custom.{BARRIER}",)
                ).fetchone()[0],
                "audit": db.execute(
                    f"SELECT count(*) FROM audit WHERE kind NOT IN ({marks})", OUTCOMES
                ).fetchone()[0],
                "security_audit": db.execute(
                    "SELECT count(*) FROM audit WHERE kind = 'SECURITY'"
                ).fetchone()[0],
            }
            for scope, count in db.execute("SELECT scope, count(*) FROM kv GROUP BY scope"):
                counts[f"kv:{scope}"] = count
        return counts

    def restore(self) -> None:
        """Put back the channels a fuzzed DELETE removed (same ecis), for the next test."""
        for eci, extra in ((self.eci, {}), (self.strict_eci, {"allow": ["custom.fuzz.*"]})):
            if self.client.get(f"/api/channels/{eci}").status_code == 404:
                created = self.client.post("/api/channels", json={"eci": eci, **extra})
                assert created.status_code == 201, created.text

    def log_mark(self) -> int:
        return len(self.server.lines)

    def log_problems(self, since: int = 0) -> list[str]:
        """What knot serve logged since `since` (a log_mark), if it holds a traceback."""
        lines = self.server.lines[since:]
        if any(p in line for line in lines for p in _PROBLEMS):
            return lines
        return []


def start_fuzz_target(project: Path) -> FuzzTarget:
    (project / "knot.toml").write_text(CONFIG)
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "sinks" / "echo.py").write_text(SCRIPT)
    (project / "scripts" / "methods").mkdir(parents=True)
    (project / "scripts" / "methods" / "fuzzm.py").write_text(METHODS)
    server = KnotServer(project, quiet=True)
    client = server.client()
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    try:
        eci = client.post("/api/channels", json={"name": "open"}).json()["eci"]
        strict = client.post(
            "/api/channels", json={"name": "strict", "allow": ["custom.fuzz.*"]}
        ).json()["eci"]
        first = client.post("/event", json={"type": "fuzz.seed", "payload": {"a": 1}})
        event_id = first.json()["id"]
        call = {"jsonrpc": "2.0", "method": "fuzzm.echo", "params": {}, "id": 1}
        wait_until(lambda: "result" in client.post("/json-rpc", json=call).json(), timeout=30)
    except BaseException:
        client.close()
        server.kill()
        raise
    return FuzzTarget(server, client, project / ".knot" / "knot.db", eci, strict, event_id)


def stop_fuzz_target(target: FuzzTarget) -> None:
    target.client.close()
    target.server.terminate()  # SIGTERM: spaces the fuzzer started are stopped with it
