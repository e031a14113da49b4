"""Run a space's shell command (its `cmd`, a health command) without the runtime's descriptors.

`knot serve` runs on uvloop, whose subprocess_exec ignores `close_fds`: a child inherits every
inheritable descriptor of the runtime, and uvloop adds duplicates of its own. A space's `sleep
300` then held the HTTP API's listening socket, so after a crash of the runtime clients hung
on a port nobody served instead of hearing that no runtime answers. Nothing can close the
parent's descriptors between uvloop's fork and the shell's exec from here (a `preexec_fn` would
race uvloop's own pipes), so the command starts through a small launcher: a Python process that
closes every descriptor above stderr, restores the signals Python ignores, and execs `/bin/sh
-c CMD` in its place (same pid, session and process group). It costs one interpreter start
(`-I -S`: no site, no environment, about 15 ms), paid once per space start or health probe.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

__all__ = ["LAUNCHER", "spawn_shell"]

SHELL = "/bin/sh"
LAUNCHER = f"""
import os, signal, sys
try:
    fds = [int(n) for n in os.listdir("/proc/self/fd")]
except OSError:
    fds = [os.sysconf("SC_OPEN_MAX") - 1]
os.closerange(3, max(fds, default=2) + 1)
for name in ("SIGPIPE", "SIGXFSZ"):  # ignored by Python at start-up; an ignore survives exec
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execv({SHELL!r}, [{SHELL!r}, "-c", sys.argv[1]])
except OSError as exc:
    sys.stderr.write(f"knot: cannot run {SHELL}: {{exc.strerror}}\\n")
    os._exit(127)
"""


async def spawn_shell(cmd: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """`asyncio.create_subprocess_shell(cmd, **kwargs)`, minus every descriptor but 0-2."""
    if not sys.executable:  # an embedded interpreter: no launcher to start
        return await asyncio.create_subprocess_shell(cmd, **kwargs)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", "-c", LAUNCHER, cmd, **kwargs
    )
