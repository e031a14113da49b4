"""`knot replay`: a script sink's current version on journaled events, compared with what ran.

`replay_sink` picks the journal's events the sink takes (its patterns, or `events`; only its
owner's events for a user-owned sink; never events Sky's `_rids` kept from it), from `from_seq`,
from `since`, or else the newest `limit`; runs the script the runtime has loaded now on each,
in a sandbox worker of its own on a `ScratchHost` (nothing delivered, nothing journaled, no
real HTTP, `knot.kv` in a scratch copy of the script's keys that carries from one event to the
next), and compares each run with the sink's last recorded attempt on that event
(`Storage.sink_attempts`) and the events that attempt raised (the journal's, found by their
derived ids). See `knot._replay` for what comes back.

Method sinks are refused: a method script keeps module state in its long-running worker, and
what a call did depended on the state the calls before it had left. A second worker replaying
the calls would start from a fresh module, so its differences would say as much about that
state as about the change to the script.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from .._config import Config
from .._events import Event, child_event_id
from .._exceptions import InvalidInput
from .._patterns import Pattern
from .._replay import MAX_SEQ, ReplayedEvent, ReplayReport, ReplayStatus, Transcript
from ..engine.attempts import EFFECTS_KEPT, Effect, said
from ..engine.journal import Journal
from ..engine.registry import SinkRegistry
from ..engine.storage import KvItem, Storage
from ..scriptlib.service import ScriptRef
from ..sinks.method import MethodSink
from ..sinks.script import ScriptSink
from .scratchhost import ScratchHost

__all__ = ["MAX_LIMIT", "Progress", "ReplayHost", "parse_since", "replay_sink"]

MAX_LIMIT = 10_000  # events one replay runs
MAX_BYTES = 64 * 1024 * 1024  # of payloads one replay holds (the events it runs are read first)
PAGE = 1000  # journal positions read at once
CHUNK = 32  # events handed to the sandbox worker in one round trip
CHAINS_KEPT = 256  # chains of caused events a replay keeps read (see `_raised`)
GAPS = 16  # indices without an event after which a run's emits are taken to end

Progress = Callable[[int, int], None]
"""`progress(done, total)`: called as events are replayed."""


class ReplayHost(Protocol):
    """What a replay needs of a runtime."""

    @property
    def config(self) -> Config: ...

    @property
    def project(self) -> Path: ...

    @property
    def store(self) -> Storage: ...

    @property
    def registry(self) -> SinkRegistry: ...

    @property
    def journal(self) -> Journal: ...


_AGO = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, *, now: float | None = None) -> datetime:
    """`since` as a UTC time: an ISO 8601 date or time (UTC unless it says otherwise), or a
    time ago: `90s`, `30m`, `24h`, `7d`, `2w`."""
    found = _AGO.match(text)
    if found:
        seconds = int(found[1]) * _UNITS[found[2]]
        current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        try:
            return current - timedelta(seconds=seconds)
        except OverflowError:  # further back than a datetime goes: since the beginning
            return datetime.min.replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"The time {text[:80]!r} is not understood; give an ISO 8601 date or time "
            "(2026-11-25, 2026-11-25T13:00:00Z) or a time ago (30m, 24h, 7d, 2w)."
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


async def replay_sink(
    host: ReplayHost,
    name: str,
    *,
    since: str | datetime | None = None,
    from_seq: int | None = None,
    events: str | None = None,
    limit: int = 100,
    progress: Progress | None = None,
) -> ReplayReport:
    """Replay sink `name`'s current script on journaled events; see the module's docstring.

    Raises NotFound for an unknown sink, InvalidInput for a sink that runs no script (or a
    method script), both `since` and `from_seq`, a bad time, pattern or limit.
    """
    registry = host.registry
    problem = registry.problem(name).splitlines()[0] if registry.problem(name) else ""
    if name not in registry and problem:
        raise InvalidInput(
            f"The sink {name} does not run, so there is no version of it to replay: {problem}"
        )
    spec = registry.spec(name)  # NotFound when there is none
    sink = registry.sink(name)
    if isinstance(sink, MethodSink):
        raise InvalidInput(
            f"The sink {name} is a method script's method; replay takes script sinks "
            "(scripts/sinks/*.py). A method script keeps module state between calls, and a "
            "replay in a fresh worker would differ from what ran for that reason alone."
        )
    if not isinstance(sink, ScriptSink):
        raise InvalidInput(
            f"The sink {name} is a {spec.type} sink: it runs no script, so there is nothing "
            "to replay; replay takes script sinks (scripts/sinks/*.py)."
        )
    if since is not None and from_seq is not None:
        raise InvalidInput("Give either a time to replay since or a journal position, not both.")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"The limit must be between 1 and {MAX_LIMIT} events (not {limit}).")
    if from_seq is not None and not 0 <= from_seq <= MAX_SEQ:
        raise InvalidInput(f"The journal position must be from 0 to {MAX_SEQ} (not {from_seq}).")
    start = parse_since(since) if isinstance(since, str) else since
    patterns = (Pattern.parse(events),) if events else spec.events
    owner = spec.owner

    def takes(event: Event) -> bool:
        if event.rids is not None and name not in event.rids:
            return False
        return any(p.matches(event.type) for p in patterns)

    store = host.store
    chosen, cut = await _select(store, takes, owner, start, from_seq, limit)
    report_notes: list[str] = []
    if problem:
        report_notes.append(
            f"This is the version the runtime runs: the script's latest change does not load "
            f"({problem})."
        )
    if cut:
        report_notes.append(
            f"Only {len(chosen)} events were replayed: their payloads reached "
            f"{MAX_BYTES // 2**20} MiB, what one replay holds; replay the rest with a later "
            "--from or --since."
        )
    if not chosen:
        return ReplayReport(
            name, sink.version, notes=("No journaled event matched.", *report_notes)
        )
    records = await asyncio.to_thread(store.sink_attempts, name, chosen[0].seq - 1, chosen[-1].seq)
    last = {a.seq: a for a in records}  # oldest first: the last attempt on each stays
    ref = ScriptRef("sinks", name, sink.path)
    seed = await _seed(host, ref.namespace)
    scratch = ScratchHost(host.config, host.project, seed={ref.namespace: seed})
    replayer = ScriptSink(spec)
    replayer.worker_key = f"{name}.replay"
    await replayer.start(scratch)
    replayed: list[ReplayedEvent] = []
    requests = 0  # the HTTP requests runs made so far (none was sent)
    chains: dict[str, list[Event]] = {}
    max_depth = host.config.delivery.max_depth
    try:
        while len(replayed) < len(chosen):
            batch = chosen[len(replayed) : len(replayed) + CHUNK]
            runs = await _run(replayer, batch)
            notes = _requests(scratch, requests)
            requests = len(scratch.log.requests)
            emitted: dict[str, list[Effect]] = {}
            for child in scratch.emitted:
                emitted.setdefault(child.parent, []).append((child.type, said(child.payload)))
            scratch.emitted.clear()  # a long replay holds one batch's emits and output at most
            scratch.output.clear()
            raised = await asyncio.to_thread(_raised, store, batch, name, chains)
            for event, now in zip(batch, runs, strict=False):
                said_now = tuple(emitted.get(event.id, ()))
                told = notes.get(event.id, ())
                if said_now and event.depth + 1 > max_depth:
                    said_now = ()  # the runtime drops these: the record has none either
                    told += (f"its emits would be dropped (delivery.max_depth = {max_depth})",)
                if not now.failed:
                    now = replace(now, emitted=said_now[:EFFECTS_KEPT])
                attempt = last.get(event.seq)
                then = None
                if attempt is not None and attempt.version:
                    then = Transcript.of_attempt(attempt, raised.get(event.id, ()))
                replayed.append(ReplayedEvent.compare(event.to_dict(), then, now, told))
            if progress is not None:
                progress(len(replayed), len(chosen))
    finally:
        await replayer.close()
        await scratch.close()
    if requests:
        report_notes.append(
            f"{requests} HTTP request(s) were checked against http_allow "
            "but not sent; the script got a stand-in answer, so what it does with real "
            "answers may differ."
        )
    if any(e.status is ReplayStatus.NO_RECORD for e in replayed):
        report_notes.append(
            "Events with no record ran before this runtime recorded script versions, or the "
            "sink never had them (added later, a full queue, or still queued)."
        )
    return ReplayReport(name, sink.version, tuple(replayed), tuple(report_notes))


async def _run(sink: ScriptSink, batch: Sequence[Event]) -> list[Transcript]:
    """Run `batch` in order; a failed event ends its round trip, the rest go in the next."""
    out: list[Transcript] = []
    version = sink.version
    while len(out) < len(batch):
        answer = await sink.deliver_batch(batch[len(out) :])
        for result in answer.results:
            if result is None:
                out.append(Transcript(version))
                continue
            out.append(
                Transcript.of(
                    version,
                    output=result.output,
                    directives=((d.name, d.options) for d in result.directives),
                    result=result.value,
                )
            )
        if answer.failed_at is not None:
            error = answer.error or "failed"
            out.append(Transcript.of(version, output=answer.output, error=error))
    return out


def _requests(host: ScratchHost, seen: int) -> dict[str, tuple[str, ...]]:
    """Per event, a note for each HTTP request its run made after the first `seen`."""
    notes: dict[str, tuple[str, ...]] = {}
    for r in host.log.requests[seen:]:
        note = f"HTTP {r.method} {r.url} " + (f"refused: {r.error}" if r.error else "not sent")
        notes[r.event_id] = (*notes.get(r.event_id, ()), note)
    return notes


def _raised(
    store: Storage, events: Sequence[Event], sink: str, chains: dict[str, list[Event]]
) -> dict[str, tuple[Effect, ...]]:
    """Per event, what `sink` emitted while handling it, from the journal: the events of its
    chain whose ids derive from (event, sink, index), in the order they were emitted.

    `chains` caches each root's chain for the replay (events of one chain share it)."""
    found: dict[str, tuple[Effect, ...]] = {}
    for event in events:
        root = event.root_id
        if root not in chains:
            if len(chains) > CHAINS_KEPT:
                chains.clear()
            chains[root] = store.chain(root)
        children = {c.id: c for c in chains[root] if c.parent == event.id}
        mine: list[Effect] = []
        index = missing = 0
        # An emit that failed (a bad type) took an index too: look past a few gaps.
        while children and missing < GAPS and len(mine) < EFFECTS_KEPT:
            child = children.pop(child_event_id(event, sink, index), None)
            index += 1
            if child is None:
                missing += 1
                continue
            missing = 0
            mine.append((child.type, said(child.data)))
        if mine:
            found[event.id] = tuple(mine)
    return found


async def _seed(host: ReplayHost, scope: str) -> dict[str, KvItem]:
    """The script's live `knot.kv` keys now (read on the writer, in order with its writes)."""
    now = time.time()

    def read(store: Storage) -> dict[str, KvItem]:
        found: dict[str, KvItem] = {}
        for key in store.kv_keys(scope, now=now)[: host.config.scripts.kv_max_keys]:
            item = store.kv_get(scope, key, now=now)
            if item is not None:
                found[key] = item
        return found

    result: dict[str, KvItem] = await host.journal.call(read)
    return result


async def _select(
    store: Storage,
    takes: Callable[[Event], bool],
    owner: str,
    since: datetime | None,
    from_seq: int | None,
    limit: int,
) -> tuple[list[Event], bool]:
    """The events to replay, oldest first, and whether MAX_BYTES cut them short."""

    def page(after: int, size: int = PAGE) -> list[Event]:
        # after_seq=0 means "the newest" to recent_events; -1 asks from the start.
        return store.recent_events(limit=size, owner=owner or None, after_seq=after or -1)

    def forward(after: int) -> tuple[list[Event], bool]:
        found: list[Event] = []
        held = 0
        while len(found) < limit:
            events = page(after)
            if not events:
                break
            for event in filter(takes, events):
                held += _size(event)
                if held > MAX_BYTES:
                    return found, True
                found.append(event)
            after = events[-1].seq
        return found[:limit], False

    def backward() -> tuple[list[Event], bool]:
        first = page(0, 1)
        head = int(store.counts()["head_seq"])
        if not first:
            return [], False
        found: list[Event] = []
        held = 0
        hi = head
        while hi >= first[0].seq and len(found) < limit:
            lo = max(hi - PAGE, 0)
            chunk = [e for e in page(lo) if e.seq <= hi and takes(e)]
            for index in range(len(chunk) - 1, -1, -1):  # newest first, as far as they fit
                held += _size(chunk[index])
                if held > MAX_BYTES:
                    return (chunk[index + 1 :] + found)[-limit:], True
            found = chunk + found
            hi = lo
        return found[-limit:], False

    def at(when: datetime) -> int:
        """The last position before the first event at or after `when` (binary search on
        the journal: events are journaled in time order)."""
        first = page(0, 1)
        if not first:
            return 0
        lo, hi = first[0].seq, int(store.counts()["head_seq"]) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            found = page(mid - 1, 1)
            if found and _when(found[0]) < when:
                lo = found[0].seq + 1
            else:
                hi = mid
        return lo - 1

    def select() -> tuple[list[Event], bool]:
        if from_seq is not None:
            return forward(max(from_seq - 1, 0))
        if since is not None:
            return forward(at(since))
        return backward()

    return await asyncio.to_thread(select)


def _size(event: Event) -> int:
    return len(event.data_json) if event.data_json else 256


def _when(event: Event) -> datetime:
    try:
        return datetime.fromisoformat(event.ts).astimezone(UTC)
    except ValueError:  # never written by this runtime: treat it as old
        return datetime.min.replace(tzinfo=UTC)
