"""A space's processes get none of the runtime's descriptors, above all not its listening socket.

uvloop's subprocess_exec ignores close_fds, and the API's socket used to be inheritable: a
space's `sleep 300` kept the port open, so after `kill -9` of `knot serve` clients hung on it
instead of hearing that no runtime answers.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from .helpers import KnotServer, run_knot, wait_until


def descriptors(pid: int) -> dict[int, str]:
    """What each descriptor of `pid` points at (`socket:[...]`, a path, `pipe:[...]`)."""
    folder = Path(f"/proc/{pid}/fd")
    out: dict[int, str] = {}
    for entry in folder.iterdir():
        try:
            out[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:  # closed while we looked
            continue
    return out


def ignored(pid: int) -> int:
    """The signals `pid` ignores, as the kernel's bit mask (bit n-1 for signal n)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn for {pid}")


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def test_a_space_holds_no_descriptor_of_the_runtime_and_a_dead_runtime_is_reported(
    tmp_path: Path, server_factory: type[KnotServer]
) -> None:
    server = server_factory(tmp_path)
    made = run_knot("space", "create", "sl", "--cmd", "sleep 300", "--start", port=server.port)
    assert made.returncode == 0, made.stderr
    space = server.client().get("/api/spaces/sl").json()
    pgid = int(space["pid"])
    try:
        wait_until(lambda: any(psutil.Process(p).name() == "sleep" for p in group_members(pgid)))
        for pid in group_members(pgid):
            fds = descriptors(pid)
            assert sorted(fds) == [0, 1, 2], f"pid {pid} inherited {fds}"
            assert not any(t.startswith("socket:") for t in fds.values())
            # The launcher hands on none of the signals Python ignores (SIGPIPE: `yes | head`
            # must end); what knot serve inherited ignored (nohup's SIGHUP) stays so.
            python_ignores = (1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))
            assert ignored(pid) == ignored(server.proc.pid) & ~python_ignores

        server.kill()  # kill -9: the space lives on, the port must die with the runtime
        started = time.monotonic()
        answer = run_knot("events", port=server.port)
        assert answer.returncode == 1
        assert "No knot runtime answers" in answer.stderr
        assert time.monotonic() - started < 5
    finally:
        os.killpg(pgid, signal.SIGKILL)


def test_a_health_command_holds_no_descriptor_of_the_runtime(
    tmp_path: Path, server_factory: type[KnotServer]
) -> None:
    server = server_factory(tmp_path)
    seen = tmp_path / "fds.txt"
    made = run_knot(
        "space",
        "create",
        "hc",
        "--cmd",
        "sleep 300",
        "--health",
        f"ls -l /proc/self/fd > {seen}",
        "--interval",
        "0.2",
        "--start",
        port=server.port,
    )
    assert made.returncode == 0, made.stderr
    listing: list[str] = []

    def listed() -> bool:
        # Each check rewrites the file (`>` empties it first): keep one whole listing.
        text = seen.read_text() if seen.exists() else ""
        if text.count(" -> ") < 4:  # ls writes its listing in one go; an empty file is not it
            return False
        listing[:] = text.splitlines()
        return True

    try:
        wait_until(listed)
    finally:
        run_knot("space", "delete", "hc", port=server.port)
    # `ls` lists its own: stdin, stdout (the file), stderr and the folder it reads; no socket.
    targets = [line.split(" -> ")[1] for line in listing if " -> " in line]
    assert len(targets) == 4, targets
    assert targets[0] == "/dev/null"
    assert targets[1] == str(seen)
    assert targets[3].startswith("/proc/")
