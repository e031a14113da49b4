"""A space's process: started in its own process group, stopped with SIGTERM then SIGKILL.

The group is what gets signalled, never just the leader: `cmd` runs under `/bin/sh -c`, and
whatever it starts must stop with it. A space's process lives in its own session, so it also
survives a crash of the runtime; `reap_orphan` finds and stops it when the runtime comes back.
It starts without the runtime's descriptors (see `launch.py`): a space outliving the runtime
must not keep the HTTP API's port open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from .launch import spawn_shell

__all__ = ["SpaceProcess", "group_alive", "read_tail", "reap_orphan"]

POLL_SECONDS = 0.05
LOG_TAIL_BYTES = 256 * 1024  # how much of a log file `read_tail` looks at
KILL_WAIT = 2.0  # SIGKILL cannot be refused, but the kernel takes a moment to deliver it


@dataclass
class SpaceProcess:
    proc: asyncio.subprocess.Process
    created: float  # the leader's start time (psutil), to recognise it after a crash

    @property
    def pid(self) -> int:
        return self.proc.pid  # also the process group id

    @classmethod
    async def spawn(
        cls, cmd: str, *, cwd: Path, env: Mapping[str, str], log_path: Path, header: str
    ) -> SpaceProcess:
        """Start `cmd` with its output appended to `log_path`; raises OSError if it cannot."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(header.encode())
            log.flush()
            proc = await spawn_shell(
                cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # it already exited; the watcher will see that
            created = 0.0
        return cls(proc, created)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def terminate(self, grace: float) -> int:
        """SIGTERM the group; SIGKILL whatever is left after `grace` seconds. Returns the
        leader's exit code (negative: the signal that ended it)."""
        _signal_group(self.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.proc.wait()
                await _group_gone(self.pid)
        except TimeoutError:
            _signal_group(self.pid, signal.SIGKILL)
            await self.proc.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT):
                    await _group_gone(self.pid)
        return await self.proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _group_gone(pgid: int) -> None:
    while await asyncio.to_thread(group_alive, pgid):
        await asyncio.sleep(POLL_SECONDS)


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a live (non-zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg also succeeds for zombies nobody has reaped yet (an init that does not reap, in
    # containers): look at the members themselves.
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


async def reap_orphan(pgid: int, created: float, grace: float) -> bool:
    """Stop what is left of a space's process group from before a runtime crash.

    The group is ours if its leader is gone (the kernel does not hand out a pid that is still
    some group's id) or if the leader has the start time we recorded. Returns whether anything
    had to be stopped.
    """
    if pgid <= 0 or not await asyncio.to_thread(group_alive, pgid):
        return False
    try:
        leader_created = psutil.Process(pgid).create_time()
    except psutil.NoSuchProcess:
        pass
    except psutil.Error:
        return False
    else:
        if abs(leader_created - created) > 0.01:
            return False  # the pid was reused by an unrelated process
    _signal_group(pgid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await _group_gone(pgid)
    except TimeoutError:
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_WAIT):
                await _group_gone(pgid)
    return True


def read_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a space's log file (none if it has not run yet)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []
