"""The reading half of `Runtime`: events, audit entries, deliveries and traces from the store.

Kept apart so that `_runtime.py` stays the wiring; every read goes to a thread, so the event
loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, cast

from ._audit import AuditEntry
from ._events import Event
from ._patterns import Pattern
from ._replay import ReplayReport
from .engine.delivery import DeliveryEngine
from .engine.eventquery import EventQuery
from .engine.storage import Storage
from .observe.trace import Deliveries, Trace, deliveries_of, trace_of
from .scripts.replay import Progress, ReplayHost, replay_sink

__all__ = ["Reads"]


class Reads:
    """Mixed into Runtime, which provides `store` and `_delivery`."""

    _delivery: DeliveryEngine | None

    if TYPE_CHECKING:  # what the host provides (declared for the type checker only)

        @property
        def store(self) -> Storage: ...

        async def flush(self) -> None: ...

    async def events(
        self,
        pattern: str | None = None,
        *,
        limit: int = 50,
        owner: str | None = None,
        after: int = 0,
    ) -> list[Event]:
        """The newest `limit` journaled events, oldest first (or, `after` a seq, the first
        `limit` after it); `pattern` is one sink pattern."""
        parsed = Pattern.parse(pattern) if pattern else None
        return await asyncio.to_thread(
            self.store.recent_events, pattern=parsed, limit=limit, owner=owner, after_seq=after
        )

    async def find_events(self, query: EventQuery) -> list[Event]:
        """The newest `query.limit` journaled events matching `query`, newest first."""
        return await asyncio.to_thread(self.store.find_events, query)

    async def get_event(self, event_id: str) -> Event | None:
        return await asyncio.to_thread(self.store.get_event, event_id)

    async def deliveries(self, event_id: str) -> Deliveries:
        """Every recorded delivery attempt of an event, per sink (NotFound: no such event)."""
        pending = await self._settle()
        return await asyncio.to_thread(deliveries_of, self.store, event_id, pending)

    async def trace(self, event_id: str) -> Trace:
        """The tree of events caused by the root of `event_id`'s chain, with their deliveries."""
        pending = await self._settle()
        return await asyncio.to_thread(trace_of, self.store, event_id, pending)

    async def replay(
        self,
        sink: str,
        *,
        since: str | datetime | None = None,
        from_seq: int | None = None,
        events: str | None = None,
        limit: int = 100,
        progress: Progress | None = None,
    ) -> ReplayReport:
        """Run script sink `sink`'s current version again on journaled events, with nothing
        delivered or journaled, and compare each run with what ran then.

        The events are those the sink takes (or those matching the pattern `events`): from
        journal position `from_seq`, or since `since` (a time, ISO 8601 text, or a time ago
        such as "7d"), else the newest; at most `limit` (1-10,000). `progress(done, total)`
        is called as they run. NotFound for an unknown sink; InvalidInput for a sink that
        runs no script or a method script's, and for bad arguments.
        """
        await self._settle()
        host = cast("ReplayHost", self)  # the Runtime this is mixed into
        return await replay_sink(
            host,
            sink,
            since=since,
            from_seq=from_seq,
            events=events,
            limit=limit,
            progress=progress,
        )

    async def _settle(self) -> dict[str, set[int]]:
        """Commit the attempts recorded so far; what is still queued or in flight."""
        if self._delivery is not None:
            self._delivery.flush_attempts()
        pending = self._pending()
        await self.flush()
        return pending

    def _pending(self) -> dict[str, set[int]]:
        """Per sink, the journal positions still queued or in flight (a snapshot)."""
        workers = self._delivery.workers if self._delivery is not None else {}
        return {
            name: {e.seq for e in (*w.inflight, *w.queue)} for name, w in workers.items() if w.busy
        }

    async def audit_entries(
        self, *, limit: int = 50, sink: str | None = None, sinks: Collection[str] | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` audit entries: of `sink`, of any of `sinks`, or all of them."""
        return await asyncio.to_thread(
            self.store.audit_entries, limit=limit, sink=sink, sinks=sinks
        )
