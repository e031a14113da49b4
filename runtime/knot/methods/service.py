"""Method scripts: their methods, calls and subscriptions (`runtime.methods`).

Each method script (`scripts/methods/<script>.py`, loaded by the reloader through
`_method_scripts.py`) runs in a worker process of its own that keeps the script's module state
between calls (`_method_workers.py`). Methods are named `script.method`; a plain `method` works
too when exactly one script declares it (`script.method` is tried first).

- Calls: `await runtime.methods.call("deploys", "count", {"space": "web"})`, `POST /json-rpc`,
  `knot call`, `%knot call`. A failed call raises MethodFailed with its JSON-RPC error.
- Subscriptions: each method with `events` is a sink of the engine (`sinks/method.py`) named
  `script.method`; its params are rendered by the first matching json-rpc sink it names, else
  by the default template. In such a call `knot.event` is the event: `knot.event.emit` raises
  a child event (depth-limited like script sinks), `knot.event.directive` a Sky directive.
  In a direct call `knot.event` is empty, and emits are new events raised as the caller.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._events import Actor, Event
from .._exceptions import DeliveryFailed, KnotError, MethodFailed, NotFound
from .._json import JSONObject
from .._jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, RpcError
from .._logtext import log_output
from .._sinkspec import SinkOrigin, SinkSpec
from .._tracecontext import CURRENT_TRACE
from ..engine.attempts import said, script_version
from ..sandbox.method_process import MethodProcess
from ..sandbox.process import RemoteError, WorkerBlocked, WorkerDied, WorkerTimeout
from ..sandbox.worker.method_module import timed_out
from ..scriptlib.service import ScriptRef
from ..sinks import BatchResult, DeliveryResult, JsonRpcSink, MethodSink
from ..sinks.script import encode_event
from ..types import MethodsHost
from .calls import CallContext, CallResult, RemoteMethods, directives_of, encode_params, failed
from .declarations import MethodInfo
from .observed import CallReport
from .rpc import Handler
from .workers import MethodLoad, MethodScript, MethodWorkers

__all__ = ["CallResult", "MethodInfo", "MethodLoad", "Methods", "RemoteMethods"]

log = logging.getLogger("knot.methods")


class Methods:
    """The method scripts of one runtime: `runtime.methods`."""

    def __init__(self, runtime: MethodsHost) -> None:
        self.runtime = runtime
        self.report = CallReport(runtime)
        self.workers = MethodWorkers(
            runtime,
            serve=self._serve,
            changed=self._sync_sinks,
            load_context=lambda: CallContext((), "", None),
        )
        self.remote: RemoteMethods | None = None  # set by the cluster part on a shared store

    # -- reading --------------------------------------------------------------------------

    def __contains__(self, script: object) -> bool:
        return script in self.workers.scripts

    def scripts(self) -> list[str]:
        return sorted(self.workers.scripts)

    def all(self) -> list[MethodInfo]:
        """Every method of every loaded script, by full name."""
        found = [m for s in self.workers.scripts.values() for m in s.methods.values()]
        return sorted(found, key=lambda m: m.full_name)

    def statuses(self) -> list[JSONObject]:
        """One row per script: its state, worker, methods and last problem."""
        scripts = self.workers.scripts
        return [scripts[name].to_dict() for name in sorted(scripts)]

    def find(self, name: str) -> MethodInfo:
        """The method `script.method`, or a plain `method` declared by exactly one script."""
        scripts = self.workers.scripts
        script, dot, method = name.partition(".")
        found = scripts.get(script) if dot else None
        if found is not None and method in found.methods:
            return found.methods[method]
        matches = [s.methods[name] for s in scripts.values() if name in s.methods]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(sorted(m.full_name for m in matches))
            raise NotFound(
                f"The method name {name!r} is ambiguous ({names}); call it by its full name.",
                what=name,
            )
        raise NotFound(f"There is no method named {name!r}.", what=name)

    def worker_pid(self, script: str) -> int | None:
        """The process id of the script's current worker (None: none runs)."""
        found = self.workers.scripts.get(script)
        worker = found.worker if found is not None else None
        return worker.pid if worker is not None and worker.alive else None

    # -- loading --------------------------------------------------------------------------

    async def load(self, name: str, source: str | None, *, path: str = "") -> MethodLoad:
        """Start (or replace) method script `name` from `source`; never raises for bad input.

        A broken version leaves the running one (if any) in place; the result says why.
        """
        return await self.workers.load(name, source, path=path or f"{name}.py")

    async def unload(self, name: str, *, reason: str = "its script was deleted") -> bool:
        """Stop the script's worker and remove its subscriptions; False if it was not known."""
        return await self.workers.unload(name, reason=reason) is not None

    async def close(self) -> None:
        await self.workers.close()

    # -- subscriptions ------------------------------------------------------------------------

    async def _sync_sinks(self, script: MethodScript, reason: str) -> list[str]:
        """Make the script's method sinks exactly its subscribed methods; return warnings."""
        registry = self.runtime.registry
        wanted: dict[str, SinkSpec] = {}
        warnings: list[str] = []
        for info in script.methods.values():
            if not info.events:
                continue
            wanted[info.full_name] = SinkSpec(
                name=info.full_name,
                type=MethodSink.type,
                events=info.events,
                description=f"method {info.full_name} ({info.path}:{info.line})",
                options={
                    "script": info.script,
                    "method": info.name,
                    "event_sinks": list(info.event_sinks),
                    "path": info.path,
                },
                origin=SinkOrigin.METHOD,
            )
            for sink_name in info.event_sinks:
                if self.formatter(sink_name) is None:
                    warning = (
                        f"{info.path}:{info.line}: {info.full_name} names event sink "
                        f"{sink_name!r}, which is not a json-rpc sink (yet); events it would "
                        "format get the default template"
                    )
                    log.warning("%s", warning)
                    warnings.append(warning)
        for name in registry.names(SinkOrigin.METHOD):
            if registry.spec(name).options.get("script") == script.name and name not in wanted:
                why = reason or f"{script.path} no longer subscribes {name} to events"
                await registry.remove(name, reason=why)
        for name, spec in wanted.items():
            if name not in registry or registry.spec(name) != spec:
                await registry.install(MethodSink(spec, methods=self))
            found = registry.sink(name)
            if isinstance(found, MethodSink):  # what its attempts record as having run
                found.version = script_version(script.source)
        return warnings

    def formatter(self, name: str) -> JsonRpcSink | None:
        """The json-rpc sink `name` (MethodHost), if there is one."""
        registry = self.runtime.registry
        if name not in registry or registry.spec(name).type != JsonRpcSink.type:
            return None
        sink = registry.sink(name)
        return sink if isinstance(sink, JsonRpcSink) else None

    def _call_body(self, info: MethodInfo, fields: str, timeout: float) -> str:
        """The worker's `call` request: the method, `fields` (params and event, or a batch),
        the time limit and the run limits."""
        config = self.runtime.config
        limits = (
            f'{config.methods.limit_members()},"http_max_bytes":{config.scripts.http_max_bytes}'
        )
        return f'{{"method":{json.dumps(info.name)},{fields},"timeout":{float(timeout)!r}{limits}}}'

    async def deliver(self, sink: MethodSink, event: Event, params: str) -> DeliveryResult:
        """One subscribed call for `event` (MethodHost); DeliveryFailed when it fails."""
        script = self.workers.scripts.get(sink.script)
        info = script.methods.get(sink.method) if script is not None else None
        if info is None:
            raise DeliveryFailed(
                f"The method {sink.name} is not loaded.", sink=sink.name, event=event.id
            )
        try:
            done = await self.invoke(info, params, event=event)
        except MethodFailed as exc:
            raise DeliveryFailed(
                exc.message, sink=sink.name, event=event.id, output=exc.output
            ) from None
        return DeliveryResult(
            directives=directives_of(sink, done.directives),
            output=done.output,
            value="" if done.result is None else said(done.result),
        )

    async def deliver_batch(
        self, sink: MethodSink, events: Sequence[Event], params: Sequence[str]
    ) -> BatchResult:
        """Subscribed calls for several queued events in one round trip (MethodHost).

        The worker runs them in order and stops at the first that fails; the method's time
        limit applies to each call.
        """
        script = self.workers.scripts.get(sink.script)
        info = script.methods.get(sink.method) if script is not None else None
        if script is None or info is None:
            return BatchResult([], 0, f"The method {sink.name} is not loaded.")
        timeout = self.runtime.config.methods.timeout
        worker = await self.workers.current(script, timeout)
        if worker is None:
            return BatchResult([], 0, f"The method script {info.script} has no running worker.")
        items = ",".join(
            f'{{"params":{p},"event":{encode_event(e)}}}'
            for p, e in zip(params, events, strict=True)
        )
        body = self._call_body(info, f'"batch":[{items}]', timeout)
        finished: list[float] = []  # when each call ended: its attempt's end

        def progress() -> None:
            finished.append(time.time())

        script.calls += len(events)
        context = CallContext(tuple(events), "", None, sink.name)
        started = time.time()
        try:
            answer = await worker.request(
                "call", body, timeout=timeout, context=context, on_progress=progress
            )
        except (WorkerTimeout, WorkerDied, RemoteError) as exc:
            script.errors += 1
            failure = self._transport_failure(info, timeout, exc, stopping=worker.closing)
            done = len(finished)
            times = (*finished, time.time())
            if done < len(events):  # the call that was running when the batch broke
                at = finished[-1] if finished else started
                self.report.one_of_batch(
                    info.full_name, sink.name, events[done], at, times[-1], failure.message
                )
            return BatchResult([None] * done, done, failure.message, finished=times)
        results: list[DeliveryResult | None] = []
        previous = started
        answers = answer.get("results") or ()
        for index, (event, outcome) in enumerate(zip(events, answers, strict=False)):
            output = tuple(str(line) for line in outcome.get("output") or ())
            self._print(info.full_name, event, output)
            end = finished[index] if index < len(finished) else time.time()
            ok = bool(outcome.get("ok"))
            error = "" if ok else str((outcome.get("error") or {}).get("message") or "failed")
            self.report.one_of_batch(info.full_name, sink.name, event, previous, end, error)
            previous = end
            if not ok:
                script.errors += 1
                return BatchResult(results, len(results), error, output, tuple(finished))
            results.append(self._delivered(sink, outcome, output))
        if len(results) < len(events):
            return BatchResult(results, len(results), f"The worker of {info.script} stopped early.")
        return BatchResult(results, finished=tuple(finished))

    def _delivered(
        self,
        sink: MethodSink,
        outcome: JSONObject,
        output: tuple[str, ...],
    ) -> DeliveryResult | None:
        directives = directives_of(sink, outcome.get("directives") or ())
        result = outcome.get("result")
        if not directives and not output and result is None:
            return None
        value = "" if result is None else said(result)
        return DeliveryResult(directives=directives, output=output, value=value)

    # -- calling ----------------------------------------------------------------------------

    async def call(
        self, script: str, method: str, params: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Call `script.method` with `params` and return its result; MethodFailed if it fails."""
        found = self.workers.scripts.get(script)
        if found is None or method not in found.methods:
            raise NotFound(f"There is no method named {f'{script}.{method}'!r}.", what=method)
        return (await self.invoke(found.methods[method], params, timeout=timeout)).result

    async def call_name(
        self,
        name: str,
        params: Any = None,
        *,
        owner: str = "",
        actor: Actor | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call a method by `script.method` (or a plain, unambiguous `method`)."""
        info = self.find(name)
        return (await self.invoke(info, params, owner=owner, actor=actor, timeout=timeout)).result

    async def invoke(
        self,
        info: MethodInfo,
        params: Any,
        *,
        event: Event | None = None,
        owner: str = "",
        actor: Actor | None = None,
        timeout: float | None = None,
    ) -> CallResult:
        """Run one call on the script's current worker; `params` may be JSON text already."""
        script = self.workers.scripts.get(info.script)
        if script is None:
            raise NotFound(f"There is no method named {info.full_name!r}.", what=info.full_name)
        timeout = self.runtime.config.methods.timeout if timeout is None else timeout
        remote = self.remote
        if remote is not None and remote.elsewhere(info.script):  # its node, over NATS
            return await remote.invoke(
                info, params, event=event, owner=owner, actor=actor, timeout=timeout
            )
        started = time.monotonic()
        worker = await self.workers.current(script, timeout)
        if worker is None:
            detail = f": {script.problem}" if script.problem else ""
            raise failed(
                info,
                INTERNAL_ERROR,
                f"The method script {info.script} has no running worker{detail}.",
                {"reason": "unavailable", "state": script.state.value},
            )
        remaining = max(timeout - (time.monotonic() - started), 0.001)
        trace = self.report.begin(event, info.full_name)
        token = CURRENT_TRACE.set(trace[1]) if trace[1] else None  # what the call raises
        started = time.time()
        try:
            done = await self._call(
                info, script, worker, params, event, owner, actor, remaining, timeout
            )
        except MethodFailed as exc:
            self.report.end(info.full_name, started, time.time(), exc.message or "failed", trace)
            raise
        finally:
            if token is not None:
                CURRENT_TRACE.reset(token)
        self.report.end(info.full_name, started, time.time(), "", trace)
        return done

    async def _call(
        self,
        info: MethodInfo,
        script: MethodScript,
        worker: MethodProcess,
        params: Any,
        event: Event | None,
        owner: str,
        actor: Actor | None,
        remaining: float,
        timeout: float,
    ) -> CallResult:
        """One `call` request to the worker, and its answer as a CallResult or MethodFailed."""
        params_json = params if isinstance(params, str) else encode_params(info, params)
        event_json = f',"event":{encode_event(event)}' if event is not None else ""
        body = self._call_body(info, f'"params":{params_json}{event_json}', remaining)
        script.calls += 1
        context = (
            CallContext((event,), event.owner, actor, info.full_name)
            if event is not None
            else CallContext((), owner, actor, trace=CURRENT_TRACE.get())
        )
        try:
            answer = await worker.request("call", body, timeout=remaining, context=context)
        except (WorkerTimeout, WorkerDied, RemoteError) as exc:
            script.errors += 1
            raise self._transport_failure(info, timeout, exc, stopping=worker.closing) from None
        output = tuple(str(line) for line in answer.get("output") or ())
        self._print(info.full_name, event, output)
        if not answer.get("ok"):
            script.errors += 1
            error = RpcError.from_object(answer.get("error") or {}, message="The method failed.")
            raise failed(info, error.code, error.message, error.data, output)
        directives = tuple(d for d in answer.get("directives") or () if isinstance(d, dict))
        return CallResult(answer.get("result"), output, directives)

    def _transport_failure(
        self,
        info: MethodInfo,
        timeout: float,
        exc: WorkerTimeout | WorkerDied | RemoteError,
        *,
        stopping: bool,
    ) -> MethodFailed:
        if isinstance(exc, WorkerTimeout):
            error = timed_out(info.full_name, timeout)
            return failed(info, error["code"], error["message"], error["data"])
        if isinstance(exc, WorkerBlocked):
            return failed(
                info,
                INTERNAL_ERROR,
                f"The call to {info.full_name} could not finish: the worker of method script "
                f"{info.script} is blocked ({exc.how}); it is being restarted.",
                {"reason": "worker_stopped", "how": exc.how},
            )
        if isinstance(exc, WorkerDied):
            if stopping:  # the script was removed, or the runtime stops
                how, then = "the runtime stopped it", ""
            else:
                how, then = exc.how, "; it is being restarted"
            return failed(
                info,
                INTERNAL_ERROR,
                f"The worker of method script {info.script} stopped during the call to "
                f"{info.full_name} ({how}){then}.",
                {"reason": "worker_stopped", "how": how},
            )
        return failed(info, exc.code, exc.message, exc.data)

    def rpc(self, *, owner: str = "", actor: Actor | None = None) -> Callable[[str], Handler]:
        """A JSON-RPC method lookup for `rpc.dispatch`, calling as this caller."""

        def lookup(name: str) -> Handler:
            try:
                info = self.find(name)
            except NotFound as exc:
                detail = exc.message

                async def missing(params: Any) -> Any:
                    raise RpcError(METHOD_NOT_FOUND, data={"method": name, "detail": detail})

                return missing

            async def handler(params: Any) -> Any:
                try:
                    done = await self.invoke(info, params, owner=owner, actor=actor)
                except MethodFailed as exc:
                    raise RpcError(exc.code, exc.message, exc.data) from None
                return done.result

            return handler

        return lookup

    async def _serve(
        self, script: str, method: str, params: JSONObject, context: Any, deadline: float | None
    ) -> Any:
        """A worker's request while it handles a call (or loads): `emit` (depth-limited like
        sinks), or the libraries' `http`, `kv` and `secret`."""
        if not isinstance(context, CallContext):
            raise KnotError(f"The call that asked for {method} has already ended.")
        if method != "emit":
            index = params.get("index") or 0
            if not isinstance(index, int) or not 0 <= index < max(len(context.events), 1):
                raise KnotError(f"{method} came for a call this one does not have.")
            found = self.workers.scripts.get(script)
            ref = ScriptRef("methods", script, found.path if found is not None else "")
            use = context.use(index)
            return await self.runtime.script_libraries.serve(
                ref, method, params, use, deadline=deadline
            )
        if "call" not in params:  # the script's top level, while it loads
            raise KnotError("knot.event.emit() is only available while a method handles a call.")
        event_type = str(params.get("type"))
        payload = params.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        index = params.get("index") or 0
        if isinstance(index, int):  # the worker counts too; this holds if it does not
            context.emits[index] = context.emits.get(index, 0) + 1
            limit = self.runtime.config.methods.max_emits
            if context.emits[index] > limit:
                raise KnotError(f"More than {limit} emits in one call (methods.max_emits).")
        if context.events and isinstance(index, int) and 0 <= index < len(context.events):
            parent = context.events[index]
            event_id = await self.runtime.emit_child(
                parent,
                event_type,
                payload,
                sink=context.sink,
                index=context.emits[index] - 1,
            )
        else:
            options: dict[str, Any] = {"owner": context.owner, "trace": context.trace}
            if context.actor is not None:
                options["actor"] = context.actor
            event_id = await self.runtime.emit(event_type, payload, **options)
        return {"id": event_id}

    def _print(self, name: str, event: Event | None, lines: tuple[str, ...]) -> None:
        if not lines:
            return
        if event is not None:
            self.runtime.sink_output(name, event, lines)
            return
        log_output(f"knot.method.{name}", name, lines)
