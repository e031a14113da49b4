"""Runtime: wires the store, journal, router, delivery engine and sink sources together.

Data flows one way: an ingress calls `emit`; the event is journaled; on commit the router picks
its sinks and the delivery engine queues it for each; sinks report outcomes back to the engine,
which records progress through the journal.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from ._aliases import warn_renamed
from ._audit import AuditEntry, AuditKind
from ._config import CONFIG_FILE, RESTART_SETTINGS, Config, changed_settings, load_config
from ._events import (
    Event,
    EventOptions,
    Space,
    build_event,
    child_event_id,
)
from ._exceptions import RuntimeClosed
from ._json import JSONObject
from ._logtext import log_output
from ._reads import Reads
from ._redeliver import Redelivery
from ._sinkspec import SinkOrigin, SinkSpec
from ._stores import caught_up, cluster_gate, fit_to_store, open_storage, start_routing
from ._user_directory import UserDirectory
from ._users import KV_USERS
from .cluster.part import ClusterPart
from .engine.delivery import DeliveryEngine
from .engine.dispatch import Dispatcher
from .engine.hooks import EventListener, Hooks, OutcomeListener
from .engine.housekeeping import Housekeeper
from .engine.journal import Journal
from .engine.outcomes import EmitReport, Tracker
from .engine.registry import SinkRegistry, SinkStatus
from .engine.router import Router
from .engine.storage import Storage
from .methods.service import Methods
from .sandbox.pool import WorkerPool
from .scriptlib.service import ScriptLibraries
from .scripts.methods import MethodScripts
from .scripts.reload import Reloader
from .scripts.sinks import ScriptSinks
from .sinks import Sink, build_sink
from .sinks.script import pool_size
from .sinks.webhook import WebhookClients, new_secret
from .sky.channels import KV_CHANNELS, Channels
from .spaces.service import Spaces, SpacesPart
from .types import Clock, RuntimePart

__all__ = ["EmitReport", "Runtime", "RuntimePart"]

log = logging.getLogger("knot.events")
T = TypeVar("T")


class Runtime(Reads, Redelivery):
    """An embeddable knot runtime: `async with Runtime("path/to/project") as rt: ...`.

    `project` holds `knot.toml` and the scripts folder; every setting can be overridden
    with `config`. `parts` are extra components to run with it (the script reloader, spaces).
    `clock` is what delivery waits on between attempts (knot.testing's FakeClock; default:
    the event loop's own time).
    """

    def __init__(
        self,
        project: str | Path = ".",
        *,
        config: Config | None = None,
        store_path: str | Path | None = None,
        store_url: str = "",
        parts: Iterable[RuntimePart] = (),
        http_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.project = Path(project).resolve()
        self.clock = clock
        self._config_arg = config
        self._store_path_arg = store_path
        self._store_url_arg = store_url  # `knot serve --store nats://...` over knot.toml's
        self.config: Config = config or Config()
        self.parts: list[RuntimePart] = list(parts) or self._default_parts()
        self._store: Storage | None = None
        self._journal: Journal | None = None
        self._delivery: DeliveryEngine | None = None
        self._registry: SinkRegistry | None = None
        self.router = Router()
        self.users = UserDirectory(config_users=lambda: self.config.users, store=self)
        self.channels = Channels(self, self.users)  # Sky event channels (ecis), from the store
        self.hooks = Hooks()  # observers of the event path; one that raises stops nothing
        self._housekeeper: Housekeeper | None = None
        self._dispatcher: Dispatcher | None = None
        self._started = False
        self._stopping = False
        # The HTTP pool all webhook sinks share; `http_transport` replaces its transport.
        self.webhook_clients = WebhookClients(transport=http_transport)
        self._script_pool: WorkerPool | None = None  # made when the first script sink starts
        self.script_libraries = ScriptLibraries.for_runtime(self)  # requests, knot.kv, secrets
        self.methods = Methods(self)  # method scripts: workers, calls, subscriptions

    def _default_parts(self) -> list[RuntimePart]:
        """The components every runtime runs unless `parts` says otherwise."""
        # Script sinks first: system events raised while spaces come back reach them.
        return [
            Reloader(folders={"sinks": ScriptSinks(), "methods": MethodScripts()}),
            SpacesPart(),
            ClusterPart(),  # last: claims sinks once the scripts' and spaces' are defined
        ]

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._started and not self._stopping

    @property
    def store_failure(self) -> str:
        """Why the store refused the last commit ("" while it works)."""
        return self._journal.failure if self._journal is not None else ""

    @property
    def store(self) -> Storage:
        return _started(self._store)

    @property
    def journal(self) -> Journal:
        return _started(self._journal)

    @property
    def delivery(self) -> DeliveryEngine:
        return _started(self._delivery)

    @property
    def registry(self) -> SinkRegistry:
        return _started(self._registry)

    @property
    def config_path(self) -> Path | None:
        """The knot.toml the settings come from; None when they were given as `config=`."""
        return self.project / CONFIG_FILE if self._config_arg is None else None

    @property
    def spaces(self) -> Spaces:
        """Local spaces: `await runtime.spaces.create("web", cmd="...", start=True)`."""
        for part in self.parts:
            if isinstance(part, SpacesPart):
                return part.spaces
        raise RuntimeClosed("This runtime was built without spaces (see its `parts`).")

    def resolve(self, path: str | Path) -> Path:
        """A path from the settings, relative to the project folder."""
        p = Path(path)
        return p if p.is_absolute() else self.project / p

    @property
    def state_dir(self) -> Path:
        """Where the runtime keeps its own files: the store's folder (`.knot/`)."""
        return self.store.path.parent

    @property
    def method_loader(self) -> Methods:
        return self.methods

    # -- durable records (KeyValueArea) ----------------------------------------------------

    def kv_all(self, area: str) -> dict[str, Any]:
        return self.store.kv_all(area)

    async def kv_put(self, area: str, key: str, value: Any) -> None:
        """Written through the journal's writer, in order with the events around it."""
        await self.journal.call(lambda store: store.kv_put(area, key, value))

    async def kv_delete(self, area: str, key: str) -> None:
        await self.journal.call(lambda store: store.kv_delete(area, key))

    async def start(self) -> None:
        if self._started:
            return
        if self._config_arg is None:
            self.config = load_config(self.project).raise_for_errors().with_env()
        self.config = self.config.with_store_url(self._store_url_arg)
        store_path = self._store_path_arg or self.resolve(self.config.store.path)
        store = await asyncio.to_thread(open_storage, self.config, Path(store_path))
        self._store, self.config = store, fit_to_store(self.config, store)
        try:
            await self._start_core()
        except BaseException as exc:
            store.close()
            self._store = None
            # A damaged page met while loading (cursors, sinks, users...) is the store's
            # fault, not a bug: one clear StoreError, as for one met while opening.
            if isinstance(exc, sqlite3.DatabaseError):
                raise store.unusable(exc) from None
            raise
        self._started = True
        try:
            for part in self.parts:
                await part.start(self)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, sqlite3.DatabaseError):
                raise store.unusable(exc) from None
            raise

    async def _start_core(self) -> None:
        store = self.store
        self._journal = Journal(store, on_commit=self._on_commit)
        self._delivery = DeliveryEngine(
            self._journal, self.config.delivery, self.hooks, clock=self.clock
        )
        self._dispatcher = Dispatcher(self.router, self._delivery, self.hooks)
        # Sinks known from an earlier run resume right after their stored cursor, whenever
        # (and from whichever source) they are installed again.
        self._registry = SinkRegistry(
            self.router,
            self._delivery,
            self,
            build=build_sink,
            new_secret=new_secret,
            cursors=store.load_cursors(),
            backlog=store.backlog,
            gate=cluster_gate(store, self.config),  # on a shared store: which sinks run here
        )
        self._journal.start()
        start_routing(store, self._dispatcher)  # a shared (NATS) journal: from its feed
        for problem in self.channels.load(store.kv_all(KV_CHANNELS)):
            log.error("%s", problem)
        self.users.load(store.kv_all(KV_USERS))
        await self.registry.install_at_start(self.config.sinks, where=self.config.sink_lines)
        self._housekeeper = Housekeeper(self._journal, self._delivery, lambda: self.config.store)
        self._housekeeper.start()

    async def _install_at_start(self, item: SinkSpec | Sink) -> None:
        spec = item.spec if isinstance(item, Sink) else item
        try:
            await self.registry.install(item)
        except Exception as exc:
            self.registry.set_problem(spec.name, spec, str(exc))
            log.error("%s", exc)

    async def stop(self) -> None:
        if not self._started or self._stopping:
            return
        self._stopping = True
        for part in reversed(self.parts):
            try:
                await part.stop()
            except Exception:
                log.exception("a runtime part failed to stop")
        if self._housekeeper is not None:
            await self._housekeeper.stop()
        if self._delivery is not None:
            await self._delivery.close()
        await self.methods.close()
        await self.webhook_clients.close()
        await self.script_libraries.close()
        if self._script_pool is not None:
            await self._script_pool.close()
            self._script_pool = None
        if self._journal is not None:
            await self._journal.close()
        if self._store is not None:
            self._store.close()
        if self._dispatcher is not None:
            self._dispatcher.close()  # what was not routed stays journaled, routed on restart
        self._store = self._journal = self._delivery = self._dispatcher = None
        self._registry = None
        self._started = False
        self._stopping = False

    async def apply_config(self, config: Config) -> tuple[str, ...]:
        """Take new settings while running; return the changed ones that need a restart.

        Delivery, script and retention settings apply to new work (an attempt in flight
        finishes under the old ones); `[[sinks]]` are synced (changed ones replaced, keeping
        their queues; dropped ones removed). Settings in RESTART_SETTINGS keep their running
        values until the next start.
        """
        self._check_running()
        old = self.config
        pending = tuple(n for n in changed_settings(old, config) if n in RESTART_SETTINGS)
        config = replace(
            config,
            zone=old.zone,
            server=old.server,
            store=config.store.keeping_open(old.store),
            scripts=replace(config.scripts, dir=old.scripts.dir),
        )
        self.config = config = fit_to_store(config, self.store)
        # Sinks this change removes stop under the settings their attempt in flight started
        # with (delivery.stop_grace); everything after uses the new ones.
        why, lines = "removed from knot.toml", config.sink_lines
        await self.registry.sync(SinkOrigin.CONFIG, config.sinks, reason=why, where=lines)
        self.delivery.settings = config.delivery
        return pending

    # -- events ---------------------------------------------------------------------------

    def make_event(
        self,
        event_type: str,
        payload: object = None,
        *,
        root: str = "",
        trace: str = "",
        **options: Unpack[EventOptions],
    ) -> Event:
        """Validate and build an event (not journaled). External events get `custom.`.

        `trace` is a W3C `traceparent` the event continues (from the request that raised it);
        with tracing on, the event carries its ingest span's context instead, a child of it."""
        tracer = self.hooks.tracer
        if tracer is not None:
            try:
                trace = tracer.ingest(trace)
            except Exception:
                self.hooks.report(tracer, "the tracer")
        return build_event(
            event_type,
            payload,
            zone=self.config.zone,
            next_seq=self.journal.next_seq,
            max_payload_bytes=self.config.delivery.max_payload_bytes,
            root=root,
            trace=trace,
            **options,
        )

    def delivery_trace(self, event: Event, sink: str) -> str:
        """The `traceparent` `sink`'s attempt on `event` hands on (see DeliveryEngine.trace)."""
        return self.delivery.trace(event, sink)

    async def emit(self, event_type: str, payload: object = None, **options: Any) -> str:
        """Raise a custom event; return its id once it is journaled (durable).

        Options are those of `make_event` (owner, actor, space, id, eid, rids, ts).
        """
        self._check_running()
        event = self.make_event(event_type, payload, **options)
        await self.journal.append(event, check_duplicate="id" in options)
        return event.id

    async def submit(self, event: Event, *, check_duplicate: bool = False) -> bool:
        """Journal and route an event built with `make_event`; False for a duplicate id."""
        self._check_running()
        return await self.journal.append(event, check_duplicate=check_duplicate)

    async def emit_and_wait(
        self,
        event_type: str,
        payload: object = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> EmitReport:
        """Raise an event and wait (up to `timeout`) until every sink it was routed to is done."""
        self._check_running()
        event = self.make_event(event_type, payload, **options)
        return await self.submit_and_wait(event, timeout=timeout, check_duplicate="id" in options)

    async def submit_and_wait(
        self, event: Event, *, timeout: float | None = None, check_duplicate: bool = False
    ) -> EmitReport:
        tracker = Tracker()
        trackers = self.delivery.trackers
        trackers[event.id] = tracker
        try:
            inserted = await self.journal.append(event, check_duplicate=check_duplicate)
            if not inserted:
                return EmitReport(event, {}, (), duplicate=True)
            await tracker.wait(self.config.delivery.sync_timeout if timeout is None else timeout)
            return EmitReport(event, dict(tracker.outcomes), tracker.pending)
        finally:
            trackers.pop(event.id, None)

    def release_waiters(self) -> None:
        """Answer every `emit_and_wait` now with the outcomes so far, the rest pending: a
        server shutting down answers a synchronous Sky request still waiting on slow sinks
        (its events stay journaled, delivered after a restart) instead of cancelling it."""
        for tracker in list(self.delivery.trackers.values()):
            tracker.release()

    async def emit_system(
        self, event_type: str, payload: JSONObject, *, space: Space | None, owner: str = ""
    ) -> str:
        """Raise a system event (space lifecycle); only the runtime itself calls this.

        Parts may still raise them while they stop (a space stopped by the runtime's own
        shutdown raises space.stopped): the journal closes only after every part has stopped.
        """
        if not self._started or self._journal is None:
            raise RuntimeClosed("The runtime is not running; start it before raising events.")
        event = self.make_event(event_type, payload, space=space, owner=owner, system=True)
        await self.journal.append(event)
        return event.id

    async def emit_child(
        self,
        parent: Event,
        event_type: str,
        payload: JSONObject,
        *,
        sink: str = "",
        index: int | None = None,
    ) -> str:
        """An event raised by a sink while handling `parent`: one level deeper, same owner.

        With `sink` and `index` (the emit's place in that handling) its id is derived, and the
        journal drops a repeat: a re-run after a crash raises nothing twice. Chains deeper than
        `delivery.max_depth` are dropped and audited (the id is still returned, so a script
        cannot tell and loop on it)."""
        depth = parent.depth + 1
        event = self.make_event(
            event_type,
            payload,
            owner=parent.owner,
            actor=parent.actor,
            space=parent.space,
            depth=depth,
            parent=parent.id,
            id=child_event_id(parent, sink, index) if index is not None else None,
            root=parent.root_id,
            trace=self.delivery_trace(parent, sink),
        )
        if depth > self.config.delivery.max_depth:
            self.record_audit(
                AuditEntry.new(
                    AuditKind.DEPTH_EXCEEDED,
                    f"Event {event.type} raised while handling {parent.id} was dropped: the "
                    f"chain is {depth} events deep, more than delivery.max_depth = "
                    f"{self.config.delivery.max_depth}.",
                    event_id=parent.id,
                )
            )
            log.warning("dropped %s at depth %d (max_depth exceeded)", event.type, depth)
            return event.id
        await self.journal.append(event, check_duplicate=index is not None)
        return event.id

    def _check_running(self) -> None:
        if not self._started or self._stopping or self._journal is None:
            raise RuntimeClosed("The runtime is not running; start it before raising events.")

    def _on_commit(self, events: list[Event], flags: list[bool]) -> None:
        if self._dispatcher is not None and not getattr(self._store, "shared", False):
            self._dispatcher.on_commit(events, flags)

    def on_event(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener(event, sink_names)` for each routed event; returns an unsubscribe.

        A listener that raises is logged once and skipped; routing goes on."""
        return self.hooks.on_event(listener)

    def on_outcome(self, listener: OutcomeListener) -> Callable[[], None]:
        """Call `listener(event, outcome)` when a sink finishes with an event.

        A listener that raises is logged once and skipped; delivery goes on."""
        return self.hooks.on_outcome(listener)

    async def call_method(self, method: str, params: Any = None) -> Any:
        """Call a method script's method (`script.method`, or a `method` one script has).

        The name SyncRuntime and Client use too; `runtime.methods` has the finer forms."""
        return await self.methods.call_name(method, params)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until everything emitted so far is journaled, routed and handled by its sinks."""
        async with asyncio.timeout(timeout):
            await self.flush()
            while self._dispatcher is not None and self._dispatcher.pending:
                await asyncio.sleep(0)
            await self.delivery.wait_idle(timeout)

    # -- what a sink may ask of the runtime (SinkHost) --------------------------------------

    def record_audit(self, entry: AuditEntry) -> None:
        """Write an audit entry (committed with the next batch); `audit_entries` reads them."""
        self.journal.audit(entry)

    def audit(self, entry: AuditEntry) -> None:
        """Deprecated alias of `record_audit`: elsewhere `audit` read the log, so a write got
        a name of its own."""
        warn_renamed("Runtime.audit(entry)", "Runtime.record_audit(entry)")
        self.record_audit(entry)

    def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None:
        """What a sink printed: one log line each, named after the sink (`knot serve` shows it)."""
        log_output(f"knot.sink.{sink}", sink, lines)

    @property
    def script_pool(self) -> WorkerPool:
        """The sandbox workers of this runtime's script sinks: made on first use, so a
        runtime without script sinks starts no worker process."""
        if self._script_pool is None:
            settings, redact = self.config.scripts, self.script_libraries.secrets.redact_message
            self._script_pool = WorkerPool(
                size=pool_size(settings), memory_mb=settings.memory_mb, redact=redact
            )
        return self._script_pool

    async def sink_secret(self, sink: str) -> str:
        """The signing secret of a sink defined without one: generated once, then kept."""
        return await self.registry.secret(sink)

    # -- sinks ----------------------------------------------------------------------------

    async def add_sink(self, item: SinkSpec | Sink | Mapping[str, Any]) -> SinkSpec:
        """Add (or replace) a sink; sinks given as data are persisted in the store."""
        self._check_running()
        return await self.registry.add(item)

    async def update_sink(self, name: str, changes: Mapping[str, Any]) -> SinkSpec:
        return await self.registry.change(name, changes)

    async def remove_sink(self, name: str, *, reason: str = "removed by request") -> SinkSpec:
        return await self.registry.delete(name, reason=reason)

    def sinks(self) -> list[SinkStatus]:
        return self.registry.statuses()

    def sink(self, name: str) -> Sink:
        return self.registry.sink(name)

    async def flush(self) -> None:
        """Wait until everything written so far (events, cursors, audit) is committed."""
        await self.journal.call(lambda store: None)
        await caught_up(self.store)


def _started(part: T | None) -> T:
    """A core part of a running runtime (None once it stopped, or before it started)."""
    if part is None:
        raise RuntimeClosed("The runtime is not running.")
    return part
