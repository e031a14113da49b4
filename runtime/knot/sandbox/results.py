"""The results pipe of a sink worker: where it reports each event of a `run` as it finishes.

A worker reports every event the moment it is done (so what it finished is known even if the
next event hangs or kills it: the bytes stay in the pipe), but on its own pipe, which the
runtime's event loop does not watch: it reads it when it needs to know (before whatever the
worker says next on its protocol pipe, every couple of milliseconds while a run goes on, and
when the worker stops). On one core, a wake-up of the runtime for each event of a batch, with
the worker preempted each time, cost more than the events themselves (bench_onecore).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import termios

__all__ = ["ResultsPipe", "TooLong"]

SIZE = 1 << 20  # the pipe's buffer: a worker blocks only when this much waits unread


class TooLong(Exception):
    """A line longer than the limit: not a worker of ours."""


class ResultsPipe:
    """The read end (non-blocking, never polled) and, until the worker has it, the write end."""

    def __init__(self, max_line: int) -> None:
        self.read_fd, self.write_fd = os.pipe()  # neither inheritable; pass_fds hands one on
        os.set_blocking(self.read_fd, False)
        with contextlib.suppress(OSError):  # over /proc/sys/fs/pipe-max-size: the default
            fcntl.fcntl(self.read_fd, fcntl.F_SETPIPE_SZ, SIZE)
        self.max_line = max_line
        self._tail = b""

    def handed_over(self) -> None:
        """The worker has its own copy of the write end: close ours."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def lines(self) -> list[bytes]:
        """The complete lines written since the last call (without their newlines)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.read_fd, SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # closed already
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return []
        *lines, self._tail = (self._tail + b"".join(chunks)).split(b"\n")
        if len(self._tail) > self.max_line:
            raise TooLong()
        return lines

    def unread(self) -> bool:
        """Whether the worker has written anything not read yet."""
        try:
            waiting = fcntl.ioctl(self.read_fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(waiting, sys.byteorder) > 0

    def close(self) -> None:
        self.handed_over()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1
