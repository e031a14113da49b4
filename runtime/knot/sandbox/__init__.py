"""The script sandbox: RestrictedPython rules, purpose-built modules and worker processes.

    policy.py    what a script may say (load-time check) and touch (run-time guards)
    modules.py   the modules a script may import, rebuilt from safe public names
    api.py       `knot.event` as scripts see it
    runner.py    runs compiled scripts on events (inside a worker)
    worker.py    the worker process: JSON-RPC over stdin/stdout
    wall.py      the workers' OS-level wall: descriptors, environment, Landlock, rlimits, seccomp
    process.py   the parent's side of one worker: requests, deadlines, SIGKILL
    pool.py      workers shared by a runtime's script sinks
    loader.py    a sink script's header and name, checked: `load_script` (and method scripts')
    tools.py     `check_paths` and `dry_run`, behind `knot check` and `knot run`

    method_api.py      `knot.methods` and Scriptling's `runtime.jsonrpc` as method scripts see them
    method_runner.py   one method script in its worker: loaded once, called on threads
    method_worker.py   the method-script worker process: threads, serial/concurrent, cancel
    method_process.py  the parent's side of one method worker: concurrent requests, deadlines

Exports resolve lazily: a worker process imports only what it runs, not the whole runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import ScriptLoad, ScriptProblem, load_script
    from .tools import CheckReport, DryRun, check_paths, dry_run, dry_run_async

__all__ = [
    "CheckReport",
    "DryRun",
    "ScriptLoad",
    "ScriptProblem",
    "check_paths",
    "dry_run",
    "dry_run_async",
    "load_script",
]

_HOMES = {
    "ScriptLoad": "loader",
    "ScriptProblem": "loader",
    "load_script": "loader",
    "CheckReport": "tools",
    "DryRun": "tools",
    "check_paths": "tools",
    "dry_run": "tools",
    "dry_run_async": "tools",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'knot.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
