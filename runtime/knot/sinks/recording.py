"""The recording sink: keeps what it receives, for tests, notebooks and trying out settings.

Options: `limit` (events kept in memory, default 10000), `path` (also append one JSON line per
delivery to this file, flushed at once, so another process can watch), `delay` (seconds each
delivery takes) and `fail_attempts` (fail the first N attempts of every event), the last two
for trying queue and retry settings without a real failing receiver.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, ClassVar

from .._events import Event
from .._exceptions import DeliveryFailed
from .._json import JSONObject
from .._sinkspec import SinkSpec
from .base import DeliveryResult, Sink, SinkHost

__all__ = ["RecordingSink"]


class RecordingSink(Sink):
    type: ClassVar[str] = "recording"
    options: ClassVar[Mapping[str, str]] = {
        "limit": "Events kept in memory, the newest; default 10000.",
        "path": "A file to append one JSON line to per delivery.",
        "delay": "Seconds each delivery takes (to try slow sinks); default 0.",
        "fail_attempts": "Fail the first N attempts of each event (to try retries); default 0.",
    }

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        opts = spec.options
        self.events: deque[Event] = deque(maxlen=int(opts.get("limit", 10_000)))
        self.path = Path(str(opts["path"])) if opts.get("path") else None
        self.delay = float(opts.get("delay", 0.0))
        self.fail_attempts = int(opts.get("fail_attempts", 0))
        self.received = 0
        self._attempts: dict[str, int] = {}
        self._file: IO[str] | None = None
        self._changed = asyncio.Event()
        # The loop the sink receives on: a waiter on another thread may block while it polls,
        # one on this loop must await (knot.testing's assert_delivered tells them apart).
        self.loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def validate(cls, spec: SinkSpec) -> list[str]:
        problems = cls.unknown_options(spec)
        for key in ("limit", "fail_attempts"):
            value = spec.options.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"The option {key} must be an integer >= 0, not {value!r}.")
        delay = spec.options.get("delay", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            problems.append(f"The option delay must be a number of seconds >= 0, not {delay!r}.")
        path = spec.options.get("path")
        if path is not None and not isinstance(path, str):
            problems.append("The option path must be a file path string.")
        return problems

    async def start(self, host: SinkHost) -> None:
        await super().start(host)
        self.loop = asyncio.get_running_loop()

    async def deliver(self, event: Event) -> DeliveryResult | None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_attempts:
            seen = self._attempts.get(event.id, 0) + 1
            self._attempts[event.id] = seen
            if seen <= self.fail_attempts:
                raise DeliveryFailed(
                    f"The recording sink {self.name} failed attempt {seen} on purpose "
                    f"(fail_attempts = {self.fail_attempts}).",
                    sink=self.name,
                    event=event.id,
                )
            del self._attempts[event.id]
        self.events.append(event)
        self.received += 1
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            line = {"id": event.id, "seq": event.seq, "type": event.type, "data": event.data}
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        self._changed.set()
        return None

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Event]:
        """Wait until `count` events have been received in all; return the kept events."""
        async with asyncio.timeout(timeout):
            while self.received < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.events)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def status(self) -> JSONObject:
        return {"received": self.received}
