"""The NATS JetStream store: the engine's `Storage` on streams and key-value buckets.

What goes where (names in `_codec.Names`, per zone):
- the journal: stream EVENTS, one message per event, its stream sequence the event's `seq`;
  `Nats-Msg-Id` = the event id, so a repeated id is refused by the server (dedup window);
- each sink's cursor: KV bucket CURSORS (one key per sink, written by the node that holds it);
- skips (events dropped or given up for a sink): stream SKIPS, one subject per sink;
- the audit log: stream AUDIT, one subject per sink; an entry's id is its stream sequence;
- records by scope (sinks made through the API, users, channels, secrets): KV bucket RECORDS,
  mirrored in memory by a watch, so reads are local and changes from other nodes arrive;
- node-local records (spaces, the node id): a JSON file in the node's state folder.

Unlike SQLite, a batch is not one transaction: each event is durable on its own once the
server acks it. A write that fails may have journaled some of its events; their emitters get
the error, and retrying with the same id is safe (the server drops the repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._events import Event
from .._exceptions import StoreError
from ..engine.storage import WriteBatch
from ._codec import (
    Names,
    decode_event,
    decode_key,
    encode_audit,
    encode_event,
    encode_key,
)
from ._history import History
from ._link import NatsLink
from ._local import NodeRecords
from ._records import LOCAL_SCOPES, RecordsKv

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["LOCAL_SCOPES", "NatsStorage"]

log = logging.getLogger("knot.cluster")
WRITE_TIMEOUT = 5.0  # seconds a commit waits for JetStream's acks
# A sink's cursor is written at most this often (seconds): with many busy sinks a put per
# sink per commit would be most of the writes. A crash replays at most this much progress.
CURSOR_EVERY = 0.1
FEED_CHECK = 1.0  # seconds between checks that the journal feed still moves
# Bytes of an event's message that are not its payload (subject, id header, time, owner,
# actor, space, causation): what `payload_limit` keeps free below the server's max_payload.
FIELDS_ROOM = 16 * 1024
EventsCallback = Callable[[list[Event]], None]


class NatsStorage(History, RecordsKv):
    """`Storage` over NATS JetStream; `shared` tells the runtime to route from `start_feed`."""

    shared = True

    def __init__(
        self,
        servers: Sequence[str],
        *,
        zone: str,
        path: Path,
        prefix: str = "KNOT",
        replicas: int = 1,
        dedup_window: float = 600.0,
    ) -> None:
        self.names = Names(prefix, zone)
        self.path = Path(path)
        self.replicas = replicas
        self.dedup_window = dedup_window
        self.link = NatsLink(list(servers), name=f"knot {zone}")
        self._init_records()
        self.local = NodeRecords(self.path.parent)
        self._cursors: dict[str, int] = {}
        self._cursor_due: dict[str, float] = {}  # when a sink's cursor may be written again
        self._pending_cursors: dict[str, int] = {}  # written by the next flush
        # Whether this node may write a sink's cursor now (the membership: not when another
        # node serves it, nor while this node is cut off); None: always.
        self.cursor_gate: Callable[[str], bool] | None = None
        self._head = 0
        self._feed_seq = 0
        self._feed_sub: Any = None  # the journal feed's subscription (replaced if it stalls)
        self._acked = 0  # the highest sequence this node's own writes got
        self._own: dict[str, Event] = {}  # journaled here, not back from the feed yet
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Any] = []

    # -- opening and closing -----------------------------------------------------------------

    def open(self) -> None:
        """Lock the node's state folder, connect, and make sure every stream exists."""
        self.local.open()
        try:
            self.link.open()
            self.link.call(self._setup(), timeout=30)
        except BaseException:
            self.close()
            raise

    @property
    def node_id(self) -> str:
        return self.local.node_id

    async def _setup(self) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        js = self.link.js
        names = self.names
        root = names.root
        for name, subject, dupes in (
            (names.events, f"{root}.ev.>", self.dedup_window),
            (names.audit, f"{root}.audit.>", None),
            (names.skips, f"{root}.skip.>", None),
            (names.chains, f"{root}.chain.>", None),
            (names.attempts, f"{root}.att.>", None),
        ):
            config = StreamConfig(
                name=name,
                subjects=[subject],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                num_replicas=self.replicas,
                duplicate_window=dupes or 120.0,
            )
            await self._ensure_stream(config)
        for bucket in (names.cursors, names.records, names.nodes, names.claims):
            await self._ensure_bucket(bucket)
        info = await js.stream_info(names.events)
        self._head = info.state.last_seq
        self._feed_seq = self._head
        await self._load_records()
        self._spawn(self._flush_cursors_every())

    async def _ensure_stream(self, config: Any) -> None:
        from nats.js.errors import BadRequestError

        js = self.link.js
        try:
            await js.add_stream(config)
        except BadRequestError:  # it exists with other settings: bring it to these
            await js.update_stream(config)

    async def _ensure_bucket(self, bucket: str) -> None:
        from nats.js.api import KeyValueConfig, StorageType

        js = self.link.js
        config = KeyValueConfig(
            bucket=bucket, history=1, replicas=self.replicas, storage=StorageType.FILE
        )
        try:
            await js.create_key_value(config)
        except Exception:
            await js.key_value(bucket)  # exists already: that is enough

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush_cursors()
        if self.link.loop.is_running():
            with contextlib.suppress(Exception):
                self.link.call(self._stop_tasks(), timeout=5)
        self.link.close()
        self.local.close()

    async def _stop_tasks(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def unusable(self, exc: Exception) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        return StoreError(f"The NATS store cannot be used: {exc}.")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the journal feed: every node routes every event of its zone, in stream order ----------

    def start_feed(self, on_events: EventsCallback, loop: asyncio.AbstractEventLoop) -> None:
        """Call `on_events(events)` on `loop` with each event journaled after `head_seq()`
        (by any node), in stream order, in batches."""
        pending: deque[Event] = deque()
        scheduled = False

        def flush() -> None:
            nonlocal scheduled
            scheduled = False
            batch: list[Event] = []
            while pending:
                batch.append(pending.popleft())
            if batch:
                on_events(batch)

        id_at = self.names.subject_id_at

        async def on_msg(msg: Msg) -> None:
            nonlocal scheduled
            seq = msg.metadata.sequence.stream
            if seq <= self._feed_seq:
                return  # seen before a reconnect made the consumer start over
            self._feed_seq = seq
            if seq > self._head:
                self._head = seq
            # An event this node journaled itself is at hand: no need to decode it again.
            own = self._own.pop(msg.subject.split(".", id_at + 1)[id_at], None)
            event = own._replace(seq=seq) if own is not None else None
            pending.append(event or decode_event(msg.subject, msg.data, seq, id_at))
            if not scheduled:
                scheduled = True
                with contextlib.suppress(RuntimeError):  # the runtime's loop has closed
                    loop.call_soon_threadsafe(flush)

        subject = f"{self.names.root}.ev.>"
        self.link.call(self._follow(subject, self._feed_seq + 1, on_msg))
        self._spawn(self._supervise_feed(subject, on_msg))

    async def _supervise_feed(self, subject: str, on_msg: Callable[[Msg], Any]) -> None:
        """Follow the journal anew when the feed stalls behind it (nats.py #504: an ordered
        consumer may never resume after its server died, e.g. while the stream elected a new
        leader): the events after the last one seen come again; the feed drops repeats."""
        stalled_at, seen = 0, self._feed_seq
        while True:
            await asyncio.sleep(FEED_CHECK)
            if not self.link.connected:
                continue
            with contextlib.suppress(Exception):
                info = await self.link.js.stream_info(self.names.events)
                behind = info.state.last_seq > self._feed_seq
                if not behind or self._feed_seq != seen:
                    stalled_at, seen = 0, self._feed_seq
                    continue
                stalled_at += 1
                if stalled_at < 2:  # behind and not moving for two checks in a row
                    continue
                log.warning("the journal feed stalled at event %d: following it anew", seen)
                old, self._feed_sub = self._feed_sub, None
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old.unsubscribe()
                await self._follow(subject, self._feed_seq + 1, on_msg)
                stalled_at = 0

    async def _follow(self, subject: str, start: int, cb: Callable[[Msg], Any]) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        sub = await self.link.js.subscribe(
            subject,
            cb=cb,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=start),
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        self._subs.append(sub)
        self._feed_sub = sub

    # -- the writer ----------------------------------------------------------------------------

    def write(self, batches: Sequence[WriteBatch]) -> list[bool]:
        if not self.link.connected:
            raise StoreError("NATS is not reachable; the event was not journaled (retry it).")
        return self.link.call(self._write(batches), timeout=WRITE_TIMEOUT + 1)

    async def _write(self, batches: Sequence[WriteBatch]) -> list[bool]:
        js = self.link.js
        names = self.names
        event_acks: list[asyncio.Future[Any]] = []
        other_acks: list[asyncio.Future[Any]] = []
        own = self._own
        encoded = [[encode_event(event) for event in batch.events] for batch in batches]
        for batch, bodies in zip(batches, encoded, strict=True):  # all, before anything is sent
            self._check_sizes(batch.events, bodies)
        for batch, bodies in zip(batches, encoded, strict=True):
            for event in batch.events:
                own.setdefault(event.id, event)  # a repeated id: the first one stays
            event_acks += [
                await js.publish_async(
                    names.event_subject(event), body, headers={"Nats-Msg-Id": event.id}
                )
                for event, body in zip(batch.events, bodies, strict=True)
            ]
            other_acks += [
                await js.publish_async(names.audit_subject(entry.sink), encode_audit(entry))
                for entry in batch.audits
            ]
            other_acks += [
                await js.publish_async(names.skip_subject(sink), json.dumps([seq, why]).encode())
                for sink, seq, why in batch.skips
            ]
            other_acks += await self._publish_attempts(batch.attempts)
            for sink in batch.forget:
                self._cursors.pop(sink, None)
                self._pending_cursors.pop(sink, None)
                await self._await_all(event_acks + other_acks)
                await js.purge_stream(names.skips, subject=names.skip_subject(sink))
                with contextlib.suppress(Exception):
                    kv = await js.key_value(names.cursors)
                    await kv.purge(encode_key(sink))
            now = time.monotonic()
            gate = self.cursor_gate
            for sink, seq in batch.cursors.items():
                if sink in self._cursors and seq <= self._cursors[sink]:
                    continue
                if gate is not None and not gate(sink):
                    continue  # another node serves it now: its cursor is that node's
                self._cursors[sink] = seq
                if now < self._cursor_due.get(sink, 0.0):
                    self._pending_cursors[sink] = seq
                    continue
                self._pending_cursors.pop(sink, None)
                self._cursor_due[sink] = now + CURSOR_EVERY
                other_acks.append(await self._put_cursor(sink, seq))
        try:
            acks = await self._await_all(event_acks + other_acks)
        except StoreError:
            self._cursors.clear()  # some may not be written: write them all again next time
            for batch in batches:
                for event in batch.events:
                    own.pop(event.id, None)  # if journaled after all, the feed decodes it
            raise
        flags: list[bool] = []
        chained: list[tuple[str, int]] = []
        events = [event for batch in batches for event in batch.events]
        for event, ack in zip(events, acks[: len(event_acks)], strict=True):
            if ack.duplicate:
                own.pop(event.id, None)  # the feed brings the first one, journaled before
            elif event.parent:
                chained.append((event.root or event.parent, ack.seq))
            flags.append(not ack.duplicate)
            if ack.seq > self._head:
                self._head = ack.seq
            if ack.seq > self._acked:
                self._acked = ack.seq
        if chained:  # after the acks: an event's position is the server's to give
            await self._await_all(await self._publish_chains(chained))
        return flags

    def payload_limit(self) -> int:
        """The largest payload (JSON bytes) an event may have here: NATS refuses a message
        over the server's max_payload by closing the connection, so ingress refuses first."""
        return self.link.nc.max_payload - FIELDS_ROOM

    def _check_sizes(self, events: Sequence[Event], bodies: Sequence[bytes]) -> None:
        """Refuse, before anything is sent, a message NATS would answer by disconnecting."""
        most = self.link.nc.max_payload
        for event, body in zip(events, bodies, strict=True):
            size = len(body) + len(event.type) + 200  # the subject and the id header
            if size > most:
                raise StoreError(
                    f"The event {event.id} ({event.type}) is {size} bytes as a NATS message, "
                    f"more than the server's max_payload ({most} bytes); it was not journaled."
                )

    async def _put_cursor(self, sink: str, seq: int) -> asyncio.Future[Any]:
        subject = f"$KV.{self.names.cursors}.{encode_key(sink)}"
        return await self.link.js.publish_async(subject, json.dumps(seq).encode())

    async def _flush_cursors(self) -> None:
        pending, self._pending_cursors = self._pending_cursors, {}
        due = time.monotonic() + CURSOR_EVERY
        acks = []
        gate = self.cursor_gate
        for sink, seq in pending.items():
            if gate is not None and not gate(sink):
                continue  # held back, and the sink has moved on since: never write it
            self._cursor_due[sink] = due
            acks.append(await self._put_cursor(sink, seq))
        await self._await_all(acks)

    def flush_cursors(self) -> None:
        """Write every cursor held back by the rate limit (a hand-over, a clean stop)."""
        if self._pending_cursors and self.link.connected:
            self.link.call(self._flush_cursors())

    async def _flush_cursors_every(self) -> None:
        while True:
            await asyncio.sleep(CURSOR_EVERY)
            if self._pending_cursors and self.link.connected:
                with contextlib.suppress(Exception):
                    await self._flush_cursors()

    async def _await_all(self, futures: list[asyncio.Future[Any]]) -> list[Any]:
        if not futures:
            return []
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            for future in futures:
                future.cancel()
            raise StoreError(
                f"JetStream did not acknowledge the write within {WRITE_TIMEOUT:g} s; "
                "nothing unacknowledged was confirmed (retry it)."
            ) from None
        for result in results:
            if isinstance(result, BaseException):
                raise StoreError(f"JetStream refused the write: {result}.") from None
        return list(results)

    def prune(self, *, keep_events: int, keep_audit: int, active_sinks: Iterable[str]) -> int:
        self.prune_expired(time.time())
        return self.link.call(self._prune(keep_events, keep_audit, set(active_sinks)), timeout=60)

    async def _prune(self, keep_events: int, keep_audit: int, active: set[str]) -> int:
        js = self.link.js
        names = self.names
        await self._flush_cursors()  # the floor is what the server has
        cursors = await self._read_cursors()
        if any(sink not in cursors for sink in active):
            return 0  # a sink without a cursor has handled nothing yet
        info = await js.stream_info(names.events)
        floor = info.state.last_seq - keep_events
        if cursors:  # every sink of the cluster counts, not only this node's
            floor = min(floor, *cursors.values())
        deleted = 0
        if floor >= info.state.first_seq and floor > 0:
            await js.purge_stream(names.events, seq=floor + 1)
            after = await js.stream_info(names.events)
            deleted = info.state.messages - after.state.messages
            await self._prune_skips(floor)
            await self._prune_history(floor)
        await js.purge_stream(names.audit, keep=keep_audit)
        return deleted

    async def _prune_skips(self, floor: int) -> None:
        """Forget the oldest skips while each is for an event at or below `floor`."""
        cut = 0
        for msg in await self._scan(self.names.skips, f"{self.names.root}.skip.>", 1):
            seq, _reason = json.loads(msg.data)
            if seq > floor:
                break
            cut = msg.metadata.sequence.stream
        if cut:
            await self.link.js.purge_stream(self.names.skips, seq=cut + 1)

    # -- start-up --------------------------------------------------------------------------------

    def head_seq(self) -> int:
        return self._feed_seq

    def load_cursors(self) -> dict[str, int]:
        cursors = self.link.call(self._read_cursors())
        for sink, seq in cursors.items():
            self._cursors[sink] = max(seq, self._cursors.get(sink, 0))
        return cursors

    def cursor(self, sink: str) -> int | None:
        """`sink`'s cursor as the server has it now (a node taking a sink over reads this)."""
        return self.link.call(self._read_cursor(sink))

    async def _read_cursor(self, sink: str) -> int | None:
        """The server's cursor for `sink`, which this node adopts (it is taking the sink)."""
        from nats.js.errors import KeyNotFoundError

        kv = await self.link.js.key_value(self.names.cursors)
        self._pending_cursors.pop(sink, None)
        self._cursors.pop(sink, None)
        try:
            entry = await kv.get(encode_key(sink))
        except KeyNotFoundError:
            return None
        seq = int(json.loads(entry.value)) if entry.value else None
        if seq is not None:
            self._cursors[sink] = seq
        return seq

    async def _read_cursors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for msg in await self._scan(
            f"KV_{self.names.cursors}", f"$KV.{self.names.cursors}.>", 1, last_per_subject=True
        ):
            if msg.data and not (msg.headers or {}).get("KV-Operation"):
                out[decode_key(msg.subject.rsplit(".", 1)[1])] = int(json.loads(msg.data))
        return out

    def backlog(self, sink: str, after: int, upto: int) -> Iterator[Event]:
        skipped = self.link.call(self._skipped(sink))
        id_at = self.names.subject_id_at
        start = after + 1
        while start <= upto:
            msgs = self.link.call(
                self._scan(
                    self.names.events, f"{self.names.root}.ev.>", start, stop=upto, want=2000
                )
            )
            if not msgs:
                return
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq not in skipped:
                    yield decode_event(msg.subject, msg.data, seq, id_at)
            start = msgs[-1].metadata.sequence.stream + 1

    async def _skipped(self, sink: str) -> set[int]:
        msgs = await self._scan(self.names.skips, self.names.skip_subject(sink), 1)
        return {int(json.loads(m.data)[0]) for m in msgs}

    # -- reads -------------------------------------------------------------------------------------

    def caught_up(self) -> bool:
        return self._feed_seq >= self._acked

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.link.connected
