"""A SinkHost where nothing happens for real: what dry runs (`knot run`) and replays (`knot
replay`) run a script sink on.

A script sink started on it runs in a real sandbox worker with the runtime's limits, but its
emits are validated and not journaled, its HTTP requests are checked against `http_allow` and
(unless `live`) not sent, its `knot.kv` writes go to a scratch copy of its namespace
(`ScratchKv`), its audits go nowhere, and every secret's value is redacted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._config import Config
from .._events import Event, as_custom_type, encode_payload, new_event_id
from .._json import JSONObject
from ..engine.storage import KvItem
from ..sandbox.pool import WorkerPool
from ..scriptlib.scratch import ScratchKv
from ..scriptlib.service import DryRunLog, ScriptLibraries
from ..sinks.webhook import new_secret
from ..sinks.webhook_http import WebhookClients

__all__ = ["EmittedEvent", "ScratchHost"]


@dataclass(frozen=True, slots=True)
class EmittedEvent:
    type: str
    payload: JSONObject
    id: str
    parent: str = ""  # the id of the event whose handling emitted it

    @property
    def data(self) -> JSONObject:
        """The payload, by the name an Event gives it (`event.data`)."""
        return self.payload

    def to_dict(self) -> JSONObject:
        return {"id": self.id, "type": self.type, "payload": self.payload}


class ScratchHost:
    """One sink's host for a dry run or a replay: see the module's docstring.

    `seed` is the script's `knot.kv` namespace to start from (`scope` → its live keys); `pool`
    lends sandbox workers (without one the host starts a one-worker pool, closed with it).
    """

    def __init__(
        self,
        config: Config,
        project: Path,
        *,
        seed: dict[str, dict[str, KvItem]] | None = None,
        live: bool = False,
        pool: WorkerPool | None = None,
        max_payload_bytes: int = 1024 * 1024,
    ) -> None:
        self.config = config
        self.scratch = ScratchKv(seed)
        self.log = DryRunLog(live=live)
        self.emitted: list[EmittedEvent] = []
        self.output: list[str] = []  # every line printed, in order (a sink keeps only a few)
        self.max_payload_bytes = max_payload_bytes
        scratch = self.scratch

        async def on_scratch(operation: Callable[[ScratchKv], Any]) -> Any:
            return operation(scratch)

        self.script_libraries = ScriptLibraries(
            config=lambda: config,
            project=project,
            kv=on_scratch,
            audit=lambda entry: None,
            dry_run=self.log,
        )
        self._own_pool = pool is None
        self.script_pool = pool or WorkerPool(
            size=1,
            memory_mb=config.scripts.memory_mb,
            redact=self.script_libraries.secrets.redact_message,
        )
        self.webhook_clients = WebhookClients(limit=4)

    async def sink_secret(self, sink: str) -> str:
        return new_secret()

    async def emit_child(
        self,
        parent: Event,
        event_type: str,
        payload: JSONObject,
        *,
        sink: str = "",
        index: int | None = None,
    ) -> str:
        full_type = as_custom_type(event_type)
        encode_payload(payload, max_bytes=self.max_payload_bytes, event_type=full_type)
        event_id = new_event_id()
        self.emitted.append(EmittedEvent(full_type, payload, event_id, parent.id))
        return event_id

    def delivery_trace(self, event: Event, sink: str) -> str:
        return event.trace  # nothing is traced: a dry run's requests carry the event's own

    def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None:
        self.output.extend(lines)

    def record_audit(self, entry: object) -> None:
        return None

    async def close(self) -> None:
        if self._own_pool:
            await self.script_pool.close()
        await self.webhook_clients.close()
        await self.script_libraries.close()
