"""Soak: mixed load on one `knot serve` for minutes, watching its memory and file descriptors.

    python -m benchmarks.soak [--minutes 10] [--interval 5] [--rate 150]   (make soak)

Everything the runtime does at once, at a steady rate below its capacity (so a backlog is
not mistaken for a leak): events to a recording sink, a script sink, a webhook sink (to a
receiver on 127.0.0.1 in this process) and a subscribed method; Sky events with directives;
direct JSON-RPC calls; and the script sink and the method script re-saved every few seconds
(each method reload starts a new worker). Every `--interval` seconds it samples the resident
memory and open file descriptors of `knot serve` and of its workers, and prints them.

The verdict fits a line (least squares) to the samples after the first minute of warm-up (or
after the first third of a shorter run): memory is flat when it grows by less than
`--rss-slope` MB per minute, descriptors when by less than `--fd-slope` per minute. The exit
status is 1 when either grows, or when an event is not delivered. It works in a temporary
folder and writes nothing into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil

from .common import ServerProcess

__all__ = ["Sample", "fit_slope", "main", "verdict"]

KNOT_SERVE = [sys.executable, "-m", "knot.cli", "serve"]
CONFIG = """
[delivery]
queue_size = 10000
attempts = 3
backoff = [0.2]
[scripts]
timeout = 5.0
memory_mb = 128
workers = 2
[methods]
timeout = 10.0
memory_mb = 128
[[sinks]]
name = "rec"
type = "recording"
events = "custom.soak.*"
limit = 1000
[[sinks]]
name = "hook"
type = "webhook"
events = "custom.soak.*"
url = "{url}"
secret = "soak-secret"
"""
SCRIPT = """# events: custom.soak.*
import knot.event
n = knot.event.get_int("n")
knot.event.directive("soak", {{"n": n, "version": {version}}})
if n % 50 == 0:
    print("version {version} saw", n)
"""
METHODS = """import knot.methods

seen = {{"count": 0, "version": {version}}}


@knot.methods.method(events=["custom.soak.*"])
def record(params):
    seen["count"] = seen["count"] + 1
    return {{}}


@knot.methods.method
def add(params):
    return params.get("a", 0) + params.get("b", 0)
"""


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    rss_mb: float  # knot serve and its workers
    fds: int
    main_rss_mb: float
    main_fds: int
    processes: int
    sent: int
    errors: int

    def line(self) -> str:
        return (
            f"{self.seconds:7.0f} s  rss {self.rss_mb:7.1f} MB (serve {self.main_rss_mb:6.1f})  "
            f"fds {self.fds:4d} (serve {self.main_fds:3d})  processes {self.processes}  "
            f"sent {self.sent:7d}  errors {self.errors}"
        )


def fit_slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


@dataclass
class Verdict:
    rss_slope: float  # MB per minute
    fd_slope: float  # descriptors per minute
    samples: int
    flat: bool
    lines: list[str] = field(default_factory=list)


def verdict(samples: list[Sample], *, rss_limit: float, fd_limit: float, warm_up: float) -> Verdict:
    """Fit the samples after `warm_up` seconds; flat when both slopes stay under the limits."""
    kept = [s for s in samples if s.seconds >= warm_up] or samples
    minutes = [s.seconds / 60 for s in kept]
    rss = fit_slope(minutes, [s.rss_mb for s in kept])
    fds = fit_slope(minutes, [float(s.fds) for s in kept])
    flat = rss < rss_limit and fds < fd_limit
    lines = [
        f"memory: {rss:+.2f} MB/min over {len(kept)} samples (limit {rss_limit} MB/min) "
        f"-> {'flat' if rss < rss_limit else 'GROWING'}",
        f"file descriptors: {fds:+.2f}/min (limit {fd_limit}/min) "
        f"-> {'flat' if fds < fd_limit else 'GROWING'}",
    ]
    return Verdict(rss, fds, len(kept), flat, lines)


# -- the parts -------------------------------------------------------------------------------


class Receiver:
    """The webhook receiver: counts POSTs by event id, answers 200."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.requests = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms on a delayed ACK

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    receiver.requests += 1
                    receiver.ids.add(json.loads(body)["event_id"])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Server(ServerProcess):
    """`knot serve --quiet` on a free port, on any core."""

    def __init__(self, project: Path) -> None:
        cmd = [*KNOT_SERVE, "--project", str(project), "--port", "0", "--quiet"]
        super().__init__(cmd, core=None)

    @property
    def problems(self) -> list[str]:
        return [line.rstrip() for line in self.lines if "ERROR" in line or "Traceback" in line]

    def tree(self) -> tuple[float, int, float, int, int]:
        """(rss MB, fds) of knot serve and its workers together, then of knot serve alone."""
        main = psutil.Process(self.proc.pid)
        rss = fds = 0
        procs = [main, *main.children(recursive=True)]
        counted = 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
                fds += proc.num_fds()
                counted += 1
            except psutil.NoSuchProcess:
                continue  # a worker that was just replaced
        return rss / 2**20, fds, main.memory_info().rss / 2**20, main.num_fds(), counted


class Load:
    """Threads sending one kind of request each at a fixed rate until stopped."""

    def __init__(self, url: str, eci: str, rate: float) -> None:
        self.url = url
        self.eci = eci
        self.rate = rate
        self.sent = 0
        self.errors = 0
        self.acked: list[str] = []
        self.last_error = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(kind, share), daemon=True)
            for kind, share in (("event", 0.5), ("sky", 0.25), ("rpc", 0.25))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _loop(self, kind: str, share: float) -> None:
        period = 1.0 / max(self.rate * share, 0.1)
        send: Callable[[httpx.Client, int], str | None] = getattr(self, f"_{kind}")
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                n += 1
                try:
                    event_id = send(client, n)
                except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
                    with self._lock:
                        self.errors += 1
                        self.last_error = f"{kind}: {exc}"
                else:
                    with self._lock:
                        self.sent += 1
                        if event_id:
                            self.acked.append(event_id)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _event(self, client: httpx.Client, n: int) -> str | None:
        r = client.post("/event", json={"type": "soak.tick", "payload": {"n": n}})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def _sky(self, client: httpx.Client, n: int) -> str | None:
        r = client.get(f"/sky/event/{self.eci}/none/soak/sky", params={"n": n})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert any(d["name"] == "soak" for d in answer["directives"]), answer
        return str(answer["id"])

    def _rpc(self, client: httpx.Client, n: int) -> str | None:
        call = {"jsonrpc": "2.0", "method": "soak_methods.add", "params": {"a": n, "b": 1}}
        r = client.post("/json-rpc", json={**call, "id": n})
        assert r.json().get("result") == n + 1, r.text
        return None

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def save(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="knot-soak-") as folder:
        project = Path(folder)
        receiver = Receiver()
        (project / "knot.toml").write_text(CONFIG.format(url=receiver.url))
        sinks, methods = project / "scripts" / "sinks", project / "scripts" / "methods"
        sinks.mkdir(parents=True)
        methods.mkdir(parents=True)
        save(sinks / "soak_script.py", SCRIPT.format(version=0))
        save(methods / "soak_methods.py", METHODS.format(version=0))
        server = Server(project)
        try:
            return _soak(args, server, receiver, sinks, methods)
        finally:
            server.stop()
            receiver.close()


def _soak(
    args: argparse.Namespace, server: Server, receiver: Receiver, sinks: Path, methods: Path
) -> int:
    client = httpx.Client(base_url=server.url, timeout=30)
    eci = client.post("/api/channels", json={"name": "soak"}).json()["eci"]
    call = {"jsonrpc": "2.0", "method": "soak_methods.add", "params": {}, "id": 0}
    deadline = time.monotonic() + 30
    while "result" not in client.post("/json-rpc", json=call).json():
        if time.monotonic() > deadline:
            raise RuntimeError("the method script did not load")
        time.sleep(0.1)
    load = Load(server.url, eci, args.rate)
    duration = args.minutes * 60
    print(
        f"soak: {args.minutes:g} min at {args.rate:g} requests/s (events, Sky, JSON-RPC), "
        f"script re-saved every {args.reload:g} s, method script every {3 * args.reload:g} s, "
        f"sampled every {args.interval:g} s",
        flush=True,
    )
    started = time.monotonic()
    load.start()
    samples: list[Sample] = []
    next_sample = next_reload = started
    reloads = 0
    while (now := time.monotonic()) - started < duration:
        if now >= next_reload:
            reloads += 1
            save(sinks / "soak_script.py", SCRIPT.format(version=reloads))
            if reloads % 3 == 0:
                save(methods / "soak_methods.py", METHODS.format(version=reloads))
            next_reload += args.reload
        if now >= next_sample:
            rss, fds, main_rss, main_fds, processes = server.tree()
            sample = Sample(
                now - started, rss, fds, main_rss, main_fds, processes, load.sent, load.errors
            )
            samples.append(sample)
            print(sample.line(), flush=True)
            next_sample += args.interval
        time.sleep(min(0.05, max(0.0, min(next_reload, next_sample) - time.monotonic())))
    load.stop()
    delivered = _settle(client, load.acked, receiver)
    client.close()
    warm_up = 60.0 if duration >= 180 else duration / 3
    result = verdict(samples, rss_limit=args.rss_slope, fd_limit=args.fd_slope, warm_up=warm_up)
    print()
    for line in result.lines:
        print(line)
    print(f"requests: {load.sent} answered, {load.errors} failed {load.last_error}".rstrip())
    print(f"reloads: {reloads} script saves, {reloads // 3} method script saves")
    print(delivered)
    if server.problems:
        print(f"knot serve logged {len(server.problems)} errors; the first: {server.problems[0]}")
    ok = result.flat and load.errors == 0 and "all delivered" in delivered
    print("verdict:", "FLAT" if ok else "NOT FLAT (see above)")
    return 0 if ok else 1


def _settle(client: httpx.Client, acked: list[str], receiver: Receiver) -> str:
    """Wait for the sinks to drain; say whether every acknowledged event reached the webhook."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = sum(s["pending"] for s in client.get("/api/sinks").json()["sinks"])
        if pending == 0 and set(acked) <= receiver.ids:
            break
        time.sleep(0.2)
    missing = len(set(acked) - receiver.ids)
    if missing:
        return f"delivery: {missing} of {len(acked)} acknowledged events never reached the webhook"
    return f"delivery: all delivered ({len(acked)} events, {receiver.requests} webhook requests)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second in all")
    parser.add_argument("--reload", type=float, default=3.0, help="seconds between re-saves")
    parser.add_argument("--rss-slope", type=float, default=1.0, help="MB/min counted as growth")
    parser.add_argument("--fd-slope", type=float, default=0.5, help="fds/min counted as growth")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
