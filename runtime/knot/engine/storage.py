"""The storage seam: what the engine needs from durable storage, as one Protocol.

The engine keeps five things durable: the journal of events (append-only, ordered by `seq`,
with each event's causation: `chain` finds the events raised under one root), each sink's
progress (one cursor, plus the events skipped for it: dropped or given up), the history of
delivery attempts (`attempts.Attempt`, bounded by the same retention as the journal, with
what each script run did and which version ran, for replays), the
audit log, and a key-value area by scope (sinks made through the API, users, channels,
spaces, secrets, and each script's `knot.kv`, whose keys may expire: `ExpiringKv`). `Storage`
is that, and nothing of how: the embedded SQLite store (`store.py`) is one implementation; a
distributed one (NATS JetStream) plugs in as another, and the engine's contract tests
(`tests/test_storage_contract.py`) run against every backend.

Threads: the writer methods are called by the journal's one writer thread, in order, each
`write` committing its batches atomically; the reads may be called from any thread at any
time and see only committed data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._audit import AuditEntry
from .._events import Event
from .._exceptions import StoreError
from .._json import JSONObject
from .._patterns import Pattern
from .attempts import Attempt, AttemptBatch
from .eventquery import EventQuery

__all__ = ["MAX_KV_INTEGER", "ExpiringKv", "KvItem", "SharedStorage", "Storage", "WriteBatch"]

MAX_KV_INTEGER = 2**63 - 1
"""`kv_incr` keeps values within a signed 64-bit integer, which every backend can hold."""


@dataclass(frozen=True, slots=True)
class KvItem:
    """A live key's value (any JSON value) and when it expires (epoch seconds; None: never)."""

    value: Any
    expires: float | None = None


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


class ExpiringKv(Protocol):
    """Keys whose values are any JSON value and may expire: scripts' `knot.kv`, a scope each.

    A key whose `expires` (epoch seconds) is not after `now` is gone: no read sees it, a write
    starts it afresh, and `prune` forgets it. Every operation is atomic. Writes run on the
    journal's writer thread (`Runtime` hands them over with `journal.call`), in order with
    everything else it writes; so do reads that must see those writes.
    """

    def kv_get(self, scope: str, key: str, *, now: float) -> KvItem | None: ...

    def kv_set(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        expires: float | None,
        now: float,
        max_keys: int,
    ) -> None:
        """Write `key`; a key that is new (or expired) while `scope` holds `max_keys` live
        keys raises KvError(reason="max_keys") and changes nothing."""
        ...

    def kv_incr(self, scope: str, key: str, amount: int, *, now: float, max_keys: int) -> int:
        """Add `amount` to an integer value (a missing key counts as 0, and is made without
        an expiry); an existing expiry is kept. KvError: "not_integer" when the value is not an
        integer, "overflow" past MAX_KV_INTEGER either way, "max_keys" as for kv_set."""
        ...

    def kv_delete(self, scope: str, key: str) -> bool:
        """Forget `key`; whether a live one (or a record) was there."""
        ...

    def kv_keys(self, scope: str, *, now: float) -> list[str]:
        """The live keys of `scope`, sorted."""
        ...

    def kv_clear(self, scope: str) -> int:
        """Forget every key of `scope`; how many live ones there were."""
        ...


class Storage(ExpiringKv, Protocol):
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
        delivery attempts), audit entries beyond the newest `keep_audit`, and expired keys;
        return how many events went."""
        ...

    def kv_put(self, scope: str, key: str, value: JSONObject) -> None:
        """Write a record (a key that never expires)."""
        ...

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

    def count_backlog(
        self, sink: str, after: int, patterns: Sequence[Pattern], *, owner: str = ""
    ) -> int:
        """How many journal events after `after` would go to a sink with `patterns` (and
        `owner`), minus those skipped for it: what waits for a sink that does not run."""
        ...

    # -- reads (any thread) -------------------------------------------------------------

    def kv_all(self, scope: str) -> dict[str, JSONObject]:
        """Every live key of `scope` and its value."""
        ...

    def recent_events(
        self,
        *,
        pattern: Pattern | None = None,
        limit: int = 50,
        owner: str | None = None,
        after_seq: int = 0,
    ) -> list[Event]: ...

    def find_events(self, query: EventQuery) -> list[Event]:
        """The newest `query.limit` events that match every filter `query` sets, newest
        first (the dashboard's events page)."""
        ...

    def get_event(self, event_id: str) -> Event | None: ...

    def chain(self, root: str, *, limit: int = 1000) -> list[Event]:
        """The first `limit` events whose chain starts at the event `root` (every event some
        sink raised while handling it or one of its descendants), oldest first."""
        ...

    def attempts(self, seqs: Collection[int]) -> list[Attempt]:
        """Every recorded delivery attempt on the events at `seqs`, oldest first."""
        ...

    def sink_attempts(self, sink: str, after: int, upto: int) -> list[Attempt]:
        """Every recorded attempt of `sink` on the events in (after, upto], oldest first,
        with what it did (version, output, emits, directives, result or error): what
        `knot replay` compares a script's current version with."""
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

    def payload_limit(self) -> int:
        """The largest event payload (bytes of JSON) this storage can journal."""
        ...

    def cursor(self, sink: str) -> int | None:
        """`sink`'s cursor as stored now (a runtime taking the sink over reads this)."""
        ...
