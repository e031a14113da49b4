"""Script sinks: a sandboxed Python script runs once per event, in a worker process.

Options: `source` (the script text, checked when the sink is built) and `path` (where it came
from, for messages). The script runs in the runtime's shared sandbox pool (see
`knot.sandbox.pool`); up to `max_batch` queued events go to the worker in one round trip and
run in order, stopping at the first failure. A failure (an exception, a limit) is a failed
attempt: the engine retries it and, in the end, audits "Event Sink Script Failed".
While a script runs, its worker's requests are answered here: `emit` journals a child event,
and `http`, `kv` and `secret` (the libraries scripts import) go to the host's
`ScriptLibraries`, on the run's clock.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._audit import AuditKind
from .._config import ScriptSettings
from .._events import Actor, Event, Space
from .._exceptions import KnotError, ScriptFailed
from .._json import JSONObject
from .._sinkspec import SinkSpec
from ..engine.attempts import script_version
from ..sandbox.pool import WorkerPool, default_size
from ..sandbox.process import RemoteError, WorkerDied, WorkerTimeout
from ..sandbox.worker.event_module import LIMIT_SETTINGS, over_limit_text
from ..sandbox.worker.policy import check_source
from ..sandbox.worker.sink import RECURSION_LIMIT
from ..scriptlib.service import RunUse, ScriptRef
from .base import BatchResult, DeliveryResult, Directive, ResultCallback, Sink, SinkHost

__all__ = ["OUTPUT_KEPT", "ScriptSink", "encode_event", "pool_size"]

MAX_REQUEST_CHARS = 2 * 1024 * 1024  # events per worker round trip stop growing past this
OUTPUT_KEPT = 20  # recent output lines a sink's status shows


def pool_size(settings: ScriptSettings) -> int:
    return settings.workers or default_size()


def encode_event(event: Event) -> str:
    """The event as a script's `knot.event` sees it, as JSON; the payload's JSON is reused.

    Once per event per script sink, so it is spliced from text: the members every event of one
    caller shares (zone, owner, actor, space) are encoded once and kept, the id (a UUID), type
    (letters, digits, `_`, `-` and dots) and timestamp go in as they are when they are such
    plain text, and the payload is the JSON the journal already holds."""
    key = (event.zone, event.owner, event.actor, event.space)
    shared = _SHARED.get(key)
    if shared is None:
        shared = _encode_shared(key)
    data = event.data_json or json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    id_, type_, ts = event.id, event.type, event.ts
    if not _PLAIN.fullmatch(id_ + type_ + ts):  # never, for events the runtime made
        head = json.dumps({"id": id_, "type": type_, "ts": ts}, ensure_ascii=False)[1:-1]
        return f'{{{head},"depth":{event.depth},{shared},"data":{data}}}'
    return (
        f'{{"id":"{id_}","type":"{type_}","ts":"{ts}","depth":{event.depth},{shared},'
        f'"data":{data}}}'
    )


_PLAIN = re.compile(r"[A-Za-z0-9_.:+-]*")  # nothing JSON would escape
_SHARED: dict[tuple[str, str, Actor, Space | None], str] = {}
_SHARED_KEPT = 1024


def _encode_shared(key: tuple[str, str, Actor, Space | None]) -> str:
    zone, owner, actor, space = key
    shared = json.dumps(
        {
            "zone": zone,
            "owner": owner,
            "actor": actor.to_dict(),
            "space": space.to_dict() if space else None,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )[1:-1]
    if len(_SHARED) >= _SHARED_KEPT:  # owners and actors are few; this only bounds the memory
        _SHARED.clear()
    _SHARED[key] = shared
    return shared


class ScriptSink(Sink):
    type: ClassVar[str] = "script"
    options: ClassVar[Mapping[str, str]] = {
        "source": "The script's text (the loader of scripts/sinks/ reads it from the file).",
        "path": "Where the script came from, for its messages; default NAME.py.",
    }
    failure_kind: ClassVar[AuditKind] = AuditKind.SCRIPT_FAILED
    max_batch = 64

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.source = str(spec.options["source"])
        self.path = str(spec.options.get("path") or f"{spec.name}.py")
        # The version attempts record (`knot replay`), and what tells a worker it has the
        # script loaded already.
        self.digest = self.version = script_version(self.source)
        self.recent: deque[str] = deque(maxlen=OUTPUT_KEPT)
        self._pool: WorkerPool | None = None
        # The worker is the sink's: versions of its script (reloads) share it, nothing else.
        self.worker_key = spec.name

    @classmethod
    def validate(cls, spec: SinkSpec) -> list[str]:
        unknown = cls.unknown_options(spec)
        if unknown:
            return unknown
        source = spec.options.get("source")
        if not isinstance(source, str):
            return ["The option source must be the script's text."]
        path = spec.options.get("path") or f"{spec.name}.py"
        if not isinstance(path, str):
            return ["The option path must be a file path string."]
        return [f"{path}:{v.line}:{v.col}: {v.rule}." for v in check_source(source, path)]

    @property
    def settings(self) -> ScriptSettings:
        return self.host.config.scripts if self.host is not None else ScriptSettings()

    async def start(self, host: SinkHost) -> None:
        await super().start(host)
        settings = self.settings
        self._pool = host.script_pool
        self._pool.configure(size=pool_size(settings), memory_mb=settings.memory_mb)
        self._pool.hold(self.worker_key)  # and a spare starts, for the first event

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.forget(self.worker_key)
            self._pool = None

    async def deliver(self, event: Event) -> DeliveryResult | None:
        done = await self.deliver_batch([event])
        if done.failed_at is not None:
            raise ScriptFailed(
                done.error, script=self.path, sink=self.name, event=event.id, output=done.output
            )
        return done.results[0]

    async def deliver_batch(
        self, events: Sequence[Event], on_result: ResultCallback | None = None
    ) -> BatchResult:
        """Run the script on `events` in order, in as few worker round trips as fit; each
        event's result goes to `on_result` as soon as the worker reports it."""
        results: list[DeliveryResult | None] = []
        finished: list[float] = []
        start = 0
        while start < len(events):
            chunk = [encode_event(events[start])]
            size = len(chunk[0])
            end = start + 1
            while end < len(events) and size < MAX_REQUEST_CHARS:
                encoded = encode_event(events[end])
                chunk.append(encoded)
                size += len(encoded)
                end += 1
            part = await self._run(events[start:end], chunk, on_result, start)
            results.extend(part.results)
            finished.extend(part.finished)
            if part.failed_at is not None:
                index = start + part.failed_at
                return BatchResult(results, index, part.error, part.output, tuple(finished))
            start = end
        return BatchResult(results, finished=tuple(finished))

    async def _run(
        self,
        events: Sequence[Event],
        encoded: list[str],
        on_result: ResultCallback | None = None,
        offset: int = 0,
    ) -> BatchResult:
        pool, host = self._pool, self.host
        if pool is None or host is None:
            return BatchResult([], 0, f"The script sink {self.name} is not started.")
        settings = self.settings
        pool.configure(size=pool_size(settings), memory_mb=settings.memory_mb)
        results: list[DeliveryResult | None] = []
        finished: list[float] = []  # when each event's result came: its attempt's end
        # Per event, what was emitted: the worker keeps count too, this holds if it lies.
        emits: dict[int, tuple[int, int]] = {}
        uses: dict[int, RunUse] = {}  # per event, what it asked of the libraries
        script = ScriptRef("sinks", self.name, self.path)

        def on_notify(method: str, params: JSONObject) -> None:
            if method == "result":
                finished.append(time.time())
                index = int(params["index"])
                result = self._result(events[index], params)
                results.append(result)
                if on_result is not None:
                    on_result(offset + index, result)

        async def on_request(method: str, params: JSONObject) -> Any:
            if method != "emit":
                index = int(params.get("index") or 0)
                if not 0 <= index < len(events):
                    raise KnotError(f"{method} came for an event this run does not have.")
                use = uses.setdefault(index, RunUse(events[index].id))
                return await host.script_libraries.serve(
                    script, method, params, use, deadline=worker.deadline
                )
            index = int(params["index"])
            parent = events[index]
            count, size = emits.get(index, (0, 0))
            emits[index] = count, size = count + 1, size + worker.last_size
            if count > settings.max_emits:
                raise KnotError(f"More than {settings.max_emits} emits (scripts.max_emits).")
            if size > settings.max_emit_bytes + 1024 * count:  # the frame's own bytes
                raise KnotError(
                    f"More than {settings.max_emit_bytes} bytes emitted (scripts.max_emit_bytes)."
                )
            payload = params.get("payload")
            event_id = await host.emit_child(
                parent,
                str(params.get("type")),
                payload if isinstance(payload, dict) else {},
                sink=self.name,
                index=count - 1,
            )
            return {"id": event_id}

        try:
            worker = await pool.acquire(self.worker_key)
        except WorkerDied as exc:
            return BatchResult([], 0, f"The sandbox has no worker for {self.path}: {exc.how}")
        source = ""
        if worker.loaded.get(self.name) != self.digest:
            source = f',"source":{json.dumps(self.source)},"filename":{json.dumps(self.path)}'
        params = (
            f'{{"name":{json.dumps(self.name)},"hash":"{self.digest}",'
            f'"timeout":{float(settings.timeout)!r}{settings.limit_members()}'
            f',"http_max_bytes":{int(settings.http_max_bytes)}'
            f'{source},"events":[{",".join(encoded)}]}}'
        )
        try:
            reply = await worker.request(
                "run",
                params,
                timeout=settings.timeout,
                on_request=on_request,
                on_notify=on_notify,
            )
        except WorkerTimeout:
            pool.discard(worker)
            return BatchResult(
                results,
                len(results),
                f"The script {self.path} ran longer than {settings.timeout} s "
                "(scripts.timeout) and was stopped.",
                finished=(*finished, time.time()),
            )
        except WorkerDied as exc:
            pool.discard(worker)
            return BatchResult(
                results,
                len(results),
                f"The script {self.path} stopped its sandbox worker ({exc.how}); it probably "
                f"went over a limit (scripts.memory_mb = {settings.memory_mb}).",
                finished=(*finished, time.time()),
            )
        except RemoteError as exc:
            pool.release(worker)
            return BatchResult(results, len(results), self._rejected(exc))
        except BaseException:
            pool.discard(worker)
            raise
        worker.loaded[self.name] = self.digest
        failed_at = reply.get("failed_at") if isinstance(reply, dict) else None
        error = (reply.get("error") or {}) if failed_at is not None else {}
        if error.get("kind") == "memory":
            # The worker survived, but whatever filled it (caches, fragments) would haunt the
            # next script it runs: start afresh.
            pool.discard(worker)
        else:
            pool.release(worker)
        if failed_at is None:
            return BatchResult(results, finished=tuple(finished))
        failed = events[int(failed_at)]
        lines = self._output(failed, reply.get("output") or [])
        finished.append(time.time())
        return BatchResult(results, int(failed_at), self._failure(error), lines, tuple(finished))

    def _result(self, event: Event, params: JSONObject) -> DeliveryResult | None:
        if not params.get("output") and not params.get("directives"):
            return None
        lines = self._output(event, params.get("output") or [])
        kept = (params.get("directives") or [])[: self.settings.max_directives]
        directives = tuple(
            Directive(str(d.get("name", "")), dict(d.get("options") or {}), sink=self.name)
            for d in kept
        )
        return DeliveryResult(directives=directives, output=lines)

    def _output(self, event: Event, raw: list[Any]) -> tuple[str, ...]:
        lines = tuple(str(line) for line in raw)
        if lines:
            self.recent.extend(lines)
            if self.host is not None:
                self.host.sink_output(self.name, event, lines)
        return lines

    def _failure(self, error: JSONObject) -> str:
        line = int(error.get("line") or 0)
        where = f"{self.path}:{line}" if line else self.path
        kind = error.get("kind")
        if kind == "memory":
            return (
                f"The script {where} ran out of memory "
                f"(scripts.memory_mb = {self.settings.memory_mb})."
            )
        if kind == "limit":
            setting = str(error.get("message") or "")
            limit = int(getattr(self.settings, setting)) if setting in LIMIT_SETTINGS else 0
            return (
                f"The script {where} {over_limit_text(setting, limit)} while handling one "
                f"event (scripts.{setting} = {limit})."
            )
        if kind == "recursion":
            return (
                f"The script {where} recursed too deeply (the sandbox allows about "
                f"{RECURSION_LIMIT} nested calls)."
            )
        message = str(error.get("message") or "")
        detail = f": {message}" if message else ""
        return f"The script {where} raised {error.get('type', 'an error')}{detail}"

    def _rejected(self, exc: RemoteError) -> str:
        if isinstance(exc.data, list) and exc.data:
            first = exc.data[0]
            return f"{self.path}:{first.get('line')}:{first.get('col')}: {first.get('rule')}."
        return f"The sandbox refused the script {self.path}: {exc.message}"

    def status(self) -> JSONObject:
        return {"output": list(self.recent), "version": self.version}
