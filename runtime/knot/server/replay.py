"""`POST /api/sinks/{name}/replay` (and `/api/event-sinks/{name}/replay`): `runtime.replay`.

The body (every key optional): `{"since": TIME, "from_seq": N, "events": PATTERN, "limit": N,
"progress": false}`. The answer is the report (`ReplayReport.to_dict()`). With `"progress":
true` it comes as newline-delimited JSON instead: `{"progress": {"done", "total"}}` lines while
the events run, then `{"report": {...}}` (or `{"error": ...}` if the replay failed on the way),
so `knot replay` can say how far a long replay got. A request that is wrong from the start
(an unknown sink, bad arguments) is answered with its status either way.

At most REPLAYS_AT_ONCE replays run at a time (each starts a sandbox worker); more wait.

Who may replay: whoever may manage the sink (its owner, or "Manage Global Event Sinks" for a
global one), as for testing it: a replay runs the sink's script on the journal's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._exceptions import InvalidInput, KnotError, NotFound
from .._replay import ReplayReport
from .._runtime import Runtime
from .auth import caller
from .common import read_json

__all__ = ["REPLAYS_AT_ONCE", "routes"]

REPLAYS_AT_ONCE = 2  # more requests wait their turn (with no progress line until it comes)

_FIELDS: dict[str, tuple[type, ...]] = {
    "since": (str,),
    "from_seq": (int,),
    "events": (str,),
    "limit": (int,),
    "progress": (bool,),
}


async def _options(request: Request) -> dict[str, Any]:
    """The body's options, each of its type (null: not given); 400 names what is wrong."""
    sent = request.headers.get("content-length") not in (None, "0")
    body = await read_json(request) if sent or "transfer-encoding" in request.headers else {}
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object of replay options.")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise InvalidInput(
            f"Unknown replay option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(_FIELDS)}."
        )
    for key, value in body.items():
        kinds = _FIELDS[key]
        wrong = isinstance(value, bool) and bool not in kinds
        if value is not None and (wrong or not isinstance(value, kinds)):
            noun = {str: "a string", int: "an integer", bool: "true or false"}[kinds[0]]
            raise InvalidInput(f"The replay option {key!r} must be {noun}.")
    return {k: v for k, v in body.items() if v is not None}


async def replay(request: Request) -> Response:
    """`{"since"?, "from_seq"?, "events"?, "limit"?, "progress"?}` → the replay report: the
    sink's current script run again on journaled events in the sandbox (nothing delivered or
    journaled) and compared with what ran then; `"progress": true` streams NDJSON progress
    lines before it. See [replay](../replay.md)."""
    runtime: Runtime = request.app.state.runtime
    who = caller(request)
    name = request.path_params["name"]
    # The listing's entry: a sink whose script never loaded has one too (with its problem).
    found = next((s for s in runtime.sinks() if s.name == name), None)
    if found is None or not who.may_see_sink(found.spec.owner):
        raise NotFound(f"There is no sink named {name!r}.", what=name)
    who.require_sink(found.spec.owner, f"replay the sink {name!r}")
    options = await _options(request)
    streamed = options.pop("progress", False)
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    slots: asyncio.Semaphore | None = getattr(request.app.state, "replay_slots", None)
    if slots is None:
        slots = request.app.state.replay_slots = asyncio.Semaphore(REPLAYS_AT_ONCE)

    async def replaying() -> ReplayReport:
        assert slots is not None
        async with slots:  # each replay has a sandbox worker of its own: a few at a time
            return await runtime.replay(
                name, **options, progress=lambda d, t: queue.put_nowait((d, t))
            )

    task = asyncio.create_task(replaying())
    if not streamed:
        try:
            report = await task
        finally:
            task.cancel()  # the client went away: stop replaying
        return JSONResponse(report.to_dict())
    first = asyncio.ensure_future(queue.get())
    await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and task.exception() is not None:
        first.cancel()
        task.result()  # wrong from the start: the error's own status
    return StreamingResponse(_lines(task, queue, first), media_type="application/x-ndjson")


async def _lines(
    task: asyncio.Task[ReplayReport],
    queue: asyncio.Queue[tuple[int, int]],
    first: asyncio.Future[tuple[int, int]],
) -> AsyncIterator[str]:
    try:
        waiting: asyncio.Future[tuple[int, int]] = first
        while True:
            either: set[asyncio.Future[Any]] = {task, waiting}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                done, total = waiting.result()
                yield _line({"progress": {"done": done, "total": total}})
                waiting = asyncio.ensure_future(queue.get())
                continue
            waiting.cancel()
            break
        try:
            report = task.result()
        except KnotError as exc:
            yield _line({"error": exc.message})
        else:
            yield _line({"report": report.to_dict()})
    finally:
        task.cancel()  # the client went away mid-stream: stop replaying
        with contextlib.suppress(BaseException):
            await task


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


routes = [
    Route("/api/sinks/{name}/replay", replay, methods=["POST"]),
    Route("/api/event-sinks/{name}/replay", replay, methods=["POST"]),
]
