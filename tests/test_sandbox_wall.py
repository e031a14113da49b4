"""The sandbox workers' OS wall (knot/sandbox/wall.py), tried with real processes.

A script that gets past RestrictedPython is played by tests/wallprobe.py: it boots like a
worker, raises the layers a test picks through the same `wall.lockdown`, then runs plain
Python. Its parent is tests/wallhost.py, a stand-in for the runtime started with a secret in
its environment, on uvloop, holding an inheritable listening socket. Each layer alone, all of
them, and none (to show every attempt works when nothing stops it) meet the same attempts.

Nothing here skips: a machine without libseccomp or Landlock fails these tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knot.sandbox import process
from knot.sandbox.method_process import MethodProcess
from knot.sandbox.process import WorkerProcess, worker_env
from knot.sandbox.worker.wall import (
    ALL_LAYERS,
    ENVIRONMENT,
    LANDLOCK,
    NO_NEW_PRIVS,
    RLIMITS,
    SECCOMP,
    lockdown,
)
from knot.scripts.tools import dry_run_async

HOST = str(Path(__file__).with_name("wallhost.py"))
REPO = Path(__file__).resolve().parent.parent
SECRET_NAME = "KNOT_WALL_TEST_SECRET"
SECRET = "s3cr3t-of-the-runtime-4711"
DB_TEXT = "SQLite format 3 (the store, pretend)"
# RLIMIT_NPROC does not bind root; a hard limit binds whoever lacks CAP_SYS_RESOURCE.
NPROC_BINDS = set() if os.geteuid() == 0 else {RLIMITS}
_CAPS = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
HARD_LIMITS_BIND = set() if int(_CAPS["CapEff"], 16) & (1 << 24) else {RLIMITS}


class Host:
    """A wallhost.py process, talked to one JSON line at a time."""

    def __init__(self, project: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, SECRET_NAME: SECRET},
            cwd=project,
        )
        self._buffer = b""

    def ask(self, timeout: float = 20.0, **command: Any) -> dict[str, Any]:
        """The host's answer; {"host_died": status} when it is gone instead."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"host_died": self.proc.wait(5)}
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"the host did not answer {command}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return {"host_died": self.proc.wait(5)}
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.close()


def fds_of(pid: int) -> dict[int, str]:
    """What each descriptor of `pid` points at, read from outside the process."""
    found = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
    return found


def status_of(pid: int, task: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    lines = Path(path).read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


# -- the attempts -----------------------------------------------------------------------
# Each sets `result` to True when it got what it was after; raising means it was stopped.


def attempts(tmp_path: Path) -> dict[str, str]:
    target = tmp_path / "written.txt"
    store = tmp_path / "project" / ".knot" / "knot.db"
    return {
        "write_file": f"with open({str(target)!r}, 'w') as f:\n    f.write('pwned')\nresult = True",
        "read_project_file": f"result = open({str(store)!r}).read() == {DB_TEXT!r}",
        "read_parent_environ": (
            f"import os\nwith open(f'/proc/{{os.getppid()}}/environ', 'rb') as f:\n"
            f"    result = {SECRET!r} in f.read().decode()"
        ),
        "own_environ": f"import os\nresult = {SECRET!r} in str(dict(os.environ))",
        "socket": "import socket\nsocket.socket().close()\nresult = True",
        "fork": (
            "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n"
            "result = os.waitpid(pid, 0)[1] == 0"
        ),
        "subprocess": "import subprocess\nresult = subprocess.run(['/bin/true']).returncode == 0",
        "raise_rlimit": (
            "import resource\nforever = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)\n"
            "resource.setrlimit(resource.RLIMIT_AS, forever)\n"
            "result = resource.getrlimit(resource.RLIMIT_AS) == forever"
        ),
        # These end the probe (exec) or the host (signals): last, each on a fresh pair.
        "execv": "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'pass'])",
        "signal_parent_by_sigio": (
            # F_SETOWN names the parent to receive SIGIO (fatal by default) when the pipe
            # becomes readable: a kill() by the back door.
            "import fcntl, os, time\nr, w = os.pipe()\n"
            "fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())\n"
            "fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)\n"
            "os.write(w, b'x')\ntime.sleep(1)"
        ),
        "kill_parent": (
            "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(1)"
        ),
    }


BLOCKED_BY = {  # which layers stop each attempt on their own
    "write_file": {LANDLOCK, SECCOMP, RLIMITS},  # RLIMIT_FSIZE 0: created, but empty
    "read_project_file": {LANDLOCK},
    "read_parent_environ": {LANDLOCK},
    "own_environ": {ENVIRONMENT},
    "socket": {SECCOMP},
    "fork": {SECCOMP} | NPROC_BINDS,
    "subprocess": {SECCOMP, LANDLOCK} | NPROC_BINDS,  # Landlock: nothing may be executed
    "raise_rlimit": {SECCOMP} | HARD_LIMITS_BIND,
    "execv": {SECCOMP, LANDLOCK},
    "signal_parent_by_sigio": {SECCOMP},
    "kill_parent": {SECCOMP},
}


def got_through(answer: dict[str, Any]) -> bool:
    if "host_died" in answer:
        return True  # the parent was killed
    if "gone" in answer:
        return bool(answer["gone"] == "it exited with status 0")  # replaced by another program
    return bool(answer.get("ok")) and answer.get("value") is True


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / ".knot").mkdir(parents=True, exist_ok=True)
    (project / ".knot" / "knot.db").write_text(DB_TEXT)
    return project


def try_all(tmp_path: Path, hosts: list[Host], layers: tuple[str, ...]) -> dict[str, Any]:
    """Every attempt against a probe behind `layers`; a new host and probe after each one
    that ended either."""
    project = make_project(tmp_path)
    outcomes: dict[str, Any] = {}
    host: Host | None = None
    for name, code in attempts(tmp_path).items():
        if host is None:
            host = Host(project)
            hosts.append(host)
            started = host.ask(do="launch", layers=list(layers))
            assert started["walls"] == list(layers), started  # all of them up, or fail
        answer = host.ask(do="exec", code=code)
        outcomes[name] = answer
        if "host_died" in answer or "gone" in answer:
            host = None
    return outcomes


CONFIGS = [(), *((layer,) for layer in ALL_LAYERS), ALL_LAYERS]


@pytest.mark.parametrize("layers", CONFIGS, ids=lambda c: "+".join(c) if c else "none")
def test_each_layer_stops_its_attempts_and_together_they_stop_all(
    tmp_path: Path, hosts: list[Host], layers: tuple[str, ...]
) -> None:
    outcomes = try_all(tmp_path, hosts, layers)
    wrong = {}
    for name, answer in outcomes.items():
        stopped = bool(BLOCKED_BY[name] & set(layers))
        if got_through(answer) == stopped:
            wrong[name] = ("should be stopped" if stopped else "should get through", answer)
    assert not wrong, wrong
    written = tmp_path / "written.txt"
    if BLOCKED_BY["write_file"] & set(layers):
        assert not written.exists() or written.read_text() == ""
    else:
        assert written.read_text() == "pwned"


def test_the_probe_boots_like_a_worker(tmp_path: Path, hosts: list[Host]) -> None:
    """Same flags, boot and environment: what the probe sees is what a worker would."""
    host = Host(make_project(tmp_path))
    hosts.append(host)
    probe = host.ask(do="launch", layers=list(ALL_LAYERS))
    worker = host.ask(do="spawn", module="sink")
    command = Path(f"/proc/{worker['pid']}/cmdline").read_bytes().split(b"\0")
    assert command[1:4] == [flag.encode() for flag in process.WORKER_FLAGS]
    probe_command = Path(f"/proc/{probe['pid']}/cmdline").read_bytes().split(b"\0")
    assert probe_command[:4] == command[:4]
    for pid in (probe["pid"], worker["pid"]):
        assert Path(f"/proc/{pid}/environ").read_bytes() == b"".join(
            f"{k}={v}\0".encode() for k, v in worker_env().items()
        )
        assert os.readlink(f"/proc/{pid}/cwd") == "/"


@pytest.mark.parametrize("module", ["sink", "method"])
def test_a_worker_started_from_uvloop_keeps_only_its_protocol_descriptors(
    tmp_path: Path, hosts: list[Host], module: str
) -> None:
    host = Host(make_project(tmp_path))
    hosts.append(host)
    # Without the layer, uvloop hands the host's listening socket down (close_fds is ignored).
    leaky = host.ask(do="launch", layers=[SECCOMP])
    listener = fds_of(host.proc.pid)[leaky["listener"]]
    assert listener in fds_of(leaky["pid"]).values()
    worker = host.ask(do="spawn", module=module)
    assert worker["walls"] == list(ALL_LAYERS)
    assert worker["missing"] == {}
    fds = fds_of(worker["pid"])
    # stdin, /dev/null, stderr, the protocol's stdout (uvloop's pipes are socket pairs), and
    # a sink worker's results pipe (sandbox/results.py): its write end only.
    assert sorted(fds) == ([0, 1, 2, 3, 4] if module == "sink" else [0, 1, 2, 3]), fds
    assert fds[1] == "/dev/null"
    assert listener not in fds.values()
    host_side = set(fds_of(host.proc.pid).values())
    for fd in (0, 2, 3):
        assert fds[fd].startswith(("pipe:", "socket:"))
        assert fds[fd] not in host_side
    if module == "sink":
        assert fds[4].startswith("pipe:")
        assert fds[4] in host_side  # the runtime holds the read end
        flags = Path(f"/proc/{worker['pid']}/fdinfo/4").read_text().split("flags:")[1].split()[0]
        assert int(flags, 8) & os.O_ACCMODE == os.O_WRONLY
    status = status_of(worker["pid"])
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    # Every thread is filtered (TSYNC): the method worker's call threads too.
    tasks = os.listdir(f"/proc/{worker['pid']}/task")
    assert len(tasks) == (5 if module == "method" else 1)
    for task in tasks:
        assert status_of(worker["pid"], int(task))["Seccomp"] == "2"


def test_landlock_confines_the_threads_lockdown_starts(tmp_path: Path, hosts: list[Host]) -> None:
    """Landlock binds the thread that raises it and threads it starts later, not older ones:
    the method worker must start its call threads inside lockdown, as the probe's `late`."""
    host = Host(make_project(tmp_path))
    hosts.append(host)
    host.ask(do="launch", layers=[LANDLOCK], threads=1, early_thread=True)
    read = attempts(tmp_path)["read_project_file"]
    late = host.ask(do="exec", code=read, thread="late")
    assert late["error"].startswith("PermissionError"), late
    main = host.ask(do="exec", code=read, thread="main")
    assert not main["ok"], main
    early = host.ask(do="exec", code=read, thread="early")
    assert early == {"ok": True, "value": True}  # why the order in worker.method.main matters


def test_python_still_works_behind_every_wall(tmp_path: Path, hosts: list[Host]) -> None:
    host = Host(make_project(tmp_path))
    hosts.append(host)
    host.ask(do="launch", layers=list(ALL_LAYERS), threads=2)
    code = (
        "import os, threading, time, json, hashlib, random, uuid, datetime, xml.dom.minidom\n"
        "box = []\n"
        "threads = [threading.Thread(target=lambda: box.append(os.urandom(8))) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "big = bytearray(64 * 1024 * 1024)\n"  # malloc and mmap, under RLIMIT_AS
        "os.kill(os.getpid(), 0)\n"  # signals to itself stay allowed
        "result = (len(box) == 4 and len(big) > 0 and time.monotonic() > 0\n"
        "          and time.localtime().tm_year > 2000 and len(hashlib.sha256(b'x').hexdigest())\n"
        "          == 64 and uuid.uuid4().version == 4 and random.random() < 1\n"
        "          and json.loads('[1]') == [1] and datetime.datetime.now().year > 2000\n"
        "          and os.getcwd() == '/')\n"
    )
    assert host.ask(do="exec", code=code) == {"ok": True, "value": True}
    # The call threads too (started inside lockdown, filtered through TSYNC).
    assert host.ask(do="exec", code=code, thread="late") == {"ok": True, "value": True}


@pytest.mark.anyio
async def test_a_script_sink_still_does_its_job_behind_all_walls() -> None:
    worker = await WorkerProcess.spawn(memory_mb=64)
    try:
        assert worker.walls == ALL_LAYERS
        assert worker.missing_walls == {}
    finally:
        await worker.close()
    result = await dry_run_async(REPO / "scripts" / "sinks" / "greeter.py", "x", {"name": "Ada"})
    assert result.ok, result.error
    assert result.output == ("greeted Ada",)
    assert result.directives[0]["options"]["message"] == "Hello, Ada!"


METHODS = """\
import knot.event
import knot.methods
import time

@knot.methods.method(mode="concurrent")
def nap(params):
    time.sleep(params["seconds"])
    return knot.event.emit("napped", {"seconds": params["seconds"]})
"""


@pytest.mark.anyio
async def test_a_method_script_still_answers_concurrent_calls_behind_all_walls() -> None:
    emitted: list[str] = []

    async def on_request(method: str, params: Any, context: Any, deadline: Any) -> Any:
        emitted.append(params["type"])
        return {"id": f"e{len(emitted)}"}

    methods = await MethodProcess.start(memory_mb=256, threads=4, on_request=on_request)
    try:
        assert methods.worker.walls == ALL_LAYERS
        assert methods.worker.missing_walls == {}
        await methods.load("naps", METHODS, "naps.py", timeout=10)
        body = json.dumps({"method": "nap", "params": {"seconds": 0.3}, "timeout": 10})
        started = time.monotonic()
        answers = await asyncio.gather(
            *(methods.request("call", body, timeout=10) for _ in range(4))
        )
        assert time.monotonic() - started < 1.0  # side by side, on four threads
        assert sorted(a["result"] for a in answers) == ["e1", "e2", "e3", "e4"]
        assert emitted == ["napped"] * 4
    finally:
        await methods.close()


def test_lockdown_refuses_unknown_layers() -> None:
    with pytest.raises(ValueError, match="seccom"):
        lockdown(memory_mb=0, layers=["seccom"])


def test_a_missing_wall_is_logged_once_per_runtime(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(process, "_missing_walls_logged", False)
    process._log_missing_walls({})
    process._log_missing_walls({SECCOMP: "ImportError: pyseccomp or libseccomp.so.2 is missing"})
    process._log_missing_walls({LANDLOCK: "SyscallError: ..."})
    warnings = [r for r in caplog.records if r.name == "knot.sandbox"]
    assert len(warnings) == 1
    assert (
        "seccomp (ImportError: pyseccomp or libseccomp.so.2 is missing)" in warnings[0].getMessage()
    )


def test_no_new_privs_alone_is_set_and_reported(tmp_path: Path, hosts: list[Host]) -> None:
    host = Host(make_project(tmp_path))
    hosts.append(host)
    probe = host.ask(do="launch", layers=[NO_NEW_PRIVS])
    assert probe["walls"] == [NO_NEW_PRIVS]
    assert status_of(probe["pid"])["NoNewPrivs"] == "1"
    assert status_of(probe["pid"])["Seccomp"] == "0"
