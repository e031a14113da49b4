"""A method-script worker seen from the runtime: many calls in flight over one pipe.

`MethodProcess` starts `knot.sandbox.worker.method`, loads the script into it, and makes
requests to it concurrently: one reader task hands each answer to the request waiting for it
and serves the worker's own requests (`emit`) as they come. A request that runs past its time
(which starts over at each `progress` the worker reports for a batch) fails at once with
WorkerTimeout; the worker is told to cancel it and, if it has not let go of it within `grace`
seconds (one long C call), the worker is killed. Such a call holds the whole worker meanwhile:
a request that runs out of time while another is past its own fails with WorkerBlocked (a
WorkerDied: the worker is about to be restarted), not as its own timeout. `exited` resolves
(with how the process ended) when the worker is gone, whoever ended it; every request still
waiting then fails with WorkerDied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._json import JSONObject
from .._jsonrpc import SERVER_ERROR, encode, error_response, notification, request_text, response
from .process import (
    Redact,
    RemoteError,
    WorkerBlocked,
    WorkerDied,
    WorkerProcess,
    WorkerTimeout,
    error_data,
)

__all__ = ["MethodProcess", "RequestHandler"]

log = logging.getLogger("knot.methods")

BLOCKED_AFTER = 0.2  # seconds a cancelled call may take to let go before it counts as stuck

RequestHandler = Callable[[str, JSONObject, Any, "float | None"], Awaitable[Any]]
"""Serves a request from the worker: (method, params, context of the call it belongs to, the
loop time that call's clock runs out, or None)."""


class MethodProcess:
    def __init__(self, worker: WorkerProcess, on_request: RequestHandler, grace: float) -> None:
        self.worker = worker
        self.on_request = on_request
        self.grace = grace
        self.exited: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.kill_reason = ""  # why we killed it, when we did
        self.closing = False
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._contexts: dict[int, Any] = {}
        self._overdue: dict[int, asyncio.TimerHandle] = {}
        self._clocks: dict[int, tuple[asyncio.Timeout, float, Callable[[], None] | None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read(), name=f"knot-method-worker-{worker.pid}")

    @classmethod
    async def start(
        cls,
        *,
        memory_mb: int,
        threads: int,
        on_request: RequestHandler,
        grace: float = 2.0,
        redact: Redact | None = None,
    ) -> MethodProcess:
        worker = await WorkerProcess.spawn(
            memory_mb=memory_mb, module="method", args=("--threads", str(threads)), redact=redact
        )
        return cls(worker, on_request, grace)

    @property
    def pid(self) -> int:
        return self.worker.pid

    @property
    def alive(self) -> bool:
        return not self.exited.done() and self.worker.alive

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def load(
        self,
        name: str,
        source: str,
        filename: str,
        *,
        timeout: float,
        limits: str = "",
        context: Any = None,
    ) -> JSONObject:
        """Load the script (once); a top level that runs past `timeout` gets the worker killed.

        `limits` are run limits as JSON members (`,"http_max_requests":100,...`)."""
        params = {"name": name, "source": source, "filename": filename, "timeout": timeout}
        try:
            body = encode(params)
            if limits:
                body = f"{body[:-1]}{limits}}}"
            answer: JSONObject = await self.request("load", body, timeout=timeout, context=context)
        except WorkerTimeout:
            self.kill(f"its top level ran longer than {timeout:g} s")
            raise
        return answer

    async def request(
        self,
        method: str,
        params: str,
        *,
        timeout: float | None = None,
        context: Any = None,
        on_progress: Callable[[], None] | None = None,
    ) -> Any:
        """Send `method` with `params` (JSON text of an object) and wait for its answer.

        `timeout` starts over at each `progress` notification for this request (one call of a
        batch done), which also calls `on_progress`.
        """
        if not self.alive:
            raise WorkerDied(self._how())
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._contexts[request_id] = context
        self._idle.clear()
        try:
            self.worker.send(request_text(request_id, method, params))
            async with asyncio.timeout(timeout) as clock:
                if timeout is not None:
                    self._clocks[request_id] = (clock, timeout, on_progress)
                return await future
        except (TimeoutError, asyncio.CancelledError) as exc:
            blocked = self._blocked()
            if request_id in self._pending:  # not answered: still running in the worker
                self._abandon(request_id)
            if isinstance(exc, TimeoutError):
                if blocked:
                    raise WorkerBlocked(
                        "another call ran past its time and holds the worker in one long operation"
                    ) from None
                raise WorkerTimeout() from None
            raise
        finally:
            self._forget(request_id)

    def _forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)
        self._contexts.pop(request_id, None)
        self._clocks.pop(request_id, None)
        if not self._pending and not self._overdue:
            self._idle.set()

    def _abandon(self, request_id: int) -> None:
        """Nobody waits for this request any more: cancel it in the worker, with a deadline.

        (Its bookkeeping goes in `call`'s `finally`, `_forget`, right after.)"""
        if not self.alive:
            return
        loop = asyncio.get_running_loop()
        self._overdue[request_id] = loop.call_later(self.grace, self._overran, request_id)
        with contextlib.suppress(WorkerDied):
            self.worker.send(notification("cancel", {"id": request_id}))

    def _blocked(self) -> bool:
        """Whether another request, past its time, has held on to the worker for a while.

        A cancelled call that runs script code lets go within milliseconds; one that has not
        after BLOCKED_AFTER is in one long C call, and nothing else in the worker runs.
        """
        if self.kill_reason:
            return True
        now = asyncio.get_running_loop().time()
        return any(
            now - timer.when() + self.grace >= BLOCKED_AFTER for timer in self._overdue.values()
        )

    def _overran(self, request_id: int) -> None:
        self._overdue.pop(request_id, None)
        self.kill(f"a call did not stop within {self.grace:g} s of its time running out")

    async def drained(self) -> None:
        """Wait until no request is in flight (nor a cancelled one still running)."""
        await self._idle.wait()

    async def _read(self) -> None:
        how = ""
        try:
            while True:
                message = await self.worker.receive()
                if "method" in message:
                    if "id" in message:
                        task = asyncio.create_task(self._serve(message))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    elif message["method"] == "progress":
                        self._progress(message.get("params"))
                    continue
                self._answered(message)
        except WorkerDied as exc:
            how = exc.how
        except WorkerTimeout:
            how = "it was killed"
        except Exception as exc:  # a protocol breach: the worker cannot be trusted any more
            how = f"it broke the protocol ({exc})"
            self.worker.kill()
        finally:
            self._ended(how or "it stopped")

    def _answered(self, message: JSONObject) -> None:
        request_id = message.get("id")
        if not isinstance(request_id, int):
            return
        timer = self._overdue.pop(request_id, None)
        if timer is not None:  # a cancelled call let go in time; nobody waits for its answer
            timer.cancel()
            if not self._pending and not self._overdue:
                self._idle.set()
            return
        future = self._pending.pop(request_id, None)  # answered: nothing left to cancel
        if future is None or future.done():
            return
        error = message.get("error")
        if isinstance(error, dict):
            future.set_exception(RemoteError.from_object(error))
        else:
            future.set_result(message.get("result"))

    def _progress(self, params: Any) -> None:
        request_id = params.get("call") if isinstance(params, dict) else None
        entry = self._clocks.get(request_id)  # type: ignore[arg-type]
        if entry is None:
            return
        clock, timeout, on_progress = entry
        if clock.expired():  # too late: the request is failing with WorkerTimeout already
            return
        clock.reschedule(asyncio.get_running_loop().time() + timeout)
        if on_progress is not None:
            on_progress()

    async def _serve(self, message: JSONObject) -> None:
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        call = params.get("call")
        context = self._contexts.get(call)  # type: ignore[arg-type]
        # The call's clock; a request without one comes from the script's top level, whose
        # load is then the only request in flight.
        if call is None:
            clocks = list(self._clocks.values())
            if len(self._contexts) == 1:
                context = next(iter(self._contexts.values()))
        else:
            clocks = [self._clocks[call]] if call in self._clocks else []
        deadline = clocks[0][0].when() if len(clocks) == 1 else None
        reply: JSONObject
        try:
            result = await self.on_request(str(message["method"]), params, context, deadline)
            reply = response(message["id"], result)
        except Exception as exc:
            reply = error_response(message["id"], SERVER_ERROR, str(exc), error_data(exc))
        if self.alive:
            with contextlib.suppress(WorkerDied):
                self.worker.send(reply)

    def _how(self) -> str:
        if self.exited.done():
            return self.exited.result()
        return "it had already stopped"

    def _ended(self, how: str) -> None:
        if self.kill_reason:
            how = f"{self.kill_reason}, so it was stopped"
        for timer in self._overdue.values():
            timer.cancel()
        self._overdue.clear()
        pending = list(self._pending.values())
        self._pending.clear()
        self._contexts.clear()
        for future in pending:
            if not future.done():
                future.set_exception(WorkerDied(how))
        self._idle.set()
        if not self.exited.done():
            self.exited.set_result(how)

    def kill(self, reason: str = "") -> None:
        if reason and not self.kill_reason:
            self.kill_reason = reason
            log.warning("killing method worker %d: %s", self.pid, reason)
        self.worker.kill()

    async def close(self) -> None:
        """Stop the worker: closing its input ends it (a stuck one is killed)."""
        self.closing = True
        await self.worker.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        if not self._reader.done():
            self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
