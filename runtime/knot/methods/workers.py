"""One worker process per method script: start, replace on reload, restart after a crash, stop.

- load: a new version gets a new worker; only once it has loaded cleanly do new calls go to
  it, while calls in flight on the old worker finish there (then it stops). A broken version
  (a broken rule, a top level that raises or overruns, a bad declaration) is refused with
  `file:line:col` (logged, kept as the script's problem, audited) and the old worker goes on.
- crash: a worker that dies (killed, out of memory, a call stuck past its time) has already
  failed its calls in flight; it is audited (Method Worker Restarted) and a new one starts
  after `methods.restart_backoff`, with fresh module state. Calls meanwhile wait for it.
- unload: the worker stops (its calls in flight fail).

`changed(script, reason)` is called (under the script's lock) whenever its methods may have
changed, so the owner keeps subscriptions in step (`reason`: why removed ones go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .._audit import AuditEntry, AuditKind
from .._json import JSONObject
from .._logtext import log_output
from ..sandbox.method_process import MethodProcess
from ..sandbox.process import RemoteError, WorkerDied, WorkerTimeout
from ..types import MethodsHost
from .declarations import MethodInfo, declared, load_problems, static_problems

__all__ = ["MethodLoad", "MethodScript", "MethodWorkers", "ScriptState"]

log = logging.getLogger("knot.methods")

STABLE_AFTER = 30.0  # a worker up this long resets the restart backoff


class ScriptState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # its worker died; a new one is on its way
    BROKEN = "broken"  # never loaded cleanly: no worker, no methods


@dataclass(frozen=True, slots=True)
class MethodLoad:
    """What loading one version of a method script did."""

    script: str
    ok: bool
    replaced: bool  # a running version existed (replaced when ok, kept when not)
    methods: tuple[MethodInfo, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    message: str = ""  # why it was refused, as logged and audited


@dataclass
class MethodScript:
    """The runtime's state of one method script."""

    name: str
    path: str
    source: str = ""
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    worker: MethodProcess | None = None
    retiring: set[MethodProcess] = field(default_factory=set)
    state: ScriptState = ScriptState.BROKEN
    problem: str = ""  # why the last version given was refused ("" when it runs)
    restarts: int = 0
    failures: int = 0  # restarts in a row (reset once a worker stays up)
    started: float = 0.0
    calls: int = 0
    errors: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    restart: asyncio.Task[None] | None = None

    def to_dict(self) -> dict[str, Any]:
        worker = self.worker
        alive = worker is not None and worker.alive
        return {
            "script": self.name,
            "path": self.path,
            "state": self.state.value,
            "pid": worker.pid if worker is not None and alive else None,
            "in_flight": worker.in_flight if worker is not None and alive else 0,
            "calls": self.calls,
            "errors": self.errors,
            "restarts": self.restarts,
            "problem": self.problem,
            "methods": [m.to_dict() for m in self.methods.values()],
        }


class _LoadFailed(Exception):
    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


ScriptRequestHandler = Callable[[str, str, JSONObject, Any, "float | None"], Awaitable[Any]]
"""Serves a worker's request: (script, method, params, context of its call, deadline)."""


class MethodWorkers:
    def __init__(
        self,
        runtime: MethodsHost,
        *,
        serve: ScriptRequestHandler,
        changed: Callable[[MethodScript, str], Awaitable[list[str]]],
        load_context: Callable[[], Any] = lambda: None,
    ) -> None:
        self.runtime = runtime
        self.serve = serve
        self.changed = changed
        self.load_context = load_context  # who a script's top level acts for, while it loads
        self.scripts: dict[str, MethodScript] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def load(self, name: str, source: str | None, *, path: str) -> MethodLoad:
        """Start (or replace) the worker of method script `name`; never raises for bad input."""
        script = self.scripts.get(name)
        replaced = script is not None and script.worker is not None
        if source is None:
            return self._refused(name, path, (f"{path}:1:1: not UTF-8 text",), replaced=replaced)
        problems = static_problems(name, source, path)
        if problems:
            return self._refused(name, path, problems, replaced=replaced)
        try:
            worker, infos, output = await self._start(name, source, path)
        except _LoadFailed as failed:
            return self._refused(name, path, failed.problems, replaced=replaced)
        if script is None:
            script = self.scripts[name] = MethodScript(name, path)
        async with script.lock:
            old = script.worker
            script.path, script.source = path, source
            script.problem = ""
            script.failures = 0
            if script.restart is not None:
                script.restart.cancel()
                script.restart = None
            self._adopt(script, worker, infos)
            if old is not None:
                self._retire(script, old)
            warnings = await self.changed(script, "")
        log_output(f"knot.method.{name}", name, output)
        return MethodLoad(name, True, replaced, tuple(infos.values()), (), tuple(warnings))

    async def _start(
        self, name: str, source: str, path: str
    ) -> tuple[MethodProcess, dict[str, MethodInfo], list[str]]:
        settings = self.runtime.config.methods
        serve = self.serve

        async def on_request(
            method: str, params: JSONObject, context: Any, deadline: float | None
        ) -> Any:
            return await serve(name, method, params, context, deadline)

        try:
            worker = await MethodProcess.start(
                memory_mb=settings.memory_mb,
                threads=settings.threads,
                on_request=on_request,
                redact=self.runtime.script_libraries.secrets.redact_message,
            )
        except WorkerDied as exc:
            raise _LoadFailed((f"{path}:1:1: could not start its worker: {exc.how}",)) from None
        infos: dict[str, MethodInfo] = {}
        output: list[str] = []
        try:
            limits = settings.limit_members() + (
                f',"http_max_bytes":{self.runtime.config.scripts.http_max_bytes}'
            )
            answer = await worker.load(
                name,
                source,
                path,
                timeout=settings.timeout,
                limits=limits,
                context=self.load_context(),
            )
            infos, problems = declared(name, path, answer.get("methods") or [])
            output = [str(line) for line in answer.get("output") or []]
        except RemoteError as exc:
            problems = load_problems(path, exc)
        except WorkerTimeout:
            problems = (
                f"{path}:1:1: its top level ran longer than {settings.timeout:g} s "
                "(methods.timeout)",
            )
        except WorkerDied as exc:
            problems = (f"{path}:1:1: its worker stopped while loading it ({exc.how})",)
        except BaseException:  # cancelled (the runtime stops): leave no process behind
            await asyncio.shield(worker.close())
            raise
        if problems:
            await worker.close()
            raise _LoadFailed(problems)
        return worker, infos, output

    def _adopt(
        self, script: MethodScript, worker: MethodProcess, infos: dict[str, MethodInfo]
    ) -> None:
        script.worker = worker
        script.methods = infos
        script.state = ScriptState.RUNNING
        script.started = time.monotonic()
        script.ready.set()
        self._spawn(self._watch(script, worker))

    def _refused(
        self, name: str, path: str, problems: tuple[str, ...], *, replaced: bool
    ) -> MethodLoad:
        script = self.scripts.get(name)
        if script is None:
            script = self.scripts[name] = MethodScript(name, path)
        script.problem = "\n".join(problems)
        if replaced:
            message = f"kept the last good version of method script {name} ({path}): "
        else:
            message = f"could not load method script {name} ({path}): "
        message += "; ".join(problems)
        log.error("%s", message)
        self.runtime.record_audit(AuditEntry.new(AuditKind.METHOD_REJECTED, message, sink=name))
        return MethodLoad(name, False, replaced, problems=problems, message=message)

    def _retire(self, script: MethodScript, worker: MethodProcess) -> None:
        """Let the calls in flight on an old worker finish, then stop it."""
        script.retiring.add(worker)
        budget = self.runtime.config.methods.timeout + worker.grace + 1.0

        async def retire() -> None:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.drained(), budget)
                await worker.close()
            finally:
                script.retiring.discard(worker)

        self._spawn(retire())

    async def unload(self, name: str, *, reason: str) -> MethodScript | None:
        """Stop the script's worker; the script as it was (None if it was not known)."""
        script = self.scripts.pop(name, None)
        if script is None:
            return None
        async with script.lock:
            if script.restart is not None:
                script.restart.cancel()
            worker, script.worker = script.worker, None
            script.methods = {}
            script.ready.clear()
            await self.changed(script, reason)
            if worker is not None:
                await worker.close()
        return script

    async def current(self, script: MethodScript, timeout: float) -> MethodProcess | None:
        """The worker new calls go to, waiting (up to `timeout`) while it restarts."""
        worker = script.worker
        if worker is None:
            return None
        if worker.alive and script.state is ScriptState.RUNNING:
            return worker
        if script.state is ScriptState.RUNNING:  # it just died: let its watcher see to it
            await worker.exited
            await asyncio.sleep(0)
        if script.state is ScriptState.RESTARTING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(script.ready.wait(), timeout)
            worker = script.worker
            if worker is not None and worker.alive and script.ready.is_set():
                return worker
        return None

    async def close(self) -> None:
        self._closed = True
        for script in list(self.scripts.values()):
            if script.restart is not None:
                script.restart.cancel()
            for worker in [script.worker, *script.retiring]:
                if worker is not None:
                    await worker.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.scripts.clear()
        self._closed = False  # a runtime can be started again

    # -- crashes ----------------------------------------------------------------------------

    def _delay(self, failures: int) -> float:
        backoff = self.runtime.config.methods.restart_backoff or (0.0,)
        return backoff[min(failures, len(backoff) - 1)]

    async def _watch(self, script: MethodScript, worker: MethodProcess) -> None:
        how = await worker.exited
        if self._closed or worker.closing or script.worker is not worker:
            return
        if self.scripts.get(script.name) is not script:
            return
        script.state = ScriptState.RESTARTING
        script.ready.clear()
        if time.monotonic() - script.started > STABLE_AFTER:
            script.failures = 0
        delay = self._delay(script.failures)
        message = (
            f"The worker of method script {script.name} ({script.path}) stopped: {how}. Calls "
            f"in flight on it failed; a new worker starts in {delay:g} s, with fresh module state."
        )
        log.warning("%s", message)
        self.runtime.record_audit(
            AuditEntry.new(AuditKind.WORKER_RESTARTED, message, sink=script.name)
        )
        script.restart = asyncio.current_task()
        while True:
            await asyncio.sleep(delay)
            script.failures += 1
            async with script.lock:
                if script.worker is not worker or self._closed:
                    return  # a reload or an unload came first
                try:
                    fresh, infos, _ = await self._start(script.name, script.source, script.path)
                except _LoadFailed as failed:
                    script.problem = "\n".join(failed.problems)
                    delay = self._delay(script.failures)
                    log.error(
                        "could not restart method script %s: %s (next try in %g s)",
                        script.name,
                        "; ".join(failed.problems),
                        delay,
                    )
                    continue
                script.restarts += 1
                script.restart = None
                script.problem = ""
                self._adopt(script, fresh, infos)
                await self.changed(script, "")
            log.info("restarted method script %s (worker %d)", script.name, fresh.pid)
            return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
