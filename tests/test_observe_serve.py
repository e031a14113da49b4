"""Seeing inside a real `knot serve`: causation across a script sink, a method and a webhook,
`knot trace`, the deliveries route, `/metrics` and its auth. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from .conftest import write_config
from .helpers import run_knot, start_server, wait_until
from .receiver import Receiver

CHAIN_SINK = """\
# events: custom.order.placed
import knot.event

print("placing", knot.event.get_string("item"))
knot.event.emit("order.billed", {"item": knot.event.get_string("item")})
"""

METHOD = """\
import knot.event
import knot.methods

@knot.methods.method(events=["custom.order.billed"])
def ship(params):
    print("shipping")
    knot.event.emit("order.shipped", {})
    return {}
"""


def _project(tmp_path: Path, receiver: Receiver) -> Path:
    project = tmp_path / "shop"
    (project / "scripts" / "sinks").mkdir(parents=True)
    (project / "scripts" / "methods").mkdir(parents=True)
    (project / "scripts" / "sinks" / "place.py").write_text(CHAIN_SINK)
    (project / "scripts" / "methods" / "orders.py").write_text(METHOD)
    write_config(
        project,
        "[delivery]\nattempts = 2\nbackoff = [0.05]\n\n"
        f'[[sinks]]\nname = "notify"\ntype = "webhook"\nevents = "custom.order.shipped"\n'
        f'url = "{receiver.url("/shipped")}"\n',
    )
    return project


def test_a_chain_is_traced_from_any_of_its_events(tmp_path: Path, receiver: Receiver) -> None:
    receiver.plan("/shipped", [503])  # the webhook's first attempt fails, the retry succeeds
    server = start_server(_project(tmp_path, receiver))
    try:
        with server.client() as http:
            wait_until(lambda: http.get("/api/methods").json()["methods"], timeout=20)
            incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            answer = http.post(
                "/event",
                json={"type": "order.placed", "payload": {"item": "tea"}},
                headers={"traceparent": incoming},
            )
            root = answer.json()["id"]
            hooks = receiver.wait_for(2, "/shipped", timeout=20)
            shipped = hooks[-1]
            # Causation and the trace context ride the webhook: root and parent are set by the
            # runtime, and with tracing off the caller's traceparent is passed on unchanged.
            assert shipped.headers["x-knot-root-id"] == root
            parent = shipped.headers["x-knot-parent-id"]
            assert parent != root
            assert shipped.headers["traceparent"] == incoming
            wait_until(
                lambda: (
                    http.get(f"/api/events/{shipped.headers['x-knot-event-id']}/deliveries").json()[
                        "deliveries"
                    ][0]["status"]
                    == "delivered"
                ),
                timeout=10,
            )
            trace = http.get(f"/api/events/{shipped.headers['x-knot-event-id']}/trace").json()
            deliveries = http.get(
                f"/api/events/{shipped.headers['x-knot-event-id']}/deliveries"
            ).json()
            events = http.get("/api/events", params={"n": 10}).json()["events"]
            metrics = http.get("/metrics")
    finally:
        server.terminate()
    assert trace["root"] == root
    [top] = trace["tree"]
    assert (top["id"], top["parent"], top["root"]) == (root, None, root)
    assert [d["sink"] for d in top["deliveries"]] == ["place"]
    assert top["deliveries"][0]["attempts"][0]["output"] == ["placing tea"]
    [billed] = top["children"]
    assert (billed["type"], billed["parent"], billed["root"]) == ("custom.order.billed", root, root)
    assert [d["sink"] for d in billed["deliveries"]] == ["orders.ship"]
    [shipped_node] = billed["children"]
    assert shipped_node["parent"] == billed["id"] == parent
    [notify] = shipped_node["deliveries"]
    assert notify["status"] == "delivered"
    assert [(a["attempt"], a["outcome"], a["status"]) for a in notify["attempts"]] == [
        (1, "failed", 503),
        (2, "delivered", 200),
    ]
    assert "answered HTTP 503" in notify["attempts"][0]["error"]
    assert all(a["duration_ms"] >= 0 and a["ts"].endswith("Z") for a in notify["attempts"])
    assert deliveries["deliveries"] == [{"sink": "notify", **{k: notify[k] for k in notify}}]
    # Every event JSON carries its causation.
    by_id = {e["id"]: e for e in events}
    assert by_id[root]["parent"] is None
    assert by_id[root]["root"] == root
    assert by_id[billed["id"]]["parent"] == root
    # And the metrics saw all of it, with bounded labels.
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert _sample(text, "knot_events_journaled_total") == 3
    assert _sample(text, 'knot_sink_deliveries_total{outcome="failed",sink="notify"}') == 1
    assert _sample(text, 'knot_sink_deliveries_total{outcome="delivered",sink="notify"}') == 1
    assert _sample(text, 'knot_method_calls_total{method="orders.ship",outcome="ok"}') == 1
    assert _sample(text, 'knot_delivery_duration_seconds_count{sink="place"}') == 1
    assert _sample(text, 'knot_http_requests_total{route="/event",status="202"}') == 1
    assert _sample(text, 'knot_sink_queue_depth{sink="notify"}') == 0
    assert 'knot_sink_lag_seconds{sink="place"}' in text
    assert 'knot_sink_dropped_total{sink="place"} 0.0' in text
    assert _sample(text, 'knot_script_reloads_total{result="loaded"}') >= 1
    assert root not in text  # never an id in a label


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name} in:\n{text}")


def test_knot_trace_prints_the_tree_and_json(tmp_path: Path, receiver: Receiver) -> None:
    server = start_server(_project(tmp_path, receiver))
    try:
        with server.client() as http:
            wait_until(lambda: http.get("/api/methods").json()["methods"], timeout=20)
        raised = run_knot("event", "order.placed", '{"item": "cake"}', port=server.port)
        root = raised.stdout.strip()
        receiver.wait_for(1, "/shipped", timeout=20)
        events = run_knot("events", "--json", port=server.port)
        shipped = [json.loads(line) for line in events.stdout.splitlines()][-1]
        assert shipped["type"] == "custom.order.shipped"
        assert shipped["root"] == root
        assert shipped["parent"]
        wait_until(lambda: "delivered" in run_knot("trace", shipped["id"], port=server.port).stdout)
        shown = run_knot("trace", shipped["id"], port=server.port)
        as_json = run_knot("trace", root, "--json", port=server.port)
        only = run_knot("trace", root, "--deliveries", port=server.port)
        missing = run_knot("trace", "01a00000-0000-7000-8000-000000000000", port=server.port)
    finally:
        server.terminate()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"custom.order.placed {root} ")
    assert any("→ place: delivered (1 attempt" in line for line in lines)
    assert any("| placing cake" in line for line in lines)
    assert any("custom.order.billed" in line for line in lines)
    assert any("→ orders.ship: delivered" in line for line in lines)
    assert any(line.startswith("   └─ custom.order.shipped") and "◀" in line for line in lines)
    assert json.loads(as_json.stdout)["tree"][0]["id"] == root
    assert "→ place: delivered" in only.stdout
    assert "orders.ship" not in only.stdout
    assert missing.returncode == 1
    assert missing.stderr.startswith("knot: There is no event with id")


def test_metrics_take_the_api_auth_or_the_scrape_token(tmp_path: Path) -> None:
    project = tmp_path / "locked"
    project.mkdir()
    write_config(
        project,
        '[metrics]\ntoken = "scrape-me-0123456789"\n\n[users.ops]\ntoken = "ops-token-0123456789"\n'
        "manage_global_sinks = true\n",
    )
    server = start_server(project)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            anonymous = http.get("/metrics")
            scraper = http.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
            user = http.get("/metrics", headers={"Authorization": "Bearer ops-token-0123456789"})
            wrong = http.get("/metrics", headers={"Authorization": "Bearer nope"})
            # The scrape token opens /metrics and nothing else.
            elsewhere = http.get(
                "/api/events", headers={"Authorization": "Bearer scrape-me-0123456789"}
            )
    finally:
        server.terminate()
    assert anonymous.status_code == 401
    assert scraper.status_code == 200
    assert "knot_events_journaled_total" in scraper.text
    assert user.status_code == 200
    assert wrong.status_code == 401
    assert elsewhere.status_code == 401


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    project = tmp_path / "quiet"
    project.mkdir()
    write_config(project, "[metrics]\nenabled = false\n")
    server = start_server(project)
    try:
        with server.client() as http:
            answer = http.get("/metrics")
    finally:
        server.terminate()
    assert answer.status_code == 404
    assert "enabled = false" in answer.json()["error"]


def test_attempt_history_survives_a_restart_and_a_kill(tmp_path: Path) -> None:
    project = tmp_path / "durable"
    project.mkdir()
    write_config(
        project,
        '[delivery]\nattempts = 3\nbackoff = [0.01]\n\n[[sinks]]\nname = "flaky"\n'
        'type = "recording"\nevents = "*"\nfail_attempts = 1\n',
    )
    server = start_server(project)
    with server.client() as http:
        ids = [
            http.post("/event", json={"type": "t", "payload": {"n": n}}).json()["id"]
            for n in range(50)
        ]
        wait_until(
            lambda: (
                http.get(f"/api/events/{ids[-1]}/deliveries").json()["deliveries"][0]["status"]
                == "delivered"
            )
        )
    time.sleep(0.6)  # a housekeeping round hands the attempts to the journal, then: kill
    server.kill()
    again = start_server(project)
    try:
        with again.client() as http:
            found = [http.get(f"/api/events/{i}/deliveries").json()["deliveries"] for i in ids]
    finally:
        again.terminate()
    for deliveries in found:
        [flaky] = deliveries
        assert [a["outcome"] for a in flaky["attempts"]] == ["failed", "delivered"]
        assert re.match(r"\d{4}-\d\d-\d\dT", flaky["attempts"][0]["ts"])
