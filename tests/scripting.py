"""Helpers for tests of scripts that reach out: a runtime with chosen `[scripts]` settings, and
script sinks added and run one event at a time (real sandbox workers, a real SQLite store)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from knot import Config, Runtime
from knot._allowlist import AllowList
from knot._config import DeliverySettings, ScriptAccess, ScriptSettings
from knot._secrets import SecretSettings, SecretSource
from knot.engine.outcomes import Outcome
from knot.scripts import load_script

_names = itertools.count(1)


def reach_config(
    allow: Iterable[str] = (),
    *,
    sinks: dict[str, Iterable[str]] | None = None,
    secrets: dict[str, str] | None = None,
    **scripts: Any,
) -> Config:
    settings = ScriptSettings(
        timeout=scripts.pop("timeout", 5.0),
        memory_mb=64,
        workers=2,
        http_allow=AllowList.parse(allow),
        sinks={
            name: ScriptAccess(AllowList.parse(hosts, setting=f"scripts.sinks.{name}.http_allow"))
            for name, hosts in (sinks or {}).items()
        },
        **scripts,
    )
    return Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.001,)),
        scripts=settings,
        secrets=SecretSettings(tuple(SecretSource(k, value=v) for k, v in (secrets or {}).items())),
    )


class Scripted:
    """A running runtime whose script sinks the test adds one by one."""

    def __init__(self, rt: Runtime, folder: Path) -> None:
        self.rt = rt
        self.folder = folder

    async def add(self, body: str, name: str = "") -> str:
        name = name or f"script{next(_names)}"
        path = self.folder / f"{name}.py"
        path.write_text(f"# events: custom.{name}\n{body}", encoding="utf-8")
        load = load_script(path)
        assert load.spec is not None, load.problems
        await self.rt.add_sink(load.spec)
        return name

    async def run(
        self, body: str, data: dict[str, Any] | None = None, *, name: str = ""
    ) -> Outcome:
        """Add `body` as a new sink (or `name`'s, already added) and hand it one event."""
        if not name:
            name = await self.add(body)
        report = await self.rt.emit_and_wait(name, data or {}, timeout=30)
        return report.outcomes[name]


@asynccontextmanager
async def scripted(project: Path, config: Config) -> AsyncIterator[Scripted]:
    folder = project / "sinks"
    folder.mkdir(parents=True, exist_ok=True)
    config = replace(config, store=replace(config.store, path=str(project / ".knot" / "knot.db")))
    async with Runtime(project, config=config) as rt:
        yield Scripted(rt, folder)


def output(outcome: Outcome) -> list[str]:
    assert outcome.error == "", outcome.error
    return list(outcome.result.output) if outcome.result is not None else []
