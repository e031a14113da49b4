"""Local spaces: named workloads the runtime starts, stops and health-checks, and the system
events they raise (space.created / started / stopped / deleted / healthy / unhealthy).

System events come from here alone, through `Runtime.emit_system`, with Knot's payload fields.
Every change to one space happens under that space's lock and awaits its event before the
lock is released, so the events of one space are journaled, and therefore delivered to every
sink, in the order they happened.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .._env import child_environment
from .._events import Space, now_rfc3339
from .._exceptions import NotFound, RuntimeClosed, SpaceError
from .._json import JSONObject
from ..types import PartHost
from .health import HealthChange, HealthState, HealthTracker, probe
from .process import SpaceProcess, read_tail, reap_orphan
from .spec import OnRestart, SpaceInfo, SpaceRecord, SpaceSpec, SpaceState

__all__ = ["Spaces", "SpacesPart"]

log = logging.getLogger("knot.spaces")
KV_SPACES = "spaces"
KV_NODE = "node"


@dataclass
class _Live:
    """What a running space holds in this process: its process and its background tasks."""

    process: SpaceProcess | None
    tracker: HealthTracker | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False


@dataclass
class _Space:
    record: SpaceRecord
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    live: _Live | None = None
    deleted: bool = False


class Spaces:
    """The spaces of one runtime: `runtime.spaces.create("web", cmd=..., start=True)`.

    Methods that take `owner` look only at that owner's spaces when it is not None (what an
    HTTP caller who is a registered user may see); None means every space.
    """

    def __init__(self) -> None:
        self._host: PartHost | None = None
        self._spaces: dict[str, _Space] = {}
        self._lock = asyncio.Lock()  # creating and deleting (names are unique)
        self._http: httpx.AsyncClient | None = None
        self.node_id = ""
        self.log_dir = Path(".knot/spaces")

    @property
    def host(self) -> PartHost:
        if self._host is None:
            raise RuntimeClosed("The runtime is not running; start it before using spaces.")
        return self._host

    # -- the API ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        *,
        cmd: str = "",
        urls: Iterable[str] = (),
        health: str = "",
        interval: float | None = None,
        timeout: float | None = None,
        threshold: int = 1,
        template_id: str = "",
        startup_script_id: str = "",
        on_restart: OnRestart | str = OnRestart.START,
        owner: str = "",
        start: bool = False,
    ) -> SpaceInfo:
        """Create a space (raising space.created); with `start=True` also start it."""
        raw: dict[str, Any] = {
            "name": name,
            "cmd": cmd,
            "urls": list(urls),
            "health": health,
            "interval": interval,
            "timeout": timeout,
            "threshold": threshold,
            "template_id": template_id,
            "startup_script_id": startup_script_id,
            "on_restart": str(on_restart),
            "owner": owner,
        }
        return await self.create_from(raw, start=start)

    async def create_from(self, raw: Mapping[str, Any], *, start: bool = False) -> SpaceInfo:
        """Create a space from flat fields (an API body); SpaceError lists every problem."""
        spec = SpaceSpec.from_dict(raw)
        self._check_open()
        async with self._lock:
            if any(s.record.name == spec.name for s in self._spaces.values()):
                raise SpaceError(f"A space named {spec.name!r} already exists.", space=spec.name)
            record = SpaceRecord(spec, id=str(uuid.uuid4()), created_at=now_rfc3339())
            space = _Space(record)
            self._spaces[record.id] = space
            async with space.lock:
                await self._persist(record)
                await self._raise(
                    space,
                    "space.created",
                    {
                        "space_urls": list(spec.urls),
                        "template_id": spec.template_id,
                        "startup_script_id": spec.startup_script_id,
                    },
                )
                log.info("space %s created (%s)", spec.name, record.id)
                if start:
                    await self._start_locked(space)
        return self._info(space)

    async def start(self, name: str, *, owner: str | None = None) -> SpaceInfo:
        """Start a space (raising space.started); a running space is left as it is."""
        space = self._find(name, owner)
        async with space.lock:
            self._check_alive(space)
            await self._start_locked(space)
        return self._info(space)

    async def stop(self, name: str, *, owner: str | None = None) -> SpaceInfo:
        """Stop a space (raising space.stopped): SIGTERM, then SIGKILL after `stop_grace`."""
        space = self._find(name, owner)
        async with space.lock:
            self._check_alive(space)
            await self._stop_locked(space)
        return self._info(space)

    async def delete(self, name: str, *, owner: str | None = None) -> SpaceInfo:
        """Stop the space if it runs (space.stopped), then delete it (space.deleted)."""
        space = self._find(name, owner)
        async with self._lock, space.lock:
            self._check_alive(space)
            await self._stop_locked(space)
            record = space.record
            space.deleted = True
            del self._spaces[record.id]
            await self.host.kv_delete(KV_SPACES, record.id)
            await self._raise(space, "space.deleted", {"deleted_at": now_rfc3339()})
            log.info("space %s deleted", record.name)
        return self._info(space)

    def get(self, name: str, *, owner: str | None = None) -> SpaceInfo:
        """One space by name or id."""
        return self._info(self._find(name, owner))

    def list(self, *, owner: str | None = None) -> builtins.list[SpaceInfo]:
        spaces = sorted(self._spaces.values(), key=lambda s: s.record.name)
        return [self._info(s) for s in spaces if owner is None or s.record.spec.owner == owner]

    async def logs(
        self, name: str, *, lines: int = 100, owner: str | None = None
    ) -> builtins.list[str]:
        """The last `lines` lines its process wrote (stdout and stderr)."""
        path = self._log_path(self._find(name, owner).record)
        return await asyncio.to_thread(read_tail, path, lines)

    # -- the runtime part -------------------------------------------------------------------

    async def _open(self, host: PartHost) -> None:
        self._host = host
        self.log_dir = host.state_dir / "spaces"
        self.node_id = await self._load_node_id()
        for raw in host.kv_all(KV_SPACES).values():
            try:
                record = SpaceRecord.from_store(raw)
            except Exception as exc:
                log.error("a stored space could not be loaded: %s", exc)
                continue
            self._spaces[record.id] = _Space(record)
        for space in list(self._spaces.values()):
            try:
                await self._recover(space)
            except Exception:
                log.exception("space %s could not be recovered", space.record.name)

    async def _close(self) -> None:
        await asyncio.gather(*(self._shutdown(s) for s in list(self._spaces.values())))
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._spaces.clear()
        self._host = None

    async def _recover(self, space: _Space) -> None:
        """Bring a stored space back: after a crash its process may still run (its own
        session outlives the runtime), so stop that first; then apply `on_restart`."""
        record = space.record
        async with space.lock:
            if record.state is SpaceState.RUNNING and not record.spec.cmd:
                self._begin(space, self._go_live(space, None))  # a record only: checks resume
                return
            if record.state is SpaceState.RUNNING:
                grace = self.host.config.spaces.stop_grace
                if await reap_orphan(record.pid, record.pid_created, grace):
                    log.warning("space %s: stopped its process left from before", record.name)
                await self._mark_stopped(space, exit_code=None, resume=True)
            if record.resume and record.spec.on_restart is OnRestart.START:
                await self._start_locked(space)
            elif record.resume:
                record.resume = False
                await self._persist(record)

    async def _shutdown(self, space: _Space) -> None:
        async with space.lock:
            if space.live is None:
                return
            if space.record.spec.cmd:
                await self._stop_locked(space, resume=True)
            else:  # a record only keeps its state; its checks resume with the runtime
                await _cancel(space.live.tasks)
                space.live = None

    # -- lifecycle (callers hold space.lock) ------------------------------------------------

    async def _start_locked(self, space: _Space) -> None:
        record = space.record
        if record.state is SpaceState.RUNNING:
            return
        process = None
        started_at = now_rfc3339()
        if record.spec.cmd:
            try:
                process = await SpaceProcess.spawn(
                    record.spec.cmd,
                    cwd=self.host.project,
                    env=child_environment(
                        {"KNOT_SPACE_ID": record.id, "KNOT_SPACE_NAME": record.name}
                    ),
                    log_path=self._log_path(record),
                    header=f"--- {started_at} knot: starting space {record.name}: "
                    f"{record.spec.cmd}\n",
                )
            except OSError as exc:
                raise SpaceError(
                    f"The space {record.name!r} could not start its command: "
                    f"{exc.strerror or exc}.",
                    space=record.name,
                ) from None
        record.state = SpaceState.RUNNING
        record.started_at = started_at
        record.stopped_at = ""
        record.exit_code = None
        record.resume = False
        record.pid = process.pid if process else 0
        record.pid_created = process.created if process else 0.0
        live = self._go_live(space, process)
        await self._persist(record)
        await self._raise(
            space,
            "space.started",
            {
                "space_urls": list(record.spec.urls),
                "node_id": self.node_id,
                "started_at": started_at,
            },
        )
        log.info("space %s started%s", record.name, f" (pid {record.pid})" if process else "")
        self._begin(space, live)

    @staticmethod
    def _go_live(space: _Space, process: SpaceProcess | None) -> _Live:
        health = space.record.spec.health
        live = _Live(process, HealthTracker(threshold=health.threshold) if health else None)
        space.live = live
        return live

    def _begin(self, space: _Space, live: _Live) -> None:
        name = space.record.name
        if live.process is not None:
            live.tasks.append(
                asyncio.create_task(self._watch(space, live), name=f"knot-space-{name}-watch")
            )
        if live.tracker is not None:
            live.tasks.append(
                asyncio.create_task(self._check(space, live), name=f"knot-space-{name}-health")
            )

    async def _stop_locked(self, space: _Space, *, resume: bool = False) -> None:
        live = space.live
        if space.record.state is SpaceState.STOPPED:
            return
        space.live = None
        exit_code = None
        if live is not None:
            live.stopping = True
            await _cancel(live.tasks)
            if live.process is not None:
                exit_code = await live.process.terminate(self.host.config.spaces.stop_grace)
        await self._mark_stopped(space, exit_code=exit_code, resume=resume)

    async def _mark_stopped(self, space: _Space, *, exit_code: int | None, resume: bool) -> None:
        record = space.record
        record.state = SpaceState.STOPPED
        record.stopped_at = now_rfc3339()
        record.exit_code = exit_code
        record.pid = 0
        record.pid_created = 0.0
        record.resume = resume
        await self._persist(record)
        await self._raise(space, "space.stopped", {"stopped_at": record.stopped_at})
        code = "" if exit_code is None else f" (exit code {exit_code})"
        log.info("space %s stopped%s", record.name, code)

    # -- background tasks of a running space ------------------------------------------------

    async def _watch(self, space: _Space, live: _Live) -> None:
        """A `cmd` that exits on its own moves the space to stopped."""
        try:
            await self._watch_once(space, live)
        except Exception:
            log.exception("space %s: watching its process failed", space.record.name)

    async def _watch_once(self, space: _Space, live: _Live) -> None:
        assert live.process is not None
        exit_code = await live.process.wait()
        async with space.lock:
            if space.live is not live or live.stopping:
                return  # stopped on purpose: the stopper raises space.stopped
            space.live = None
            live.stopping = True
            await _cancel([t for t in live.tasks if t is not asyncio.current_task()])
            log.warning(
                "space %s: its process exited on its own with code %s", space.record.name, exit_code
            )
            try:
                # The leader is gone; whatever it started must not outlive the space.
                await live.process.terminate(self.host.config.spaces.stop_grace)
                await self._mark_stopped(space, exit_code=exit_code, resume=False)
            except RuntimeClosed:
                log.warning("space %s exited while the runtime stopped", space.record.name)

    async def _check(self, space: _Space, live: _Live) -> None:
        """Run the health check every interval; raise an event on transitions only."""
        try:
            await self._check_forever(space, live)
        except RuntimeClosed:
            pass
        except Exception:
            log.exception("space %s: its health check failed", space.record.name)

    async def _check_forever(self, space: _Space, live: _Live) -> None:
        check = space.record.spec.health
        tracker = live.tracker
        assert check is not None
        assert tracker is not None
        cwd = str(self.host.project)
        while True:
            await asyncio.sleep(check.interval)
            result = await probe(check, http=self._http_client(), cwd=cwd)
            checked_at = now_rfc3339()
            async with space.lock:
                if space.live is not live:
                    return
                change = tracker.observe(result, checked_at)
                if change is not None:
                    await self._raise_health(space, change, tracker.last_error)

    async def _raise_health(self, space: _Space, change: HealthChange, error: str) -> None:
        payload: JSONObject = {"previous": change.previous.value, "current": change.current.value}
        if change.current is HealthState.UNHEALTHY:
            payload["consecutive_failures"] = change.consecutive_failures
            log.warning(
                "space %s is unhealthy after %d failed check%s: %s",
                space.record.name,
                change.consecutive_failures,
                "s" if change.consecutive_failures != 1 else "",
                error,
            )
        else:
            log.info("space %s is healthy", space.record.name)
        payload["checked_at"] = change.checked_at
        await self._raise(space, f"space.{change.current.value}", payload)

    # -- helpers ----------------------------------------------------------------------------

    async def _raise(self, space: _Space, event_type: str, fields: JSONObject) -> None:
        """Raise a system event for `space`, carrying the space and its owner."""
        record = space.record
        payload: JSONObject = {"space_name": record.name, "space_id": record.id, **fields}
        await self.host.emit_system(
            event_type,
            payload,
            space=Space(record.id, record.name, record.spec.urls),
            owner=record.spec.owner,
        )

    async def _persist(self, record: SpaceRecord) -> None:
        key, data = record.id, record.to_store()
        await self.host.kv_put(KV_SPACES, key, data)

    async def _load_node_id(self) -> str:
        """This runtime's node id (Knot's node_id in space.started): made once, then kept."""
        stored = self.host.kv_all(KV_NODE).get("id")
        if stored and isinstance(stored.get("id"), str):
            return str(stored["id"])
        node = str(uuid.uuid4())
        await self.host.kv_put(KV_NODE, "id", {"id": node})
        return node

    def _find(self, name: str, owner: str | None) -> _Space:
        for space in self._spaces.values():
            record = space.record
            if name in (record.name, record.id) and (owner is None or record.spec.owner == owner):
                return space
        raise NotFound(f"There is no space named {name!r}.", what=name)

    def _http_client(self) -> httpx.AsyncClient:
        # Made on first use: its TLS context costs ~20 ms, which runtimes without HTTP
        # health checks should not pay at every start. No proxies from the environment:
        # health URLs are loopback by rule.
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._http

    def _check_open(self) -> None:
        if self._host is None or not self._host.running:
            raise RuntimeClosed("The runtime is not running; start it before using spaces.")

    @staticmethod
    def _check_alive(space: _Space) -> None:
        if space.deleted:
            raise NotFound(f"The space {space.record.name!r} was deleted.", what=space.record.name)

    def _log_path(self, record: SpaceRecord) -> Path:
        return self.log_dir / f"{record.name}.log"

    def _info(self, space: _Space) -> SpaceInfo:
        record = space.record
        health: JSONObject | None = None
        if record.spec.health is not None:
            tracker = space.live.tracker if space.live else None
            health = {**record.spec.health.to_dict(), **(tracker or HealthTracker()).to_dict()}
        return SpaceInfo(
            id=record.id,
            spec=record.spec,
            state=record.state,
            created_at=record.created_at,
            started_at=record.started_at,
            stopped_at=record.stopped_at,
            pid=record.pid,
            exit_code=record.exit_code,
            health=health,
            log=str(self._log_path(record)),
        )


class SpacesPart:
    """Runs a runtime's spaces with it (see `Runtime._default_parts`)."""

    def __init__(self) -> None:
        self.spaces = Spaces()

    async def start(self, host: PartHost) -> None:
        await self.spaces._open(host)

    async def stop(self) -> None:
        await self.spaces._close()


async def _cancel(tasks: Iterable[asyncio.Task[None]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, Exception):
            log.error("a space task failed: %r", result)
