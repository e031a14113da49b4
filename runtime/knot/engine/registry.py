"""The sink registry: the one place sinks are added, replaced and removed, from any source.

Scripts, knot.toml, the API and in-process callers all define sinks; the registry keeps names
unique across them, builds and starts the sink objects, and keeps the router and the delivery
engine in step. A replaced sink keeps its queue, so events waiting for it survive a reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .._audit import AuditEntry, AuditKind
from .._events import Event
from .._exceptions import NotFound, SinkError
from .._json import JSONObject
from .._sinkspec import SinkOrigin, SinkSpec
from ..sinks.base import Sink, SinkHost
from .delivery import DeliveryEngine
from .router import Router
from .storage import Storage
from .worker import SinkWorker

__all__ = ["KV_SINKS", "KV_SINK_SECRETS", "SinkGate", "SinkRegistry", "SinkStatus"]

log = logging.getLogger("knot.sinks")
KV_SINKS = "sinks"  # sinks created at run time (origin API), kept across restarts
KV_SINK_SECRETS = "sink_secrets"  # generated webhook secrets, stable across restarts


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """A snapshot of one sink for listings."""

    spec: SinkSpec
    pending: int | None  # None: not known (a broken sink's patterns are not known)
    delivered: int
    failed: int
    dropped: int
    retries: int
    last_error: str
    problem: str  # why the current definition is not in use ("" when it is)
    extra: JSONObject

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> JSONObject:
        return {
            **self.spec.to_dict(redact=True),
            "pending": self.pending,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "retries": self.retries,
            "last_error": self.last_error,
            "problem": self.problem,
            **self.extra,
        }


class SinkGate(Protocol):
    """Where sinks run when several runtimes share one journal (the cluster's ownership)."""

    def holds(self, spec: SinkSpec) -> bool:
        """Whether this runtime serves `spec` now; the others are known here but parked."""
        ...

    def parked(self, spec: SinkSpec) -> None:
        """Told about a sink that is defined here but served elsewhere (or by nobody yet)."""
        ...

    def holder(self, spec: SinkSpec) -> str:
        """Which runtime serves `spec` (for listings); "" for none yet."""
        ...


class SinkRegistry:
    def __init__(
        self,
        router: Router,
        delivery: DeliveryEngine,
        host: SinkHost,
        *,
        build: Callable[[SinkSpec], Sink],
        new_secret: Callable[[], str],
        cursors: dict[str, int] | None = None,
        backlog: Callable[[str, int, int], Iterable[Event]] | None = None,
        gate: SinkGate | None = None,
    ) -> None:
        # The sink types and their secrets' format are the sinks package's business: the
        # runtime hands their factory in, and the engine knows only the Sink interface.
        self._build = build
        self._new_secret = new_secret
        self._router = router
        self._delivery = delivery
        self._host = host
        self._resume = dict(cursors or {})
        self._backlog = backlog
        self._specs: dict[str, SinkSpec] = {}
        self._problems: dict[str, tuple[SinkSpec | None, str]] = {}
        self.gate = gate  # None: every sink runs here (one runtime, its own store)
        self._parked: dict[str, SinkSpec | Sink] = {}  # defined here, served elsewhere

    @property
    def delivery(self) -> DeliveryEngine:
        return self._delivery

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self, origin: SinkOrigin | None = None) -> list[str]:
        return [n for n, s in self._specs.items() if origin is None or s.origin is origin]

    def spec(self, name: str) -> SinkSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise NotFound(f"There is no sink named {name!r}.", what=name) from None

    def sink(self, name: str) -> Sink:
        worker = self._delivery.workers.get(name)
        if worker is None:
            raise NotFound(f"There is no sink named {name!r}.", what=name)
        return worker.sink

    def check(self, spec: SinkSpec) -> Sink:
        """Build (but do not start) the sink a spec describes; raise SinkError if it cannot be."""
        existing = self._specs.get(spec.name)
        if existing is not None and existing.origin is not spec.origin:
            raise SinkError(
                f"A sink named {spec.name!r} already exists ({_where(existing)}); "
                "pick another name.",
                sink=spec.name,
            )
        return self._build(spec)

    async def install(self, item: SinkSpec | Sink) -> SinkWorker | None:
        """Add a sink, or replace the one of the same name and origin (keeping its queue).

        A sink that had progress in an earlier run gets its undelivered events back, in order.
        """
        sink = item if isinstance(item, Sink) else self.check(item)
        spec = sink.spec
        if isinstance(item, Sink):
            existing = self._specs.get(spec.name)
            if existing is not None and existing.origin is not spec.origin:
                raise SinkError(
                    f"A sink named {spec.name!r} already exists ({_where(existing)}).",
                    sink=spec.name,
                )
        if self.gate is not None and not self.gate.holds(spec):
            self._park(item if isinstance(item, Sink) else spec)
            return None
        await sink.start(self._host)
        delivery = self._delivery
        cursor = None if spec.name in delivery.workers else self._resume.get(spec.name)
        backlog: list[Event] = []
        if cursor is not None and self._backlog is not None and cursor < delivery.last_routed:
            # Read before anything routes to the sink: when the store fails here (NATS
            # re-electing a leader), the sink is neither attached nor routed, so new events
            # cannot reach it ahead of the backlog it never got; the caller may try again.
            try:
                backlog = list(self._backlog(spec.name, cursor, delivery.last_routed))
            except BaseException:
                await sink.close()
                raise
        # No await from here on: routing cannot interleave with the backlog being queued.
        self._resume.pop(spec.name, None)
        worker = delivery.attach(sink, cursor=cursor)
        self._specs[spec.name] = spec
        self._problems.pop(spec.name, None)
        if spec.active and sink.routed:
            self._router.set(spec.name, spec.events, owner=spec.owner)
        else:
            self._router.discard(spec.name)
        restored = [e for e in backlog if self._router.accepts(spec.name, e)]
        for event in restored:
            delivery.restore(worker, event)
        if restored:
            log.info(
                "%s: resuming %d undelivered events from the journal", spec.name, len(restored)
            )
            delivery.resumed(restored)
        return worker

    def _park(self, item: SinkSpec | Sink) -> None:
        spec = item.spec if isinstance(item, Sink) else item
        self._specs[spec.name] = spec
        self._problems.pop(spec.name, None)
        self._parked[spec.name] = item
        self._router.discard(spec.name)
        assert self.gate is not None
        self.gate.parked(spec)

    def parked(self) -> list[str]:
        return sorted(self._parked)

    async def claim(self, name: str, cursor: int | None) -> bool:
        """Serve a parked sink here from `cursor` (read from the store just now)."""
        item = self._parked.pop(name, None)
        if item is None:
            return False
        if cursor is not None:
            self._resume[name] = cursor
        gate, self.gate = self.gate, None  # this one install runs here whatever the gate says
        try:
            await self.install(item)
        except BaseException:
            if name not in self._delivery.workers:  # nothing of it runs: parked as before
                self._parked[name] = item
            raise
        finally:
            self.gate = gate
        return True

    async def release(self, name: str, *, grace: float = 0.0) -> None:
        """Stop serving a sink here and park it (another runtime takes it over); everything
        written before returns is committed, so the next holder reads the latest cursor."""
        spec = self._specs.get(name)
        if spec is None or name in self._parked:
            return
        self._router.discard(name)
        sink = await self._delivery.release(name, grace=grace)
        self._resume.pop(name, None)
        # A method's sink is made by the method service, not from its spec: keep the object.
        keep = sink is not None and spec.origin is SinkOrigin.METHOD
        self._parked[name] = sink if keep and sink is not None else spec
        await self._delivery.journal.call(lambda store: None)

    async def remove(self, name: str, *, reason: str) -> SinkSpec:
        self._parked.pop(name, None)
        self._resume.pop(name, None)
        spec = self._specs.pop(name, None)
        self._problems.pop(name, None)
        if spec is None:
            raise NotFound(f"There is no sink named {name!r}.", what=name)
        self._router.discard(name)
        await self._delivery.detach(name, reason=reason)
        return spec

    async def update(self, name: str, changes: dict[str, Any]) -> SinkSpec:
        """Change fields of a sink (same origin rules as install)."""
        current = self.spec(name)
        merged = {**current.to_dict(redact=False), **changes, "name": name}
        merged.pop("origin", None)
        spec = SinkSpec.from_dict(merged, origin=current.origin)
        await self.install(spec)
        return spec

    # -- sinks created at run time: persisted in the store ---------------------------------

    def stored_specs(self) -> list[SinkSpec]:
        """The sinks an earlier run created through the API (start-up only)."""
        specs = []
        for raw in self._delivery.journal.store.kv_all(KV_SINKS).values():
            try:
                specs.append(SinkSpec.from_dict(raw, origin=SinkOrigin.API))
            except SinkError as exc:  # a stored sink gone bad must not stop start-up
                log.error("a stored sink could not be loaded: %s", exc.message)
        return specs

    async def add(self, item: SinkSpec | Sink | Mapping[str, Any]) -> SinkSpec:
        """Install a sink; one given as data is an API sink and is persisted."""
        if isinstance(item, Mapping):
            item = SinkSpec.from_dict(item, origin=SinkOrigin.API)
        await self.install(item)
        spec = item.spec if isinstance(item, Sink) else item
        await self._persist(spec)
        return spec

    async def change(self, name: str, changes: Mapping[str, Any]) -> SinkSpec:
        spec = await self.update(name, dict(changes))
        await self._persist(spec)
        return spec

    async def delete(self, name: str, *, reason: str) -> SinkSpec:
        spec = await self.remove(name, reason=reason)
        if spec.origin is SinkOrigin.API:

            def forget(store: Storage) -> None:
                store.kv_delete(KV_SINKS, name)
                store.kv_delete(KV_SINK_SECRETS, name)  # a new sink of this name gets a new one

            await self._delivery.journal.call(forget)
        return spec

    async def secret(self, sink: str) -> str:
        """The signing secret of a sink defined without one: generated once, then kept."""
        journal = self._delivery.journal
        stored = journal.store.kv_all(KV_SINK_SECRETS).get(sink, {}).get("secret")
        if isinstance(stored, str) and stored:
            return stored
        secret = self._new_secret()
        await journal.call(lambda s: s.kv_put(KV_SINK_SECRETS, sink, {"secret": secret}))
        return secret

    async def _persist(self, spec: SinkSpec) -> None:
        if spec.origin is SinkOrigin.API:
            data = spec.to_dict(redact=False)
            await self._delivery.journal.call(lambda s: s.kv_put(KV_SINKS, spec.name, data))

    def why_not(self, name: str, event: Event) -> str | None:
        """Why sink `name` would not get `event` (Sky's `_rids` aside), as a sentence; None
        when it would."""
        spec = self._specs.get(name)
        if spec is None:
            problem = self.problem(name)
            if problem:
                return f"The sink {name} does not run: {problem.splitlines()[0]}"
            return f"There is no sink named {name!r}."
        if not spec.active or name not in self._router:
            return f"The sink {name} is inactive."
        if not self._router.accepts(name, event._replace(rids=None)):
            whose = f"; and only events of {spec.owner}" if spec.owner else ""
            takes = f"its events: {spec.events_text}{whose}"
            return f"The sink {name} does not take this event, {event.type} ({takes})."
        return None

    def set_problem(self, name: str, spec: SinkSpec | None, problem: str) -> None:
        """Record why a definition of `name` is not in use (a broken save keeps the old one)."""
        self._problems[name] = (spec, problem)

    def clear_problem(self, name: str) -> None:
        self._problems.pop(name, None)

    def problem(self, name: str) -> str:
        entry = self._problems.get(name)
        return entry[1] if entry else ""

    def statuses(self) -> list[SinkStatus]:
        out: list[SinkStatus] = []
        workers = self._delivery.workers
        for name, spec in self._specs.items():
            out.append(_status(spec, workers.get(name), self.problem(name)))
        for name, (maybe_spec, problem) in self._problems.items():
            if name in self._specs:
                continue
            # Broken from its first load: list it so the user sees why it does not run, and
            # (when it ran before this start) how many events wait for it in the journal.
            placeholder = maybe_spec or SinkSpec(name=name, type="?", events=())
            status = _status(replace(placeholder, active=False), None, problem)
            if name in self._resume:
                status = replace(status, pending=self._waiting(name, placeholder))
            out.append(status)
        if self.gate is not None:  # a cluster: say which node serves each
            gate = self.gate
            out = [replace(s, extra={**s.extra, "node": gate.holder(s.spec)}) for s in out]
        return sorted(out, key=lambda s: s.name)

    def _waiting(self, name: str, spec: SinkSpec) -> int | None:
        """Events journaled after the stored cursor of a sink that is not running, that its
        patterns take (None: its patterns are not known, its `# events:` header is broken)."""
        if not spec.events:
            return None
        store = self._delivery.journal.store
        return store.count_backlog(name, self._resume[name], spec.events, owner=spec.owner)

    async def install_at_start(
        self, config: Iterable[SinkSpec], *, where: Mapping[str, str] | None = None
    ) -> None:
        """Install knot.toml's sinks (see `sync`), then those an earlier run created through
        the API; one that cannot start is listed with its problem, and the rest run."""
        await self.sync(SinkOrigin.CONFIG, config, reason="", where=where)
        for spec in self.stored_specs():
            try:
                await self.install(spec)
            except Exception as exc:
                self.set_problem(spec.name, spec, str(exc))
                log.error("%s", exc)

    async def sync(
        self,
        origin: SinkOrigin,
        specs: Iterable[SinkSpec],
        *,
        reason: str,
        where: Mapping[str, str] | None = None,
    ) -> None:
        """Make the sinks of one origin exactly `specs` (knot.toml's, at start and on change).

        A spec that cannot be a sink (a webhook without a url) is listed with its problem,
        logged and audited ("Configuration Rejected"), named by `where` (`knot.toml:9`); the
        others are installed all the same.
        """
        wanted = {s.name: s for s in specs}
        for name in self.names(origin):
            if name not in wanted:
                await self.remove(name, reason=reason)
        for name, spec in wanted.items():
            if self._specs.get(name) != spec:
                try:
                    await self.install(spec)
                except SinkError as exc:
                    at = (where or {}).get(name)
                    message = f"{at}: {exc.message}" if at else exc.message
                    said = self._problems.get(name)
                    if said is not None and said[0] == spec and said[1].endswith(exc.message):
                        continue  # said already: an unchanged table is not news at a reload
                    self.set_problem(name, spec, message)
                    log.error("%s", message)
                    entry = AuditEntry.new(AuditKind.CONFIG_REJECTED, message, sink=name)
                    self._host.record_audit(entry)


def _status(spec: SinkSpec, worker: SinkWorker | None, problem: str) -> SinkStatus:
    if worker is None:
        return SinkStatus(spec, 0, 0, 0, 0, 0, "", problem, {})
    st = worker.stats
    return SinkStatus(
        spec,
        worker.pending,
        st.delivered,
        st.failed,
        st.dropped,
        st.retries,
        st.last_error,
        problem,
        worker.sink.status(),
    )


def _where(spec: SinkSpec) -> str:
    return {
        SinkOrigin.SCRIPT: "a script in scripts/sinks/",
        SinkOrigin.CONFIG: "a [[sinks]] table in knot.toml",
        SinkOrigin.API: "created through the API",
        SinkOrigin.BUILTIN: "created in-process",
        SinkOrigin.METHOD: "a subscribed method in scripts/methods/",
    }[spec.origin]
