"""What the NATS store keeps beside the journal for `knot trace`: causation and attempts.

- CHAINS: one message per event some sink raised, on `<root>.chain.<root event id>`, its body
  the event's journal position. Written once the event's publish was acknowledged (its
  position is the server's to give), so a node killed in between leaves that event out of its
  chain's listing; the event itself is journaled.
- ATTEMPTS: the engine's packed attempt rows (`engine/attempts.pack`: each covers fewer than
  SPAN positions), one message per row on `<root>.att.<lowest position // SPAN>`; a lookup
  reads the two windows a row holding that position can start in.
- Skips are read from SKIPS (the journal's own stream).

Retention: `prune` forgets, from the front of CHAINS and ATTEMPTS, what is about events at or
below the journal's new floor (the messages are in about that order; one that is not is kept
a little longer, never lost early).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from .._events import Event
from ..engine.attempts import SPAN, Attempt, AttemptBatch, Row, pack, unpack
from ._codec import decode_event, decode_key
from ._reads import StreamReads

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["History", "decode_row", "encode_row"]

PRUNE_CHUNK = 1000  # messages read at a time while looking for the end of what is old


def encode_row(row: Row) -> bytes:
    sink, lo, hi, started, ended, busy, seqs, records, version = row
    head = json.dumps([sink, lo, hi, started, ended, busy, records, version], ensure_ascii=False)
    return head.encode() + b"\n" + seqs


def decode_row(body: bytes) -> Row:
    head, _, seqs = body.partition(b"\n")
    sink, lo, hi, started, ended, busy, records, version = json.loads(head)
    return (str(sink), int(lo), int(hi), started, ended, busy, seqs, str(records), str(version))


class History(StreamReads):
    """Chains, attempts and skips of `NatsStorage` (a base class over its stream reads)."""

    # -- writing (on the link's loop, inside a commit) --------------------------------------

    async def _publish_attempts(self, batches: Sequence[AttemptBatch]) -> list[Any]:
        js = self.link.js
        names = self.names
        return [
            await js.publish_async(names.attempts_subject(row[1] // SPAN), encode_row(row))
            for row in pack(batches)
        ]

    async def _publish_chains(self, chained: Sequence[tuple[str, int]]) -> list[Any]:
        """`(root id, position)` of each new event some sink raised."""
        js = self.link.js
        acks = []
        for root_id, seq in chained:
            subject = self.names.chain_subject(root_id)
            if subject is not None:
                acks.append(await js.publish_async(subject, str(seq).encode()))
        return acks

    # -- reads ------------------------------------------------------------------------------

    def chain(self, root: str, *, limit: int = 1000) -> list[Event]:
        subject = self.names.chain_subject(root)
        if subject is None:
            return []
        return self.link.call(self._chain(subject, limit))

    async def _chain(self, subject: str, limit: int) -> list[Event]:
        from nats.js.errors import NotFoundError

        names = self.names
        msgs = await self._scan(names.chains, subject, 1, want=limit)
        events: list[Event] = []
        for seq in sorted({int(m.data) for m in msgs}):
            try:
                raw = await self.link.js.get_msg(names.events, seq)
            except NotFoundError:
                continue  # pruned since
            if raw.subject is None or raw.data is None:
                continue
            events.append(decode_event(raw.subject, raw.data, seq, names.subject_id_at))
        return events[:limit]

    def attempts(self, seqs: Collection[int]) -> list[Attempt]:
        wanted = set(seqs)
        if not wanted:
            return []
        return self.link.call(self._attempts(wanted))

    async def _attempts(self, wanted: set[int]) -> list[Attempt]:
        windows = {w for seq in wanted for w in (seq // SPAN, seq // SPAN - 1) if w >= 0}
        found: list[Attempt] = []
        for window in sorted(windows):
            subject = self.names.attempts_subject(window)
            for msg in await self._scan(self.names.attempts, subject, 1):
                row = decode_row(msg.data)
                lo, hi = row[1], row[2]
                inside = {seq for seq in wanted if lo <= seq <= hi}
                if inside:
                    found += unpack(row, inside)
        found.sort(key=lambda a: (a.started, a.attempt))
        return found

    def sink_attempts(self, sink: str, after: int, upto: int) -> list[Attempt]:
        if upto <= after:
            return []
        return self.link.call(self._sink_attempts(sink, after, upto), timeout=60)

    async def _sink_attempts(self, sink: str, after: int, upto: int) -> list[Attempt]:
        wanted = range(after + 1, upto + 1)
        found: list[Attempt] = []
        for window in range(max(0, (after + 1) // SPAN - 1), upto // SPAN + 1):
            subject = self.names.attempts_subject(window)
            for msg in await self._scan(self.names.attempts, subject, 1):
                row = decode_row(msg.data)
                if row[0] == sink and row[1] <= upto and row[2] > after:
                    found += unpack(row, wanted)
        found.sort(key=lambda a: (a.started, a.attempt))
        return found

    def skips(self, seqs: Collection[int]) -> list[tuple[str, int, str]]:
        wanted = set(seqs)
        if not wanted:
            return []

        async def read() -> list[tuple[str, int, str]]:
            msgs = await self._scan(self.names.skips, f"{self.names.root}.skip.>", 1)
            out: list[tuple[str, int, str]] = []
            for msg in msgs:
                seq, reason = json.loads(msg.data)
                if seq in wanted:
                    out.append((decode_key(msg.subject.rsplit(".", 1)[1]), int(seq), str(reason)))
            return out

        return self.link.call(read())

    # -- retention --------------------------------------------------------------------------

    async def _prune_history(self, floor: int) -> None:
        names = self.names
        await self._purge_front(
            names.chains, f"{names.root}.chain.>", lambda m: int(m.data) <= floor
        )
        await self._purge_front(
            names.attempts, f"{names.root}.att.>", lambda m: decode_row(m.data)[2] <= floor
        )

    async def _purge_front(self, stream: str, subject: str, old: Callable[[Msg], bool]) -> None:
        """Purge `stream` up to the first message `old` does not accept."""
        cut = 0
        start = 1
        while True:
            msgs = await self._scan(stream, subject, start, want=PRUNE_CHUNK)
            if not msgs:
                break
            for msg in msgs:
                if not old(msg):
                    break
                cut = msg.metadata.sequence.stream
            else:
                start = msgs[-1].metadata.sequence.stream + 1
                continue
            break
        if cut:
            await self.link.js.purge_stream(stream, seq=cut + 1)
