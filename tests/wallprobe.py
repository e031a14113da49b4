"""A test-only sandbox worker that runs plain Python behind the walls a test chooses.

It plays a script that already got past RestrictedPython: it boots like `knot.sandbox.worker.sink`
(the same `isolate`, warm-up, `wall.lockdown` and `ready`), but raises only `--layers`, then
runs the Python it is sent, unrestricted, and answers what happened:

  python -I -X utf8 tests/wallprobe.py KNOT_DIR --layers a,b --memory-mb N --parent PID
      [--threads N] [--early-thread]

  exec {code, thread?: "main" | "late" | "early"} → {ok: true, value: <`result` after the code>}
                                                  | {ok: false, error: "Type: message"}

`late` threads are started by `lockdown(start_threads=...)`, as the method worker starts its
call threads; the `early` one before `lockdown`, to show why that order matters.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

Job = tuple[str, "queue.SimpleQueue[dict[str, Any]]"]


def run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    try:
        exec(code, namespace)
    except BaseException as exc:  # the attempt's outcome, whatever it raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "value": namespace.get("result")}


def serve_jobs(jobs: queue.SimpleQueue[Job]) -> None:
    while True:
        code, answer = jobs.get()
        answer.put(run(code))


def start_thread(jobs: queue.SimpleQueue[Job]) -> None:
    threading.Thread(target=serve_jobs, args=(jobs,), daemon=True).start()


def main(argv: Sequence[str]) -> int:
    # Boot the knot package as process.py's _BOOT does: a bare package object, no __init__.
    knot = types.ModuleType("knot")
    knot.__path__ = [argv[0]]
    sys.modules["knot"] = knot
    from knot.sandbox.worker.runner import ScriptRunner
    from knot.sandbox.worker.sink import Pipe, announce, isolate
    from knot.sandbox.worker.wall import lockdown

    parser = argparse.ArgumentParser(prog="wallprobe")
    parser.add_argument("--layers", default="")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--parent", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--early-thread", action="store_true")
    args = parser.parse_args(argv[1:])
    layers = [layer for layer in args.layers.split(",") if layer]
    out_fd = isolate(args.parent)
    runner = ScriptRunner()
    late: queue.SimpleQueue[Job] = queue.SimpleQueue()
    early: queue.SimpleQueue[Job] = queue.SimpleQueue()
    if args.early_thread:
        start_thread(early)

    def start_threads() -> None:
        for _ in range(args.threads):
            start_thread(late)

    walls = lockdown(
        memory_mb=args.memory_mb,
        layers=layers,
        keep_fds=(out_fd,),
        warm_up=runner.warm_up,
        start_threads=start_threads,
    )
    pipe = Pipe(out_fd)
    announce(pipe, walls)
    while (message := pipe.receive()) is not None:
        params = message.get("params") or {}
        where = params.get("thread", "main")
        if where == "main":
            outcome = run(str(params["code"]))
        else:
            answer: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
            (late if where == "late" else early).put((str(params["code"]), answer))
            outcome = answer.get()
        pipe.respond(message.get("id"), outcome)
    os._exit(0)  # the job threads are daemons


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
