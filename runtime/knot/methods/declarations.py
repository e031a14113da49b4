"""What a method script declares, checked: its methods as `MethodInfo`, or its problems.

A worker reports the declarations a script made while loading (names, patterns, modes, the
line of each); these functions turn them, and a worker's refusal to load, into data the
runtime routes by or `file:line:col: rule` lines it reports. Nothing here raises for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import PatternError
from .._json import JSONObject
from .._patterns import Pattern
from .._sinkspec import check_sink_name
from ..sandbox.process import RemoteError
from ..scripts.loader import ScriptProblem, method_script_problems

__all__ = ["MethodInfo", "declared", "load_problems", "static_problems"]

_METHOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One declared method of a loaded script (a snapshot)."""

    script: str
    name: str
    events: tuple[Pattern, ...] = ()
    event_sinks: tuple[str, ...] = ()
    mode: str = "serial"
    params: tuple[str, ...] | None = None
    notification: bool = False
    path: str = ""
    line: int = 0

    @property
    def full_name(self) -> str:
        """`script.method`: its JSON-RPC name, and its sink's name when it is subscribed."""
        return f"{self.script}.{self.name}"

    def to_dict(self) -> JSONObject:
        return {
            "name": self.full_name,
            "script": self.script,
            "method": self.name,
            "mode": self.mode,
            "events": ", ".join(p.text for p in self.events),
            "event_sinks": list(self.event_sinks),
            "params": list(self.params) if self.params is not None else None,
            "notification": self.notification,
            "where": f"{self.path}:{self.line}" if self.line else self.path,
        }


def static_problems(name: str, source: str, path: str) -> tuple[str, ...]:
    """What is wrong before anything runs: the file name, and the sandbox rules."""
    return tuple(str(p) for p in method_script_problems(source, path))


def load_problems(path: str, exc: RemoteError) -> tuple[str, ...]:
    """A worker's refusal to load, as `file:line:col: rule` lines."""
    data = exc.data
    if isinstance(data, list):  # broken sandbox rules
        rules = tuple(
            str(ScriptProblem(path, int(v.get("line", 1)), int(v.get("col", 1)), str(v["rule"])))
            for v in data
            if isinstance(v, dict) and "rule" in v
        )
        return rules or (f"{path}:1:1: {exc.message}",)
    if isinstance(data, dict):  # the top level raised
        line = int(data.get("line") or 1)
        kind = data.get("kind")
        if kind == "memory":
            what = "ran out of memory (methods.memory_mb)"
        elif kind == "recursion":
            what = "recursed too deeply"
        else:
            detail = f": {data.get('message')}" if data.get("message") else ""
            what = f"raised {data.get('type', 'an error')}{detail}"
        return (f"{path}:{line}:1: loading the script {what}",)
    return (f"{path}:1:1: {exc.message}",)


def declared(
    script: str, path: str, raw: list[Mapping[str, Any]]
) -> tuple[dict[str, MethodInfo], tuple[str, ...]]:
    """The declarations a worker reported, checked: names, patterns, event sink names."""
    infos: dict[str, MethodInfo] = {}
    problems: list[str] = []
    for item in raw:
        line = int(item.get("line") or 1)
        at = f"{path}:{line}:1"
        name = str(item.get("name", ""))
        if not _METHOD_NAME.fullmatch(name) or name.startswith("rpc."):
            problems.append(
                f"{at}: the method name {name!r} is not valid: use letters, digits and "
                "underscores, with dots between parts (names starting with 'rpc.' are reserved)"
            )
            continue
        if name in infos:
            problems.append(f"{at}: the method {name!r} is declared twice")
            continue
        patterns: list[Pattern] = []
        for text in item.get("events") or ():
            try:
                patterns.append(Pattern.parse(str(text)))
            except PatternError as exc:
                problems.append(f"{at}: events: {exc.message.rstrip('.')}")
        event_sinks = tuple(str(n) for n in item.get("event_sinks") or ())
        problems.extend(
            f"{at}: event_sinks: {problem.rstrip('.')}"
            for problem in map(check_sink_name, event_sinks)
            if problem is not None
        )
        params = item.get("params")
        infos[name] = MethodInfo(
            script=script,
            name=name,
            events=tuple(patterns),
            event_sinks=event_sinks,
            mode=str(item.get("mode") or "serial"),
            params=tuple(str(p) for p in params) if params is not None else None,
            notification=bool(item.get("notification")),
            path=path,
            line=line,
        )
    return infos, tuple(problems)
