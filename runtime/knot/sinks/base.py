"""The sink interface: what the delivery engine asks of a sink, and what a sink may ask back.

A sink is one class: `deliver(event)` either returns (delivered) or raises DeliveryFailed (one
failed attempt; the engine retries and audits). Everything else (ordering, queues, retries,
progress) is the engine's job, not the sink's.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from .._audit import AuditEntry, AuditKind
from .._config import Config
from .._events import Event
from .._exceptions import DeliveryFailed
from .._json import JSONObject
from .._sinkspec import SinkSpec

if TYPE_CHECKING:
    from ..sandbox.pool import WorkerPool
    from ..scriptlib.service import ScriptLibraries
    from .webhook_http import WebhookClients

__all__ = ["BatchResult", "DeliveryResult", "Directive", "ResultCallback", "Sink", "SinkHost"]


@dataclass(frozen=True, slots=True)
class Directive:
    """A Sky directive a sink adds to the synchronous answer."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    sink: str = ""

    def to_dict(self, eid: str = "") -> JSONObject:
        return {
            "type": "directive",
            "name": self.name,
            "options": dict(self.options),
            "meta": {"rid": self.sink, "eid": eid},
        }


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a successful delivery produced besides success itself."""

    directives: tuple[Directive, ...] = ()
    output: tuple[str, ...] = ()
    detail: str = ""
    status: int = 0  # the receiver's HTTP status (webhooks), for the attempt's record
    value: str = ""  # a method's result as JSON ("" for none), for the attempt's record


class SinkHost(Protocol):
    """What the runtime offers a sink: emitting (depth-limited), logging, auditing, settings,
    and the resources sinks share (the sandbox's workers, the webhook HTTP pools, secrets,
    scripts' libraries).

    Every shared resource comes from here, owned by the host and closed with it; no sink
    keeps a registry of its own.
    """

    @property
    def config(self) -> Config: ...

    async def emit_child(
        self,
        parent: Event,
        event_type: str,
        payload: JSONObject,
        *,
        sink: str = "",
        index: int | None = None,
    ) -> str: ...

    def delivery_trace(self, event: Event, sink: str) -> str:
        """The W3C `traceparent` `sink`'s attempt on `event` hands on ("" for none)."""
        ...

    def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None: ...

    def record_audit(self, entry: AuditEntry) -> None: ...

    @property
    def script_pool(self) -> WorkerPool:
        """The sandbox worker processes of script sinks (one per sink)."""
        ...

    @property
    def webhook_clients(self) -> WebhookClients:
        """The HTTP connection pools webhook sinks share."""
        ...

    @property
    def script_libraries(self) -> ScriptLibraries:
        """What answers scripts' `requests`, `knot.kv` and `knot.secrets`."""
        ...

    async def sink_secret(self, sink: str) -> str:
        """The signing secret of a sink defined without one: generated once, then kept."""
        ...


ResultCallback = Callable[[int, "DeliveryResult | None"], None]
"""`on_result(index, result)`: the event at `index` of a batch is delivered (called in order)."""


class BatchResult(NamedTuple):
    """How far a batch got: results for the delivered prefix, then the first failure if any."""

    results: list[DeliveryResult | None]
    failed_at: int | None = None  # index of the event that failed; later ones were not tried
    error: str = ""
    output: tuple[str, ...] = ()  # what the failed event's attempt printed
    # When each event finished (time.time()), for the events with a result and the failed one,
    # if the sink knows: the engine then records each attempt's own duration, else it divides
    # the batch's time evenly.
    finished: tuple[float, ...] = ()


class Sink(abc.ABC):
    """Base class of every sink type; subclasses set `type` and implement `deliver`.

    Sinks whose per-call overhead is high (a worker process behind a pipe) may set `max_batch`
    above 1 and override `deliver_batch`: the engine then hands them up to that many queued
    events at once, still in order, stopping at the first failure. A sink that learns of each
    event's success as it happens calls `on_result` then, so the engine records progress
    event by event: a stop or a crash in the middle of a batch re-runs none that finished.
    """

    type: ClassVar[str]
    failure_kind: ClassVar[AuditKind] = AuditKind.DELIVERY_FAILED
    routed: ClassVar[bool] = True  # False: never routed to (a json-rpc sink is only a formatter)
    max_batch: int = 1
    # The type-specific options `validate` accepts, each with its meaning (the knot.toml
    # reference, docs/reference/config.md, is generated from them).
    options: ClassVar[Mapping[str, str]] = {}
    # The script this sink runs (engine/attempts.py `script_version`), recorded with each
    # attempt so a replay can say what ran; "" for a sink without a script.
    version: str = ""

    @classmethod
    def unknown_options(cls, spec: SinkSpec) -> list[str]:
        """A sentence for each option of `spec` this type does not take (none is ignored)."""
        return [
            f"The option {key!r} is not known; {cls.type} sinks take {', '.join(cls.options)}."
            for key in spec.options
            if key not in cls.options
        ]

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.host: SinkHost | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def validate(cls, spec: SinkSpec) -> list[str]:
        """Problems with the type-specific options of `spec`, as full sentences."""
        return []

    async def start(self, host: SinkHost) -> None:
        """Called once before the first delivery; acquire resources here."""
        self.host = host

    @abc.abstractmethod
    async def deliver(self, event: Event) -> DeliveryResult | None:
        """Deliver one event; raise DeliveryFailed for a failed attempt."""

    async def deliver_batch(
        self, events: Sequence[Event], on_result: ResultCallback | None = None
    ) -> BatchResult:
        """Deliver `events` in order, stopping at the first failed one."""
        results: list[DeliveryResult | None] = []
        finished: list[float] = []
        for index, event in enumerate(events):
            try:
                result = await self.deliver(event)
            except DeliveryFailed as exc:
                finished.append(time.time())
                return BatchResult(results, index, exc.reason, exc.output, tuple(finished))
            finished.append(time.time())
            results.append(result)
            if on_result is not None:
                on_result(index, result)
        return BatchResult(results, finished=tuple(finished))

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release resources; called when the sink is removed, replaced or the runtime stops."""

    def status(self) -> JSONObject:
        """Type-specific status fields for listings (never secrets)."""
        return {}
