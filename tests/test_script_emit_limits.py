"""scripts.max_emits: one run of a sink script cannot turn one event into a flood."""

from __future__ import annotations

from pathlib import Path

import pytest

from knot import AuditKind, Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings, ScriptSettings, parse_config
from knot.scripts import load_script

pytestmark = pytest.mark.anyio


def config(max_emits: int) -> Config:
    return Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.01,)),
        scripts=ScriptSettings(timeout=5.0, memory_mb=64, workers=1, max_emits=max_emits),
    )


def write_script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"# events: custom.go\n{body}", encoding="utf-8")
    return path


async def add_script(rt: Runtime, folder: Path, name: str, body: str) -> None:
    load = load_script(write_script(folder, name, body))
    assert load.spec is not None, load.problems
    await rt.add_sink(load.spec)


FLOOD = "import knot.event\nwhile True:\n    knot.event.emit('flood.x', {})\n"
SWALLOWED = (
    "import knot.event\n"
    "for n in range(100):\n"
    "    try:\n"
    "        knot.event.emit('flood.x', {'n': n})\n"
    "    except Exception as e:\n"
    "        last = str(e)\n"
    "print(last)\n"
)


async def test_a_flooding_script_fails_its_run_at_max_emits(tmp_path: Path) -> None:
    async with Runtime(tmp_path, config=config(25)) as rt:
        await add_script(rt, tmp_path / "s", "flood", FLOOD)
        report = await rt.emit_and_wait("go", {})
        outcome = report.outcomes["flood"]
        assert outcome.status is DeliveryStatus.FAILED
        expected = (
            "The script s/flood.py:4 tried to emit more than 25 events while handling one event "
            "(scripts.max_emits = 25)."
        )
        assert outcome.error == expected.replace("s/flood.py", str(tmp_path / "s" / "flood.py"))
        await rt.wait_idle()
        await rt.flush()
        assert len(await rt.events("custom.flood.x")) == 25
        failures = [e for e in await rt.audit_entries() if e.kind is AuditKind.SCRIPT_FAILED]
        assert len(failures) == 1
        assert "scripts.max_emits = 25" in failures[0].message


async def test_catching_the_error_does_not_save_the_run(tmp_path: Path) -> None:
    async with Runtime(tmp_path, config=config(10)) as rt:
        await add_script(rt, tmp_path / "s", "sly", SWALLOWED)
        report = await rt.emit_and_wait("go", {})
        outcome = report.outcomes["sly"]
        assert outcome.status is DeliveryStatus.FAILED
        assert "tried to emit more than 10 events" in outcome.error
        await rt.wait_idle()
        assert len(await rt.events("custom.flood.x")) == 10
        # The script saw a clear error it could print.
        (line,) = rt.sink("sly").status()["output"]
        assert line == (
            "knot.event.emit() may be called at most 10 times while handling one event or call "
            "(max_emits)"
        )


async def test_the_limit_is_per_event_handled(tmp_path: Path) -> None:
    body = "import knot.event\nfor n in range(10):\n    knot.event.emit('ok.x', {'n': n})\n"
    async with Runtime(tmp_path, config=config(10)) as rt:
        await add_script(rt, tmp_path / "s", "tidy", body)
        for _ in range(3):
            report = await rt.emit_and_wait("go", {})
            assert report.outcomes["tidy"].status is DeliveryStatus.DELIVERED
        await rt.wait_idle()
        assert len(await rt.events("custom.ok.x")) == 30


def test_max_emits_is_read_and_checked_in_knot_toml() -> None:
    good = parse_config("[scripts]\nmax_emits = 5\n[methods]\nmax_emits = 7\n")
    assert good.config is not None
    assert good.config.scripts.max_emits == 5
    assert good.config.methods.max_emits == 7
    assert parse_config("").config.scripts.max_emits == 1000  # type: ignore[union-attr]
    bad = parse_config("[scripts]\nmax_emits = -1\n")
    assert bad.config is None
    assert any("max_emits" in error and ">= 0" in error for error in bad.errors)
