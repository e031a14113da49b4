"""The scripts folder: reload on save, sink and method loaders, `knot check` and `knot run`.

reload.py   watch the scripts folder and knot.toml; apply what changed on disk
sinks.py    script sinks from `<scripts.dir>/sinks/*.py`
methods.py  method scripts from `<scripts.dir>/methods/*.py`
loader.py   one script's header, name and sandbox compile, as data
tools.py    `check_paths` and `dry_run`, behind `knot check` and `knot run`
"""

from __future__ import annotations

from .loader import ScriptLoad, ScriptProblem, load_script
from .tools import CheckReport, DryRun, EmittedEvent, check_paths, dry_run, dry_run_async

__all__ = [
    "CheckReport",
    "DryRun",
    "EmittedEvent",
    "ScriptLoad",
    "ScriptProblem",
    "check_paths",
    "dry_run",
    "dry_run_async",
    "load_script",
]
