"""The storage seam: what the engine needs from durable storage, as one Protocol.

The engine keeps five things durable: the journal of events (append-only, ordered by `seq`,
with each event's causation: `chain` finds the events raised under one root), each sink's
progress (one cursor, plus the events skipped for it: dropped or given up), the history of
delivery attempts (`attempts.Attempt`, bounded by the same retention as the journal), the
audit log, and a key-value area by scope (sinks made through the API, users, channels,
spaces, secrets). `Storage` is that, and nothing of how: the embedded SQLite store
(`store.py`) is one
implementation; a distributed one (NATS JetStream) plugs in as another, and the engine's
contract tests (`tests/test_storage_contract.py`) run against every backend.

Threads: the writer methods are called by the journal's one writer thread, in order, each
`write` committing its batches atomically; the reads may be called from any thread at any
time and see only committed data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .._audit import AuditEntry
from .._events import Event
from .._exceptions import StoreError
from .._json import JSONObject
from .._patterns import Pattern
from .attempts import Attempt, AttemptBatch

__all__ = ["Storage", "WriteBatch"]


@dataclass
class WriteBatch:
    """Everything the writer commits in one transaction."""

    events: list[Event] = field(default_factory=list)
    check_duplicates: bool = False
    audits: list[AuditEntry] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    skips: list[tuple[str, int, str]] = field(default_factory=list)  # (sink, seq, reason)
    forget: list[str] = field(default_factory=list)  # sinks whose progress is deleted
    attempts: list[AttemptBatch] = field(default_factory=list)  # in the order they ran

    def __bool__(self) -> bool:
        return bool(
            self.events or self.audits or self.cursors or self.skips or self.forget or self.attempts
        )


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
        """Forget events every active sink is past, beyond the newest `keep_events` (and their
        delivery attempts), and audit entries beyond the newest `keep_audit`; return how many
        events went."""
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

    def chain(self, root: str, *, limit: int = 1000) -> list[Event]:
        """The first `limit` events whose chain starts at the event `root` (every event some
        sink raised while handling it or one of its descendants), oldest first."""
        ...

    def attempts(self, seqs: Collection[int]) -> list[Attempt]:
        """Every recorded delivery attempt on the events at `seqs`, oldest first."""
        ...

    def skips(self, seqs: Collection[int]) -> list[tuple[str, int, str]]:
        """`(sink, seq, reason)` for each event at `seqs` a sink dropped or gave up."""
        ...

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
