"""The servers of the Sky benchmark, started the same way: `python -m benchmarks.sky_apps
ours|script|bare [PROJECT]`. Each prints `ready on http://HOST:PORT` once it listens.

`ours` is the knot runtime and its HTTP app (the same `serve` as `knot serve`) with one channel
(eci `bench`) and one sink answering every `custom.bench.*` event with a directive: a `Sink`
written in Python, or with `script` a sandboxed script sink (worker processes). `bare` is a
starlette + uvicorn app on the same route that reads the same body and answers the same JSON
shape, but raises, journals and routes nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import uuid_utils
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from knot import (
    DeliveryResult,
    Directive,
    Event,
    Runtime,
    Sink,
    SinkOrigin,
    SinkSpec,
    parse_patterns,
)
from knot.server import serve

from .common import serve_asgi

ECI = "bench"
PATH = f"/sky/event/{ECI}/none/bench/hello"


class Greeter(Sink):
    """The benchmark's directive: one `say` per event, from the `name` attribute."""

    type: ClassVar[str] = "greeter"

    async def deliver(self, event: Event) -> DeliveryResult | None:
        text = f"hello {event.data.get('name', 'world')}"
        return DeliveryResult(directives=(Directive("say", {"text": text}, sink=self.name),))


def ready(host: str, port: int) -> None:
    print(f"ready on http://{host}:{port}", flush=True)


SCRIPT = """\
# events: custom.bench.*
import knot.event

knot.event.directive("say", {"text": "hello " + knot.event.get_string("name", "world")})
"""


async def ours(project: Path, *, script: bool = False) -> None:
    if script:  # the same directive from a sandboxed script sink instead of Python
        (project / "scripts" / "sinks").mkdir(parents=True, exist_ok=True)
        (project / "scripts" / "sinks" / "greeter.py").write_text(SCRIPT)
    runtime = Runtime(project)
    await runtime.start()
    if not script:
        spec = SinkSpec(
            "greeter", "greeter", parse_patterns("custom.bench.*"), origin=SinkOrigin.BUILTIN
        )
        await runtime.add_sink(Greeter(spec))
    if runtime.channels.get(ECI) is None:
        await runtime.channels.create(eci=ECI, name="benchmark")
    await serve(runtime, port=0, ready=ready)


async def bare_sky_event(request: Request) -> Response:
    attrs = json.loads(await request.body())
    if not isinstance(attrs, dict):
        return JSONResponse({"error": "bad"}, status_code=400)
    event_id = str(uuid_utils.uuid7())
    text = f"hello {attrs.get('name', 'world')}"
    directive = {
        "type": "directive",
        "name": "say",
        "options": {"text": text},
        "meta": {"rid": "greeter", "eid": event_id},
    }
    answer = {"eid": event_id, "id": event_id, "directives": [directive]}
    return JSONResponse(answer, headers={"Access-Control-Allow-Origin": "*"})


async def bare() -> None:
    await serve_asgi(Starlette(routes=[Route(PATH, bare_sky_event, methods=["GET", "POST"])]))


if __name__ == "__main__":
    which = sys.argv[1]
    if which == "bare":
        uvloop.run(bare())
    else:
        uvloop.run(ours(Path(sys.argv[2]), script=which == "script"))
