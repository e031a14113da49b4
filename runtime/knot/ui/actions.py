"""The dashboard's actions (POST, CSRF-checked by `action`): sinks, re-delivery, methods, spaces.

Each calls the same function the HTTP API's route calls (server/sinks.py) or the runtime call
behind it, with the same permission checks, and answers a fragment htmx puts in the page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.responses import Response

from .._exceptions import InvalidInput, KnotError, NotFound
from .._jsontext import decode_json
from ..server import sinks as sink_actions
from ..server.observe import check_redeliver
from ..spaces.service import Spaces
from .filters import PAGE_SIZE
from .pages import sink_row
from .web import Ctx, action

__all__ = [
    "call_method",
    "delete_sink",
    "pause_sink",
    "redeliver",
    "retry_many",
    "save_sink",
    "space_action",
    "test_sink",
]

log = logging.getLogger("knot.ui")
WEBHOOK_FIELDS = ("name", "description", "events", "url", "secret", "body_template", "owner")
REDELIVER_WAIT = 2.0  # seconds an answer waits for the outcome; the page follows it after


def _row(ctx: Ctx, name: str) -> Response:
    for status in ctx.runtime.sinks():
        if status.name == name:
            return ctx.render("_sink_rows.html", rows=[sink_row(status)])
    raise NotFound(f"There is no sink named {name!r}.", what=name)


@action
async def pause_sink(ctx: Ctx) -> Response:
    """Pause (`active=false`) or resume a sink: its events wait in the journal meanwhile."""
    name = ctx.request.path_params["name"]
    active = ctx.form.get("active") == "true"
    await sink_actions.update(ctx.runtime, ctx.caller, name, {"active": active})
    return _row(ctx, name)


def _definition(ctx: Ctx) -> dict[str, Any]:
    form = ctx.form
    body: dict[str, Any] = {"type": "webhook"}
    for key in WEBHOOK_FIELDS:
        value = form.get(key, "").strip()
        if value or key in ("description", "owner"):
            body[key] = value
    if "owner" in body and body["owner"] == "" and not ctx.caller.manage_global_sinks:
        body["owner"] = ctx.caller.owner  # the form's default for who may not make global ones
    body["active"] = form.get("active", "true") == "true"
    headers = form.get("headers", "").strip()
    if headers:
        parsed = decode_json(headers.encode())
        if not isinstance(parsed, dict):
            raise InvalidInput('The headers must be a JSON object, e.g. {"X-Team": "infra"}.')
        body["headers"] = parsed
    return body


@action
async def save_sink(ctx: Ctx) -> Response:
    """Add a webhook sink, or change one (`original` names it); errors stay in the form."""
    original = ctx.form.get("original", "")
    try:
        body = _definition(ctx)
        if original:
            if not body.get("secret"):
                body.pop("secret", None)  # left empty: keep the one it has
            answer = await sink_actions.update(ctx.runtime, ctx.caller, original, body, whole=True)
        else:
            answer = await sink_actions.create(ctx.runtime, ctx.caller, body)
    except KnotError as exc:
        return ctx.render(
            "_sink_form.html", status=200, form=ctx.form, error=exc.message, original=original
        )
    response = ctx.render(
        "_sink_saved.html",
        name=answer["name"],
        secret=answer.get("secret", ""),
        created=not original,
    )
    response.headers["HX-Trigger"] = "sinks-changed"
    return response


@action
async def delete_sink(ctx: Ctx) -> Response:
    """Dashboard: remove a sink made through the API (CSRF token required)."""
    name = ctx.request.path_params["name"]
    await sink_actions.remove(ctx.runtime, ctx.caller, name)
    return ctx.render("_message.html", note=f"The sink {name} was removed.")


@action
async def test_sink(ctx: Ctx) -> Response:
    """Dashboard: send one test event straight to a sink and show what happened."""
    name = ctx.request.path_params["name"]
    answer = await sink_actions.send_test(ctx.runtime, ctx.caller, name, {})
    return ctx.render("_test_result.html", answer=answer)


@action
async def redeliver(ctx: Ctx) -> Response:
    """Retry a given-up delivery, or replay the event to any sink: queued at once, answered
    with the outcome when it comes within a moment (else the page follows the attempts)."""
    event_id = ctx.request.path_params["event_id"]
    runtime, who = ctx.runtime, ctx.caller
    sink = await check_redeliver(runtime, who, event_id, ctx.form.get("sink", ""))
    task = asyncio.ensure_future(runtime.redeliver(event_id, sink, by=who.name or "the local user"))
    done, _ = await asyncio.wait({task}, timeout=REDELIVER_WAIT)
    if not done:
        note = f"Queued for {sink}; the attempts below follow it."
    else:
        outcome = task.result()  # (raises what the runtime refused: shown as an error)
        tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
        why = f": {outcome.error}" if outcome.error else ""
        note = f"{sink}: {outcome.status.value} ({tries}){why}"
    response = ctx.render("_message.html", note=note)
    response.headers["HX-Trigger"] = "deliveries-changed"
    return response


@action
async def retry_many(ctx: Ctx) -> Response:
    """Retry every event of a page (a sink's failures or drops) for that sink: checked first,
    then handed over one at a time, oldest first, each after the one before is done (the
    sink's order), in the background; the answer says how many went."""
    runtime, who = ctx.runtime, ctx.caller
    ids = [i for i in ctx.form.get("ids", "").split(",") if i][:PAGE_SIZE]
    if not ids:
        raise InvalidInput("There are no events to retry on this page.")
    sink = ""
    events = []
    for event_id in ids:  # each one readable by this caller, to a sink they see
        sink = await check_redeliver(runtime, who, event_id, ctx.form.get("sink", ""))
        event = await runtime.get_event(event_id)
        if event is None:
            raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
        events.append(event)
    runtime.registry.spec(sink)  # NotFound now, not in the background: no such (running) sink
    events.sort(key=lambda e: e.seq)
    by = who.name or "the local user"

    async def one_by_one() -> None:
        for event in events:
            try:
                await runtime.redeliver(event.id, sink, by=by)
            except KnotError as exc:  # the sink went away, the runtime stops: the rest too
                log.warning("retrying %s for %s stopped: %s", event.id, sink, exc.message)
                return

    ctx.ui.spawn(one_by_one())
    count = f"{len(events)} event{'s' if len(events) != 1 else ''}"
    response = ctx.render(
        "_message.html",
        note=f"Queued {count} for {sink} again, oldest first; the sinks page "
        "shows them being delivered.",
    )
    response.headers["HX-Trigger"] = "sinks-changed"
    return response


@action
async def call_method(ctx: Ctx) -> Response:
    """Dashboard: call a method script's method with JSON params and show the result."""
    name = ctx.form.get("method", "").strip()
    text = ctx.form.get("params", "").strip() or "null"
    who = ctx.caller
    try:
        params = decode_json(text.encode())  # InvalidInput saying where the JSON is wrong
        result = await ctx.runtime.methods.call_name(name, params, owner=who.owner, actor=who.actor)
    except KnotError as exc:
        return ctx.render("_call_result.html", method=name, error=exc.message)
    shown = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    return ctx.render("_call_result.html", method=name, result=shown)


@action
async def space_action(ctx: Ctx) -> Response:
    """Dashboard: start or stop a space."""
    name, verb = ctx.request.path_params["name"], ctx.request.path_params["verb"]
    spaces: Spaces = ctx.runtime.spaces
    owner = ctx.caller.owner or None
    if verb == "start":
        await spaces.start(name, owner=owner)
    elif verb == "stop":
        await spaces.stop(name, owner=owner)
    else:
        raise NotFound(f"A space cannot be asked to {verb!r}; start or stop it.")
    response = ctx.render("_message.html", note=f"The space {name} was asked to {verb}.")
    response.headers["HX-Trigger"] = "spaces-changed"
    return response
