"""Health checks of a space: one probe (an HTTP GET or a command) and the transition rule.

Only transitions are news: `HealthTracker.observe` returns a HealthChange when the state flips
(the first result after a start counts as one, from `unknown`) and None otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import httpx

from .._json import JSONObject
from .launch import spawn_shell
from .spec import HealthCheck, HealthKind

__all__ = ["HealthChange", "HealthState", "HealthTracker", "ProbeResult", "probe"]


class HealthState(StrEnum):
    UNKNOWN = "unknown"  # no result since the space started
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class ProbeResult(NamedTuple):
    ok: bool
    detail: str  # why it failed ("" when ok)


class HealthChange(NamedTuple):
    previous: HealthState
    current: HealthState
    consecutive_failures: int
    checked_at: str


@dataclass
class HealthTracker:
    """The health of one running space. `threshold` failures in a row make it unhealthy."""

    threshold: int = 1
    state: HealthState = HealthState.UNKNOWN
    consecutive_failures: int = 0
    checked_at: str = ""
    last_error: str = ""

    def observe(self, result: ProbeResult, checked_at: str) -> HealthChange | None:
        self.checked_at = checked_at
        previous = self.state
        if result.ok:
            self.consecutive_failures = 0
            self.last_error = ""
            current = HealthState.HEALTHY
        else:
            self.consecutive_failures += 1
            self.last_error = result.detail
            reached = self.consecutive_failures >= self.threshold
            current = HealthState.UNHEALTHY if reached else previous
        if current is previous:
            return None
        self.state = current
        return HealthChange(previous, current, self.consecutive_failures, checked_at)

    def to_dict(self) -> JSONObject:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "checked_at": self.checked_at,
            "last_error": self.last_error,
        }


async def probe(check: HealthCheck, *, http: httpx.AsyncClient, cwd: str) -> ProbeResult:
    """Run one health check; never raises for a failing target (that is a result)."""
    if check.kind is HealthKind.HTTP:
        return await _probe_http(check, http)
    return await _probe_command(check, cwd)


async def _probe_http(check: HealthCheck, http: httpx.AsyncClient) -> ProbeResult:
    try:
        response = await http.get(check.target, timeout=check.timeout)
    except httpx.TimeoutException:
        return ProbeResult(False, f"GET {check.target} timed out after {check.timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"GET {check.target} failed: {exc or type(exc).__name__}")
    if 200 <= response.status_code < 400:
        return ProbeResult(True, "")
    return ProbeResult(False, f"GET {check.target} answered HTTP {response.status_code}")


async def _probe_command(check: HealthCheck, cwd: str) -> ProbeResult:
    try:
        proc = await spawn_shell(  # without the runtime's descriptors, as a space's cmd
            check.target,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,  # so a timeout can kill everything the check started
        )
    except OSError as exc:
        return ProbeResult(False, f"the health command could not start: {exc.strerror}")
    try:
        code = await asyncio.wait_for(proc.wait(), check.timeout)
    except TimeoutError:
        return ProbeResult(False, f"the health command ran over {check.timeout:g} s")
    finally:
        if proc.returncode is None:  # timed out or cancelled: leave nothing behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
    if code == 0:
        return ProbeResult(True, "")
    return ProbeResult(False, f"the health command exited with code {code}")
