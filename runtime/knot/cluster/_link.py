"""The NATS connection of one runtime, on a thread and event loop of its own.

The engine calls its storage from the journal's writer thread and from worker threads, and the
runtime's own loop must never wait on the network while it serves HTTP. So the nats-py client
lives on a private loop: blocking callers use `call`, coroutines on another loop `await
link.run(...)`, and a node's heartbeats keep their rhythm however busy the runtime's loop is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import StoreError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

__all__ = ["NatsLink", "import_nats"]

log = logging.getLogger("knot.cluster")
T = TypeVar("T")
CALL_TIMEOUT = 10.0  # seconds a blocking caller waits for one storage operation
JETSTREAM_READY = 20.0  # seconds to wait for a forming NATS cluster's JetStream at start


def import_nats() -> None:
    """Fail with one clear line when the optional client is not installed."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise StoreError(
            "A nats:// store needs the NATS client: pip install 'knot-runtime[cluster]'."
        ) from None


class NatsLink:
    """One nats-py client on its own thread; `connected` says whether NATS answers now."""

    def __init__(self, servers: list[str], *, name: str, connect_timeout: float = 2.0) -> None:
        self.servers = servers
        self.name = name
        self.connect_timeout = connect_timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="knot-nats", daemon=True)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self.connected = False
        self.closing = False
        self.disconnects = 0

    # -- lifecycle --------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def open(self) -> None:
        """Start the thread and connect; raise one StoreError when NATS cannot be reached."""
        import_nats()
        self._thread.start()
        try:
            connecting = self.connect_timeout * len(self.servers) + JETSTREAM_READY + 5
            self.call(self._connect(), timeout=connecting)
        except BaseException:
            self.close()
            raise

    async def _connect(self) -> None:
        import nats

        where = ", ".join(self.servers)
        try:
            self._nc = await nats.connect(
                servers=self.servers,
                name=self.name,
                connect_timeout=self.connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=1,  # at start: fail fast with one clear line
                reconnect_time_wait=0.25,
                ping_interval=1,
                max_outstanding_pings=3,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            raise StoreError(
                f"NATS at {where} cannot be reached ({_reason(exc)}); start nats-server -js "
                "there, or set [store] url to a reachable server."
            ) from None
        # Once connected, reconnect for as long as it takes (writes are refused meanwhile).
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=5.0)
        self.connected = True
        # A NATS cluster that is just forming answers before its JetStream has elected a
        # leader: a timeout means "not yet"; no responders means no JetStream at all.
        deadline = asyncio.get_running_loop().time() + JETSTREAM_READY
        while True:
            try:
                await self._js.account_info()
                return
            except Exception as exc:
                waiting = isinstance(exc, TimeoutError | asyncio.TimeoutError) or (
                    "timeout" in str(exc).lower()
                )
                if waiting and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.25)
                    continue
                raise StoreError(
                    f"NATS at {where} answers but has no JetStream ({_reason(exc)}); start "
                    "it with -js (nats-server -js), and for a NATS cluster give it a moment "
                    "to elect its JetStream leader."
                ) from None

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats: %s", exc)

    async def _on_disconnected(self) -> None:
        if self.connected and not self.closing:
            self.disconnects += 1
            log.warning("lost the connection to NATS; reconnecting (writes are refused)")
        self.connected = False

    async def _on_reconnected(self) -> None:
        self.connected = True
        log.warning("reconnected to NATS")

    def close(self) -> None:
        self.closing = True
        if self._nc is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(self._nc.close(), timeout=5)
        self._nc = None
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(_cancel_the_rest(), timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()

    # -- the client --------------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "NATS is not connected"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "NATS is not connected"
        return self._js

    # -- calling into the link's loop ----------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float = CALL_TIMEOUT) -> T:
        """Run `coro` on the link's loop and wait for it (never from that loop itself)."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StoreError(
                f"NATS did not answer within {timeout:g} s; is the server reachable?"
            ) from None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` from another event loop."""
        return await asyncio.wrap_future(self.submit(coro))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _cancel_the_rest() -> None:
    """End the tasks nats-py leaves behind (consumers' heartbeat checks) before the loop goes."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
