"""Re-delivery: `Runtime.redeliver`, `POST /api/events/{id}/redeliver` and `knot redeliver`.

A journaled event handed to a sink again goes the normal way (in order, attempts and retries,
audit, attempt history), whatever happened to it before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from knot import Config, Runtime
from knot._audit import AuditKind
from knot._config import DeliverySettings
from knot._exceptions import InvalidInput, NotFound
from knot.engine.outcomes import DeliveryStatus
from knot.server.app import create_app
from knot.sinks.recording import RecordingSink

from .conftest import recording
from .helpers import KnotServer, run_knot, wait_until
from .receiver import Receiver

pytestmark = pytest.mark.anyio


def _config(**delivery: Any) -> Config:
    return Config(delivery=DeliverySettings(**{"attempts": 3, "backoff": (0.001,), **delivery}))


async def test_a_given_up_event_redelivered_is_delivered_and_its_history_says_so(
    project: Path,
) -> None:
    async with Runtime(project, config=_config()) as rt:
        sink = recording("flaky", "custom.*", fail_attempts=3)  # the 4th try of an event works
        await rt.add_sink(sink)
        event_id = await rt.emit("job", {"n": 1})
        await rt.wait_idle()
        before = await rt.deliveries(event_id)
        assert [d["status"] for d in before.sinks] == ["failed"]
        assert sink.received == 0

        outcome = await rt.redeliver(event_id, "flaky", by="alice")

        assert outcome.status is DeliveryStatus.DELIVERED
        assert [e.id for e in sink.events] == [event_id]
        after = (await rt.deliveries(event_id)).sinks[0]
        assert after["status"] == "delivered"
        assert [a["outcome"] for a in after["attempts"]] == ["failed"] * 3 + ["delivered"]
        audit = await rt.audit_entries(limit=10)
        asked = [a for a in audit if a.kind is AuditKind.REDELIVERED]
        assert len(asked) == 1
        assert "by alice" in asked[0].message
        assert event_id in asked[0].message


async def test_a_redelivery_that_fails_again_is_given_up_and_audited_again(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(recording("broken", "custom.*", fail_attempts=100))
        event_id = await rt.emit("job", {})
        await rt.wait_idle()
        outcome = await rt.redeliver(event_id, "broken")
        assert outcome.status is DeliveryStatus.FAILED
        assert outcome.attempts == 3
        found = (await rt.deliveries(event_id)).sinks[0]
        assert found["status"] == "failed"
        assert len(found["attempts"]) == 6
        gave_up = [
            a for a in await rt.audit_entries(limit=20) if a.kind is AuditKind.DELIVERY_FAILED
        ]
        assert len(gave_up) == 2


async def test_any_event_can_be_replayed_to_any_sink_even_one_it_never_matched(
    project: Path,
) -> None:
    async with Runtime(project, config=_config()) as rt:
        taken = recording("taken", "custom.a")
        other = recording("other", "custom.zzz")
        await rt.add_sink(taken)
        await rt.add_sink(other)
        event_id = await rt.emit("a", {"x": 1})
        await rt.wait_idle()
        first = await rt.redeliver(event_id, "taken")
        second = await rt.redeliver(event_id, "other")
        assert (first.status, second.status) == (DeliveryStatus.DELIVERED,) * 2
        assert [e.id for e in taken.events] == [event_id, event_id]  # at-least-once: twice
        assert [e.data for e in other.events] == [{"x": 1}]


async def test_redelivery_waits_its_turn_behind_what_the_sink_has_queued(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        sink = recording("slow", "custom.*", delay=0.01)
        await rt.add_sink(sink)
        old = await rt.emit("old", {})
        await rt.wait_idle()
        queued = [await rt.emit("new", {"n": n}) for n in range(5)]
        await rt.redeliver(old, "slow")
        assert [e.id for e in sink.events] == [old, *queued, old]


async def test_unknown_events_sinks_and_other_users_events_are_refused(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        await rt.add_sink(recording("mine", "custom.*"))
        bobs = {"name": "bobs", "type": "webhook", "events": "*", "url": "http://127.0.0.1:9/"}
        await rt.add_sink({**bobs, "owner": "bob"})
        event_id = await rt.emit("a", {}, owner="carol")
        with pytest.raises(NotFound, match="no event"):
            await rt.redeliver("0192f6a4-0000-7000-8000-000000000000", "mine")
        with pytest.raises(NotFound, match="no sink"):
            await rt.redeliver(event_id, "nobody")
        with pytest.raises(InvalidInput, match="belongs to 'bob'"):
            await rt.redeliver(event_id, "bobs")


async def test_http_redeliver_answers_the_outcome_and_checks_the_body(project: Path) -> None:
    async with Runtime(project, config=_config()) as rt:
        sink = recording("flaky", "custom.*", fail_attempts=3)
        await rt.add_sink(sink)
        event_id = await rt.emit("job", {})
        await rt.wait_idle()
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            bad = await http.post(f"/api/events/{event_id}/redeliver", json={"sink": 3})
            none = await http.post(f"/api/events/{event_id}/redeliver", json={"sink": "nope"})
            ok = await http.post(f"/api/events/{event_id}/redeliver", json={"sink": "flaky"})
        assert bad.status_code == 400
        assert "sink" in bad.json()["error"]
        assert none.status_code == 404
        assert ok.status_code == 200
        assert ok.json()["status"] == "delivered"
        assert isinstance(sink, RecordingSink)
        assert len(sink.events) == 1


def test_cli_redeliver_makes_a_loopback_receiver_get_the_given_up_event(
    project: Path, receiver: Receiver, server_factory: type[KnotServer]
) -> None:
    (project / "knot.toml").write_text(
        "[delivery]\nattempts = 2\nbackoff = [0.01]\n"
        f'[[sinks]]\nname = "hook"\ntype = "webhook"\nevents = "custom.*"\n'
        f'url = "{receiver.url("/hook")}"\n'
    )
    receiver.plan("/hook", [500, 500])
    server = server_factory(project)
    event_id = server.client().post("/event", json={"type": "job", "payload": {}}).json()["id"]
    receiver.wait_for(2)
    env = {"KNOT_URL": server.url}
    path = f"/api/events/{event_id}/deliveries"
    wait_until(lambda: server.client().get(path).json()["deliveries"][0]["status"] == "failed")
    result = run_knot("redeliver", event_id, "--sink", "hook", env=env)
    assert result.returncode == 0, result.stderr
    assert "hook ✓" in result.stdout
    assert "delivered" in result.stdout
    assert len(receiver.requests) == 3
    assert receiver.requests[-1].headers["x-knot-event-id"] == event_id
    missing = run_knot("redeliver", event_id, "--sink", "nope", env=env)
    assert missing.returncode != 0
    assert "no sink named 'nope'" in missing.stderr


async def test_a_sink_whose_script_is_broken_says_so(project: Path) -> None:
    sinks = project / "scripts" / "sinks"
    sinks.mkdir(parents=True)
    (sinks / "broken.py").write_text("# events: custom.*\nopen('x')\n")
    async with Runtime(project, config=_config()) as rt:
        event_id = await rt.emit("a", {})
        with pytest.raises(InvalidInput, match=r"The sink broken does not run.*broken\.py:2:"):
            await rt.redeliver(event_id, "broken")
