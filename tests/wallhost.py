"""A test-only stand-in for the runtime: the parent that sandbox workers and probes attack.

Started by tests/test_sandbox_wall.py with a secret in its environment (so it is in
/proc/<pid>/environ, as the runtime's variables are), it runs on uvloop like `knot serve` and
holds an inheritable listening socket like uvicorn's. It starts workers with the runtime's own
code (`WorkerProcess.spawn`, or `.launch` for a probe) and relays the test's requests to them.
One JSON object per line each way, on stdin and stdout:

  {"do": "launch", "layers": [...], "threads": n, "early_thread": bool, "memory_mb": n}
      → {"pid", "walls", "missing", "listener"}: a tests/wallprobe.py behind `layers`; without
        the environment layer it gets this process's whole environment and folder
  {"do": "spawn", "module": "sink" | "method"} → {"pid", "walls", "missing", "listener"}
  {"do": "exec", "code": ..., "thread": ...} → the probe's answer, or {"gone": how it ended}
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvloop

from knot.sandbox.process import _KNOT_DIR, WORKER_FLAGS, WorkerDied, WorkerProcess
from knot.sandbox.worker.wall import ENVIRONMENT

PROBE = str(Path(__file__).with_name("wallprobe.py"))


async def launch(command: dict[str, Any]) -> WorkerProcess:
    layers = [str(layer) for layer in command.get("layers", ())]
    memory_mb = int(command.get("memory_mb", 256))
    argv = [sys.executable, *WORKER_FLAGS, PROBE, _KNOT_DIR, "--layers", ",".join(layers)]
    argv += ["--memory-mb", str(memory_mb), "--parent", str(os.getpid())]
    argv += ["--threads", str(int(command.get("threads", 0)))]
    if command.get("early_thread"):
        argv.append("--early-thread")
    if ENVIRONMENT in layers:  # as spawn does: the worker environment, in /
        return await WorkerProcess.launch(argv, memory_mb=memory_mb)
    return await WorkerProcess.launch(argv, memory_mb=memory_mb, env=os.environ, cwd=os.getcwd())


async def serve() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.set_inheritable(True)  # as uvicorn leaves its listening socket
    loop = asyncio.get_running_loop()
    workers: list[WorkerProcess] = []

    def say(answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        if command["do"] in ("launch", "spawn"):
            if command["do"] == "launch":
                worker = await launch(command)
            else:
                module = str(command["module"])
                args = ("--threads", "4") if module == "method" else ()
                worker = await WorkerProcess.spawn(memory_mb=256, module=module, args=args)
            workers.append(worker)
            say(
                {
                    "pid": worker.pid,
                    "walls": list(worker.walls),
                    "missing": worker.missing_walls,
                    "listener": listener.fileno(),
                }
            )
        elif command["do"] == "exec":
            params = {"code": command["code"], "thread": command.get("thread", "main")}
            try:
                say(await workers[-1].request("exec", params, timeout=20.0))
            except WorkerDied as exc:
                say({"gone": exc.how})
    for worker in workers:
        await worker.close()
    listener.close()


if __name__ == "__main__":
    uvloop.run(serve())
