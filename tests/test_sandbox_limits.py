"""Limits: bombs RestrictedPython lets through fail their attempt; everything else goes on.

Real worker processes with small limits (1 s, 64 MB) so the suite stays quick. While a bomb
runs, another script sink and a recording sink keep receiving events.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from knot import AuditKind, Config, DeliveryStatus, Runtime, SinkSpec
from knot._config import DeliverySettings, ScriptSettings
from knot.scripts import load_script

from .conftest import recording

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0


def limits_config(*, attempts: int = 1, workers: int = 2) -> Config:
    return Config(
        delivery=DeliverySettings(attempts=attempts, backoff=(0.01,), queue_size=1000),
        scripts=ScriptSettings(timeout=TIMEOUT, memory_mb=64, workers=workers),
    )


def script_spec(folder: Path, name: str, events: str, body: str) -> SinkSpec:
    path = folder / f"{name}.py"
    path.write_text(f"# events: {events}\n{body}", encoding="utf-8")
    load = load_script(path)
    assert load.spec is not None, load.problems
    return load.spec


BOMBS = {
    "busy_loop_in_try": (
        "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass\n",
        f"ran longer than {TIMEOUT} s (scripts.timeout) and was stopped",
    ),
    "string_repeat": ("s = 'a' * 10**10\n", "ran out of memory (scripts.memory_mb = 64)"),
    "huge_power": (
        "x = 7 ** (10 ** 8)\n",
        f"ran longer than {TIMEOUT} s (scripts.timeout) and was stopped",
    ),
    "zfill": ("s = 'x'.zfill(10**10)\n", "ran out of memory (scripts.memory_mb = 64)"),
    "huge_range_list": ("x = list(range(10**9))\n", "ran out of memory"),
    "list_growth": (
        "x = []\nwhile True:\n    x.append('abc' * 10000)\n",
        "ran out of memory (scripts.memory_mb = 64)",
    ),
    "memory_error_swallowed": (
        "while True:\n    try:\n        s = 'a' * 10**10\n    except:\n        pass\n",
        "ran longer than",
    ),
    "deep_recursion": (
        "def f(n):\n    return f(n + 1)\nf(0)\n",
        "recursed too deeply (the sandbox allows about 400 nested calls)",
    ),
    "bytearray": ("b = bytearray(10**10)\n", "ran out of memory"),
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
async def test_bomb_fails_its_attempt_while_other_sinks_go_on(tmp_path: Path, bomb: str) -> None:
    body, expected = BOMBS[bomb]
    async with Runtime(tmp_path, config=limits_config()) as rt:
        await rt.add_sink(script_spec(tmp_path, "bomb", "custom.bomb", body))
        await rt.add_sink(
            script_spec(
                tmp_path,
                "steady",
                "custom.tick",
                "import knot.event\nprint('tick', knot.event.get_int('n'))\n",
            )
        )
        rec = recording("rec", "custom.tick")
        await rt.add_sink(rec)
        bombing = asyncio.create_task(rt.emit_and_wait("bomb", {}, timeout=30))
        for n in range(20):
            await rt.emit("tick", {"n": n})
        await rec.wait_for(20)
        report = await bombing
        outcome = report.outcomes["bomb"]
        assert outcome.status is DeliveryStatus.FAILED
        assert expected in outcome.error
        assert outcome.error.startswith(f"The script {tmp_path / 'bomb.py'}")
        await rt.wait_idle()
        steady = rt.sink("steady")
        assert steady.status()["output"] == [f"tick {n}" for n in range(20)]
        # The runtime is unharmed and the bomb sink itself still runs its next events.
        after = await rt.emit_and_wait("tick", {"n": 99})
        assert after.outcomes["steady"].status is DeliveryStatus.DELIVERED
        audit = await rt.audit_entries(sink="bomb")
        assert [e.kind for e in audit] == [AuditKind.SCRIPT_FAILED]


async def test_catastrophic_regex_finishes_quickly(tmp_path: Path) -> None:
    body = "import re\nprint(re.search('(a+)+$', 'a' * 100000 + 'b'))\n"
    async with Runtime(tmp_path, config=limits_config()) as rt:
        await rt.add_sink(script_spec(tmp_path, "regex", "*", body))
        report = await rt.emit_and_wait("x", {})
        outcome = report.outcomes["regex"]
        assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
        assert outcome.result is not None
        assert outcome.result.output == ("None",)


async def test_a_worker_that_dies_fails_the_attempt_and_is_replaced(tmp_path: Path) -> None:
    body = "import time, knot.event\nprint('start')\ntime.sleep(knot.event.get_int('s', 0) / 10)\n"
    async with Runtime(tmp_path, config=limits_config(workers=1)) as rt:
        await rt.add_sink(script_spec(tmp_path, "sleepy", "*", body))
        first = await rt.emit_and_wait("x", {})
        assert first.outcomes["sleepy"].status is DeliveryStatus.DELIVERED
        pool = rt.script_pool
        assert pool is not None
        (pid,) = pool.pids()
        slow = asyncio.create_task(rt.emit_and_wait("x", {"s": 5}, timeout=30))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        outcome = (await slow).outcomes["sleepy"]
        assert outcome.status is DeliveryStatus.FAILED
        assert "stopped its sandbox worker (it was killed by SIGKILL)" in outcome.error
        again = await rt.emit_and_wait("x", {})
        assert again.outcomes["sleepy"].status is DeliveryStatus.DELIVERED
        assert pool.pids() != [pid]


async def test_a_failed_script_is_retried_then_audited_as_script_failed(tmp_path: Path) -> None:
    body = (
        "import knot.event\nprint('attempt')\nraise ValueError('bad deploy ' + knot.event.id())\n"
    )
    async with Runtime(tmp_path, config=limits_config(attempts=3)) as rt:
        await rt.add_sink(script_spec(tmp_path, "flaky", "*", body))
        report = await rt.emit_and_wait("x", {}, timeout=30)
        outcome = report.outcomes["flaky"]
        assert outcome.status is DeliveryStatus.FAILED
        assert outcome.attempts == 3
        where = f"{tmp_path / 'flaky.py'}:4"  # the header is line 1
        assert outcome.error == f"The script {where} raised ValueError: bad deploy {report.id}"
        await rt.flush()
        (entry,) = await rt.audit_entries(sink="flaky")
        assert entry.kind is AuditKind.SCRIPT_FAILED
        assert entry.to_dict()["title"] == "Event Sink Script Failed"
        assert entry.event_id == report.id
        assert "after 3 attempts" in entry.message
        status = next(s for s in rt.sinks() if s.name == "flaky")
        assert (status.failed, status.retries) == (1, 2)
        assert status.extra["output"] == ["attempt"] * 3


async def test_a_failure_in_a_batch_keeps_order_and_retries_that_event(tmp_path: Path) -> None:
    body = (
        "import knot.event\nn = knot.event.get_int('n')\n"
        "if n == 7 and knot.event.get_bool('fail'):\n    raise RuntimeError('seven')\nprint(n)\n"
    )
    config = limits_config(attempts=2)
    async with Runtime(tmp_path, config=config) as rt:
        await rt.add_sink(script_spec(tmp_path, "ordered", "*", body))
        for n in range(40):
            await rt.emit("x", {"n": n, "fail": n == 7})
        await rt.wait_idle()
        status = next(s for s in rt.sinks() if s.name == "ordered")
        assert (status.delivered, status.failed) == (39, 1)
        lines = rt.sink("ordered").status()["output"]
        assert lines == [str(n) for n in range(20, 40)]  # the last 20, in order


async def test_a_worker_that_ran_out_of_memory_is_replaced(tmp_path: Path) -> None:
    body = "import knot.event\nif knot.event.get_bool('bomb'):\n    s = 'a' * 10**10\n"
    async with Runtime(tmp_path, config=limits_config(workers=1)) as rt:
        await rt.add_sink(script_spec(tmp_path, "hungry", "*", body))
        await rt.emit_and_wait("x", {})
        pool = rt.script_pool
        assert pool is not None
        before = pool.pids()
        report = await rt.emit_and_wait("x", {"bomb": True})
        assert "ran out of memory" in report.outcomes["hungry"].error
        after = await rt.emit_and_wait("x", {})
        assert after.outcomes["hungry"].status is DeliveryStatus.DELIVERED
        assert pool.pids() != before
        assert pool.started == 2


async def test_changed_script_settings_apply_to_the_next_delivery(tmp_path: Path) -> None:
    body = "import time\ntime.sleep(0.4)\nprint('slept')\n"
    async with Runtime(tmp_path, config=limits_config()) as rt:
        await rt.add_sink(script_spec(tmp_path, "sleeper", "*", body))
        ok = await rt.emit_and_wait("x", {})
        assert ok.outcomes["sleeper"].status is DeliveryStatus.DELIVERED
        # What a knot.toml reload does: a new Config on the runtime.
        rt.config = replace(rt.config, scripts=replace(rt.config.scripts, timeout=0.2))
        report = await rt.emit_and_wait("x", {})
        outcome = report.outcomes["sleeper"]
        assert outcome.status is DeliveryStatus.FAILED
        assert "time.sleep(0.4) would run past the script's time limit" in outcome.error


async def test_a_long_expression_compiles_in_the_worker_as_it_did_at_load(tmp_path: Path) -> None:
    """Found by fuzzing: the worker compiled under its low recursion limit (for scripts), so a
    script `knot check` accepted (a 150-term sum) killed every worker it was sent to."""
    body = "x = " + " + ".join(["1"] * 150) + "\nprint(x)\n"
    async with Runtime(tmp_path, config=limits_config(workers=1)) as rt:
        await rt.add_sink(script_spec(tmp_path, "longsum", "*", body))
        pool = rt.script_pool
        assert pool is not None
        report = await rt.emit_and_wait("x", {})
        outcome = report.outcomes["longsum"]
        assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
        assert outcome.result is not None
        assert outcome.result.output == ("150",)
        assert pool.started == 1  # the worker survived
