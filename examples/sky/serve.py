"""Serve the Sky example with a second sink, written in plain Python.

    python examples/sky/serve.py [--port 12201] [--project DIR]

Runs the runtime on this folder (so the `greeter` script sink in `scripts/sinks/` loads) with
one more sink, `hello_py`, a `knot.Sink` subclass that answers every `custom.greet.*` event
with a directive, and makes sure the channel `demo` exists: both sinks answer. `knot serve
--project examples/sky` plus `knot channel create --eci demo` is the same without `hello_py`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import ClassVar

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

HERE = Path(__file__).resolve().parent


class Hello(Sink):
    """A sink in plain Python: one `say` directive per event, from its `name` attribute."""

    type: ClassVar[str] = "hello"

    async def deliver(self, event: Event) -> DeliveryResult | None:
        name = event.data.get("name", "world")
        return DeliveryResult(
            directives=(Directive("say", {"text": f"Hi {name}, from Python."}, sink=self.name),)
        )


async def main(project: Path, port: int) -> None:
    runtime = Runtime(project)
    await runtime.start()
    spec = SinkSpec(
        "hello_py", "hello", parse_patterns("custom.greet.*"), origin=SinkOrigin.BUILTIN
    )
    await runtime.add_sink(Hello(spec))
    if runtime.channels.get("demo") is None:
        await runtime.channels.create(eci="demo", name="Sky example")

    def ready(host: str, bound: int) -> None:
        print(f"Sky example on http://{host}:{bound}/sky/event/demo/...", flush=True)

    await serve(runtime, port=port, ready=ready)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=12201)
    parser.add_argument("--project", type=Path, default=HERE)
    args = parser.parse_args()
    asyncio.run(main(args.project, args.port))
