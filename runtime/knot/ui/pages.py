"""The dashboard's main pages: overview, sinks, events and one event (GET only).

Each reads through the same runtime calls and permission checks as the HTTP API: a caller sees
global sinks and their own, and (without Manage Global Event Sinks) only their own events.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import Response

from .._exceptions import Conflict, NotFound
from ..engine.eventquery import OUTCOMES
from ..engine.registry import SinkStatus
from ..server.observe import readable
from .charts import sparkline
from .filters import PAGE_SIZE, parse_filters
from .live import FRAMES_PER_SECOND, ROWS_PER_FRAME
from .web import Ctx, page

__all__ = ["event_page", "events_page", "events_rows", "overview", "sinks_page", "sinks_rows"]

DEEPEST = 10
CHARTS = (
    ("events", "Events"),
    ("delivered", "Deliveries"),
    ("failed", "Failures (given up)"),
    ("dropped", "Drops (queue full)"),
)


def visible_sinks(ctx: Ctx) -> list[SinkStatus]:
    return [s for s in ctx.runtime.sinks() if ctx.caller.may_see_sink(s.spec.owner)]


def sink_row(status: SinkStatus) -> dict[str, Any]:
    """One sink as the sinks table shows it."""
    spec = status.spec
    output = status.extra.get("output")
    last_line = output[-1] if isinstance(output, list) and output else ""
    return {
        "name": spec.name,
        "type": spec.type,
        "events": spec.events_text,
        "owner": spec.owner,
        "active": spec.active and not status.problem,
        "paused": not spec.active,
        "origin": spec.origin.value,
        "changeable": spec.origin.value == "api",
        "pending": status.pending,
        "delivered": status.delivered,
        "failed": status.failed,
        "dropped": status.dropped,
        "last_output": str(last_line),
        "last_error": status.last_error,
        "problem": status.problem,
        "description": spec.description,
    }


@page
async def overview(ctx: Ctx) -> Response:
    """Dashboard: events/s, deliveries, failures and drops over the last hour, and the deepest
    queues."""
    sampler = ctx.ui.sampler
    sampler.sample()  # up to now (`knot serve` also samples every few seconds)
    sinks = visible_sinks(ctx)
    deepest = sorted(sinks, key=lambda s: s.pending or 0, reverse=True)[:DEEPEST]
    charts = []
    if ctx.caller.manage_global_sinks:  # runtime-wide counts: for those who see everything
        for name, label in CHARTS:
            values = sampler.series(name)
            charts.append(
                {"label": label, "svg": sparkline(values, label=label), "total": sum(values)}
            )
    template = "_overview_body.html" if ctx.request.headers.get("hx-request") else "overview.html"
    return ctx.render(
        template,
        charts=charts,
        rate=sampler.rate,
        deepest=[sink_row(s) for s in deepest if s.pending],
        sinks=len(sinks),
        title="Overview",
    )


def _sink_rows(ctx: Ctx) -> tuple[list[dict[str, Any]], dict[str, str], list[str], list[str]]:
    owner, kind = ctx.arg("owner"), ctx.arg("type")
    sinks = visible_sinks(ctx)
    owners = sorted({s.spec.owner for s in sinks if s.spec.owner})
    types = sorted({s.spec.type for s in sinks})
    rows = [
        sink_row(s)
        for s in sinks
        if (not owner or s.spec.owner == ("" if owner == "(global)" else owner))
        and (not kind or s.spec.type == kind)
    ]
    return rows, {"owner": owner, "type": kind}, owners, types


def _edit(ctx: Ctx) -> dict[str, Any]:
    """The sink form's starting values: empty, or (`?edit=NAME`) a webhook sink's own."""
    name = ctx.arg("edit")
    if not name:
        return {"form": {}, "original": ""}
    spec = ctx.runtime.registry.spec(name)
    if not ctx.caller.may_see_sink(spec.owner):
        raise NotFound(f"There is no sink named {name!r}.", what=name)
    if spec.origin.value != "api" or spec.type != "webhook":
        raise Conflict(
            f"The sink {name} is not a webhook sink made at run time; change it "
            "where it is defined.",
            what=name,
        )
    form = {k: v for k, v in spec.to_dict(redact=True).items() if isinstance(v, str)}
    headers = spec.options.get("headers")
    form["headers"] = json.dumps(headers) if headers else ""
    form.pop("secret", None)
    return {"form": form, "original": name}


@page
async def sinks_page(ctx: Ctx) -> Response:
    """Dashboard: the sinks with their counts and problems; filters, pause / resume, add and
    edit."""
    rows, values, owners, types = _sink_rows(ctx)
    return ctx.render(
        "sinks.html",
        rows=rows,
        values=values,
        owners=owners,
        types=types,
        edit=_edit(ctx),
        title="Sinks",
    )


@page
async def sinks_rows(ctx: Ctx) -> Response:
    """The table's rows alone: the page polls this, so counts move as deliveries happen."""
    rows, *_ = _sink_rows(ctx)
    return ctx.render("_sink_rows.html", rows=rows)


async def _events(ctx: Ctx) -> dict[str, Any]:
    found = parse_filters(ctx.request.query_params, ctx.caller, ctx.runtime.registry)
    events = await ctx.runtime.find_events(found.query) if not found.problems else []
    seqs = [e.seq for e in events]
    skips = await asyncio.to_thread(ctx.runtime.store.skips, seqs) if seqs else []
    marks: dict[int, list[tuple[str, str]]] = {}
    for sink, seq, reason in skips:
        marks.setdefault(seq, []).append((sink, reason))
    live = ctx.arg("live") == "1" and not found.query.before
    older = ctx.link(before=events[-1].seq) if len(events) == PAGE_SIZE else ""
    return {
        "events": events,
        "marks": marks,
        "filters": found,
        "problems": found.problems,
        "live": live,
        "older": older,
        "newest": ctx.link(before=None) if found.query.before else "",
        "outcomes": OUTCOMES,
        "sink_names": [s.name for s in visible_sinks(ctx)],
        "tail_rate": FRAMES_PER_SECOND * ROWS_PER_FRAME,
        "stream": ctx.link("/ui/events/stream", **{k: v for k, v in found.values.items() if v}),
    }


@page
async def events_page(ctx: Ctx) -> Response:
    """Dashboard: the events, newest first, with filters (type, time, sink, outcome, text) and a
    live tail."""
    return ctx.render("events.html", title="Events", **await _events(ctx))


@page
async def events_rows(ctx: Ctx) -> Response:
    """Dashboard: one page of the events table's rows (paging and filters, for htmx)."""
    return ctx.render("_event_rows.html", **await _events(ctx))


def _find(tree: list[dict[str, Any]], event_id: str) -> dict[str, Any] | None:
    for node in tree:
        if node.get("id") == event_id:
            return node
        found = _find(node.get("children") or [], event_id)
        if found is not None:
            return found
    return None


@page
async def event_page(ctx: Ctx) -> Response:
    """Dashboard: one event: payload, metadata, every delivery attempt, what caused it and what
    it caused."""
    event_id = ctx.request.path_params["event_id"]
    await readable(ctx.runtime, ctx.caller, event_id)
    found = await ctx.runtime.deliveries(event_id)
    event = found.event
    trace = await ctx.runtime.trace(event_id)
    node = _find(list(trace.tree), event_id) or {}
    caused = [{"id": c["id"], "type": c["type"], "ts": c["ts"]} for c in node.get("children") or []]
    parent = await ctx.runtime.get_event(event.parent) if event.parent else None
    visible = visible_sinks(ctx)
    deliveries = [d for d in found.sinks if any(s.name == d["sink"] for s in visible)]
    template = "_deliveries.html" if ctx.request.headers.get("hx-request") else "event.html"
    return ctx.render(
        template,
        title=f"Event {event.type}",
        event=event,
        meta=event.to_dict(),
        payload=json.dumps(event.data, indent=2, ensure_ascii=False),
        deliveries=deliveries,
        busy=any(d["status"] in ("pending", "retrying") for d in deliveries),
        parent=parent,
        parent_id=event.parent,
        caused=caused,
        sink_names=[s.name for s in visible if not s.problem],
        message=ctx.arg("message"),
    )
