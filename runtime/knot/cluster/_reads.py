"""Reading the NATS store's streams: ranges, the newest entries, one event by id, counts.

JetStream reads forward only, so "the newest N" reads windows of growing size back from the
end; the server filters by subject (an event's type is in its subject), the rest is filtered
here. Reads run on the link's loop; the public methods block their (worker) thread.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from .._audit import AuditEntry
from .._events import Event
from .._json import JSONObject
from .._patterns import Pattern
from ..engine.eventquery import EventQuery, matches
from ._codec import Names, decode_audit, decode_event
from ._link import NatsLink

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["StreamReads"]


class StreamReads:
    """The read half of `NatsStorage` (a base class: it needs only `link` and `names`)."""

    link: NatsLink
    names: Names

    async def _scan(
        self,
        stream: str,
        subject: str,
        start: int,
        *,
        stop: int | None = None,
        want: int | None = None,
        last_per_subject: bool = False,
    ) -> list[Msg]:
        """Messages on `subject` from stream sequence `start` (to `stop`), oldest first."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self.link.js
        policy = (
            DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.BY_START_SEQUENCE
        )
        config = ConsumerConfig(
            deliver_policy=policy,
            opt_start_seq=None if last_per_subject else max(1, start),
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=30.0,
        )
        sub = await js.subscribe(
            subject,
            stream=stream,
            config=config,
            ordered_consumer=True,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        out: list[Msg] = []
        try:
            info = await sub.consumer_info()
            # Messages may be on their way already: none pending and none sent is "nothing".
            delivered = info.delivered.consumer_seq if info.delivered else 0
            if not info.num_pending and not delivered:
                return out
            while True:
                msg = await sub.next_msg(timeout=5)
                seq = msg.metadata.sequence.stream
                if stop is not None and seq > stop:
                    break
                out.append(msg)
                if msg.metadata.num_pending == 0 or (want is not None and len(out) >= want):
                    break
                if stop is not None and seq >= stop:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out

    async def _newest(
        self, stream: str, subject: str, limit: int, keep: Callable[[Msg], bool]
    ) -> list[Msg]:
        """The newest `limit` messages on `subject` that `keep` accepts, oldest first: read
        windows of growing size back from the end."""
        info = await self.link.js.stream_info(stream)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0 or limit <= 0:
            return []
        window = max(limit, 64)
        while True:
            start = max(first, last - window + 1)
            found = [m for m in await self._scan(stream, subject, start, stop=last) if keep(m)]
            if len(found) >= limit or start <= first:
                return found[-limit:]
            window *= 4

    def recent_events(
        self,
        *,
        pattern: Pattern | None = None,
        limit: int = 50,
        owner: str | None = None,
        after_seq: int = 0,
    ) -> list[Event]:
        return self.link.call(self._recent_events(pattern, limit, owner, after_seq))

    async def _recent_events(
        self, pattern: Pattern | None, limit: int, owner: str | None, after_seq: int
    ) -> list[Event]:
        names = self.names
        subject = names.pattern_subject(pattern)
        id_at = names.subject_id_at

        def decode(msg: Msg) -> Event:
            return decode_event(msg.subject, msg.data, msg.metadata.sequence.stream, id_at)

        if after_seq:
            events: list[Event] = []
            start = after_seq + 1
            while len(events) < limit:
                msgs = await self._scan(names.events, subject, start, want=max(limit, 256))
                if not msgs:
                    break
                events += [e for e in map(decode, msgs) if owner is None or e.owner == owner]
                start = msgs[-1].metadata.sequence.stream + 1
            return events[:limit]

        def keep(msg: Msg) -> bool:
            return owner is None or decode(msg).owner == owner

        return [decode(m) for m in await self._newest(names.events, subject, limit, keep)]

    def count_backlog(
        self, sink: str, after: int, patterns: Sequence[Pattern], *, owner: str = ""
    ) -> int:
        """How many journal events after `after` would go to a sink with `patterns` (and
        `owner`; Sky's `_rids` too), minus those skipped for it (a read of the journal's tail:
        it serves status listings of sinks that do not run)."""
        if not patterns:
            return 0
        names = self.names
        id_at = names.subject_id_at

        async def count() -> int:
            skipped = {
                int(json.loads(m.data)[0])
                for m in await self._scan(names.skips, names.skip_subject(sink), 1)
            }
            total, start = 0, after + 1
            while True:
                msgs = await self._scan(names.events, f"{names.root}.ev.>", start, want=2000)
                if not msgs:
                    return total
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    event_type = msg.subject.split(".", id_at + 1)[id_at + 1]
                    if seq in skipped or not any(p.matches(event_type) for p in patterns):
                        continue
                    event = decode_event(msg.subject, msg.data, seq, id_at)
                    if owner and event.owner != owner:
                        continue
                    if event.rids is not None and sink not in event.rids:
                        continue
                    total += 1
                start = msgs[-1].metadata.sequence.stream + 1

        return self.link.call(count(), timeout=60)

    def find_events(self, query: EventQuery) -> list[Event]:
        return self.link.call(self._find_events(query), timeout=60)

    async def _find_events(self, query: EventQuery) -> list[Event]:
        """Newest first: windows of growing size read back from below `query.before`, each
        filtered here (the server filters only by type)."""
        names = self.names
        id_at = names.subject_id_at
        skipped: set[int] | None = None
        if query.outcome:
            where = names.skip_subject(query.sink) if query.sink else f"{names.root}.skip.>"
            skipped = set()
            for msg in await self._scan(names.skips, where, 1):
                seq, reason = json.loads(msg.data)
                if reason == query.outcome:
                    skipped.add(int(seq))
        info = await self.link.js.stream_info(names.events)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0 or query.limit <= 0:
            return []
        top = min(last, query.before - 1) if query.before else last
        subject = names.pattern_subject(query.pattern)
        found: list[Event] = []
        window = max(query.limit, 256)
        while top >= first and len(found) < query.limit:
            low = max(first, top - window + 1)
            msgs = await self._scan(names.events, subject, low, stop=top)
            for msg in reversed(msgs):
                seq = msg.metadata.sequence.stream
                if skipped is not None and seq not in skipped:
                    continue
                event = decode_event(msg.subject, msg.data, seq, id_at)
                if matches(event, query):
                    found.append(event)
            top, window = low - 1, min(window * 4, 16384)
        return found[: query.limit]

    def get_event(self, event_id: str) -> Event | None:
        subject = self.names.id_subject(event_id)
        if subject is None:
            return None

        async def get() -> Event | None:
            from nats.js.errors import NotFoundError

            try:
                raw = await self.link.js.get_last_msg(self.names.events, subject)
            except NotFoundError:
                return None
            assert raw.subject is not None
            assert raw.data is not None
            assert raw.seq is not None
            return decode_event(raw.subject, raw.data, raw.seq, self.names.subject_id_at)

        return self.link.call(get())

    def audit_entries(
        self, *, limit: int = 50, sink: str | None = None, sinks: Collection[str] | None = None
    ) -> list[AuditEntry]:
        if sinks is not None and not sinks:
            return []
        names = self.names
        subject = names.audit_subject(sink) if sink is not None else f"{names.root}.audit.>"
        wanted = {names.audit_subject(s) for s in sinks} if sinks is not None else None

        def keep(msg: Msg) -> bool:
            return wanted is None or msg.subject in wanted

        async def read() -> list[AuditEntry]:
            msgs = await self._newest(names.audit, subject, limit, keep)
            return [decode_audit(m.data, m.metadata.sequence.stream) for m in msgs]

        return self.link.call(read())

    def counts(self) -> JSONObject:
        async def read() -> JSONObject:
            js = self.link.js
            events = await js.stream_info(self.names.events)
            audit = await js.stream_info(self.names.audit)
            return {
                "events": events.state.messages,
                "head_seq": events.state.last_seq,
                "audit": audit.state.messages,
            }

        return self.link.call(read())
