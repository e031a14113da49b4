"""Dry runs stay dry: requests checked but not sent (unless live), knot.kv writes kept in a
scratch copy of the script's namespace, the project's store never written."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from knot import Runtime
from knot._config import load_config
from knot.scripts import dry_run

from .conftest import write_config
from .helpers import run_knot
from .origin import Origin

COUNTER = """# events: custom.count
import knot.kv, knot.event, requests
print("count", knot.kv.incr("n"), "seen before:", knot.kv.exists("marker"))
knot.kv.set("marker", knot.event.id())
knot.kv.delete("old")
r = requests.post(knot.event.get_string("url"), json={"n": knot.kv.get("n")})
print("answer", r.status_code, r.json(), r.headers.get("x-knot-dry-run"))
"""


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dry_run_reads_the_scripts_keys_and_writes_none_of_them(
    project: Path, origin: Origin
) -> None:
    write_config(project, f'[scripts]\nhttp_allow = ["{origin.netloc}"]\n')
    script = project / "scripts" / "sinks" / "counter.py"
    script.parent.mkdir(parents=True)
    script.write_text(COUNTER)

    async def seed() -> None:  # the runtime's own keys: n = 41, old = 1
        async with Runtime(project) as rt:
            scope = "script:sinks/counter"
            await rt.journal.call(lambda s: s.kv_incr(scope, "n", 41, now=0, max_keys=10))
            await rt.journal.call(
                lambda s: s.kv_set(scope, "old", 1, expires=None, now=0, max_keys=10)
            )

    asyncio.run(seed())
    store = project / ".knot" / "knot.db"
    before = _digest(store)
    config = load_config(project).raise_for_errors()
    url = {"url": origin.url("/echo")}
    result = dry_run(script, "custom.count", url, config=config, project=project)
    assert result.ok, result.error
    assert result.output[0] == "count 42 seen before: False"
    assert result.output[1] == "answer 200 {} not sent"
    assert result.kv == {"marker": result.event["id"], "n": 42, "old": None}
    assert [(r.method, r.url, r.sent) for r in result.requests] == [
        ("POST", origin.url("/echo"), False)
    ]
    assert origin.requests == []
    again = dry_run(script, "custom.count", url, config=config, project=project, live=True)
    assert again.output[0] == "count 42 seen before: False"  # the first left nothing behind
    assert again.output[1].startswith("answer 200 {'method': 'POST'")
    assert len(origin.at("/echo")) == 1
    assert _digest(store) == before


def test_a_dry_run_shows_a_refused_request_as_the_runtime_would_refuse_it(
    project: Path, origin: Origin
) -> None:
    script = project / "denied.py"
    script.write_text(f"# events: *\nimport requests\nrequests.get({origin.url()!r})\n")
    result = run_knot("run", str(script), "--event", "x", "--project", str(project))
    assert result.returncode == 1
    assert (
        f"GET {origin.url()} (refused: the host {origin.netloc} is not in scripts.http_allow"
        in (result.stdout)
    )
    assert "raised RequestDenied" in result.stderr
    assert not (project / ".knot").exists()  # no store was made for it
    assert origin.requests == []
