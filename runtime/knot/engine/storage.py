"""The storage seam: what the engine needs from durable storage, as one Protocol.

The engine keeps four things durable: the journal of events (append-only, ordered by `seq`),
each sink's progress (one cursor, plus the events skipped for it: dropped or given up), the
audit log, and a key-value area by scope (sinks made through the API, users, channels, spaces,
secrets). `Storage` is that, and nothing of how: the embedded SQLite store (`store.py`) is one
implementation; a distributed one (NATS JetStream) plugs in as another, and the engine's
contract tests (`tests/test_storage_contract.py`) run against every backend.

Threads: the writer methods are called by the journal's one writer thread, in order, each
`write` committing its batches atomically; the reads may be called from any thread at any
time and see only committed data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._audit import AuditEntry
from .._events import Event
from .._exceptions import StoreError
from .._json import JSONObject
from .._patterns import Pattern

__all__ = ["SharedStorage", "Storage", "WriteBatch"]


@dataclass
class WriteBatch:
    """Everything the writer commits in one transaction."""

    events: list[Event] = field(default_factory=list)
    check_duplicates: bool = False
    audits: list[AuditEntry] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    skips: list[tuple[str, int, str]] = field(default_factory=list)  # (sink, seq, reason)
    forget: list[str] = field(default_factory=list)  # sinks whose progress is deleted

    def __bool__(self) -> bool:
        return bool(self.events or self.audits or self.cursors or self.skips or self.forget)


class Storage(Protocol):
    """Durable storage for one runtime's journal, sink progress, audit log and records."""

    @property
    def path(self) -> Path:
        """Where this storage keeps its local state (the runtime's own files go beside it)."""
        ...

    # -- the writer (the journal's writer thread only) ---------------------------------

    def write(self, batches: Sequence[WriteBatch]) -> list[bool]:
        """Commit `batches` in order, atomically; per event, whether it was new (an event
        whose id is already journaled is not written again when its batch checks)."""
        ...

    def prune(self, *, keep_events: int, keep_audit: int, active_sinks: Iterable[str]) -> int:
        """Forget events every active sink is past, beyond the newest `keep_events`, and
        audit entries beyond the newest `keep_audit`; return how many events went."""
        ...

    def kv_put(self, scope: str, key: str, value: JSONObject) -> None: ...

    def kv_delete(self, scope: str, key: str) -> bool: ...

    # -- start-up -----------------------------------------------------------------------

    def head_seq(self) -> int:
        """The highest `seq` journaled (0 when empty): the next event gets one more."""
        ...

    def load_cursors(self) -> dict[str, int]:
        """Each sink's cursor: every event for it up to that `seq` is handled."""
        ...

    def backlog(self, sink: str, after: int, upto: int) -> Iterator[Event]:
        """Journal events in (after, upto], oldest first, minus those skipped for `sink`."""
        ...

    # -- reads (any thread) -------------------------------------------------------------

    def kv_all(self, scope: str) -> dict[str, JSONObject]: ...

    def recent_events(
        self,
        *,
        pattern: Pattern | None = None,
        limit: int = 50,
        owner: str | None = None,
        after_seq: int = 0,
    ) -> list[Event]: ...

    def get_event(self, event_id: str) -> Event | None: ...

    def audit_entries(
        self, *, limit: int = 50, sink: str | None = None, sinks: Collection[str] | None = None
    ) -> list[AuditEntry]: ...

    def counts(self) -> JSONObject:
        """`{"events", "head_seq", "audit"}`: for status pages."""
        ...

    # -- lifecycle ----------------------------------------------------------------------

    def unusable(self, exc: Exception) -> StoreError:
        """`exc`, met while loading from this storage, as one clear StoreError."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SharedStorage(Storage, Protocol):
    """A storage several runtimes share (the NATS JetStream one): each runtime routes every
    event of the zone from `start_feed`, not only those it committed itself."""

    shared: bool

    def start_feed(
        self, on_events: Callable[[list[Event]], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Call `on_events` on `loop` with every event journaled after `head_seq()`, in order."""
        ...

    def caught_up(self) -> bool:
        """Whether the feed has delivered every event this runtime journaled."""
        ...

    def cursor(self, sink: str) -> int | None:
        """`sink`'s cursor as stored now (a runtime taking the sink over reads this)."""
        ...
