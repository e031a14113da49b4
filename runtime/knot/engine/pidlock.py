"""A lock file held for a process's life, naming its holder: one runtime per store, one node
per state folder. The lock is `flock` (released by the kernel when the process dies, however
it dies); the file holds the holder's pid, for the message the next one gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

__all__ = ["LockHeld", "hold", "let_go"]


class LockHeld(Exception):
    """Another process holds the lock; `pid` is the one it wrote (0 when unreadable)."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"held by pid {pid or '?'}")
        self.pid = pid


def hold(fd: int) -> None:
    """Lock the open file `fd` without waiting and write this process's pid in it.

    Raises LockHeld (and closes `fd`) when another process holds it, and OSError (keeping the
    lock, for `let_go`) when the pid cannot be written."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise LockHeld(int(other) if other.isdigit() else 0) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def let_go(fd: int | None) -> None:
    """Release and close a lock `hold` took (nothing for None)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
