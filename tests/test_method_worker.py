"""The method-script worker process on its own: real worker processes over their pipes.

Declarations (both forms), params, errors as JSON-RPC error objects, state between calls,
serial against concurrent calls, cancelling a call past its time, and the sandbox's rules.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from knot.sandbox.method_process import MethodProcess
from knot.sandbox.process import RemoteError, WorkerDied, WorkerTimeout

pytestmark = pytest.mark.anyio

CALC = """\
import knot.methods
import time

total = 0

@knot.methods.method(params=["minuend", "subtrahend"])
def subtract(p):
    return p["minuend"] - p["subtrahend"]

@knot.methods.method
def add(params):
    global total
    total += params["n"]
    print("total is now", total)
    return total

@knot.methods.method(name="nap", mode="concurrent")
def nap_concurrently(params):
    time.sleep(params["seconds"])
    return time.monotonic()

@knot.methods.method(mode="serial")
def nap_serially(params):
    time.sleep(params["seconds"])
    return time.monotonic()

@knot.methods.method
def divide(params):
    if params["b"] == 0:
        raise knot.methods.InvalidParams("b must not be 0", {"field": "b"})
    return params["a"] / params["b"]

@knot.methods.method
def broken(params):
    values = {}
    return values["missing"]

@knot.methods.method(mode="concurrent")
def spin(params):
    while True:
        pass

@knot.methods.method(mode="concurrent")
def hog(params):
    return 7 ** (10 ** 8)

@knot.methods.method
def unsendable(params):
    return {1, 2}
"""

SCRIPTLING = """\
import scriptling.runtime as runtime

seen = []

def echo(params):
    return params

def divide(params):
    if params["b"] == 0:
        return runtime.jsonrpc.error(-32602, "division by zero", {"field": "b"})
    return params["a"] / params["b"]

def on_progress(params):
    seen.append(params)
    return "ignored"

def progress_seen(params):
    return seen

runtime.jsonrpc.method("echo", "handlers.echo")
runtime.jsonrpc.method("divide", divide)
runtime.jsonrpc.notification("progress", "on_progress")
runtime.jsonrpc.method("seen", progress_seen)
"""


async def no_requests(method: str, params: Any, context: Any, deadline: Any = None) -> Any:
    raise AssertionError(f"unexpected request {method}")


class Worker:
    def __init__(self, process: MethodProcess) -> None:
        self.process = process

    async def call(self, method: str, params: Any = None, *, timeout: float = 10.0) -> Any:
        body = json.dumps({"method": method, "params": params, "timeout": timeout})
        return await self.process.request("call", body, timeout=timeout)


async def start(
    source: str, *, threads: int = 4, grace: float = 2.0, on_request: Any = no_requests
) -> Worker:
    process = await MethodProcess.start(
        memory_mb=256, threads=threads, on_request=on_request, grace=grace
    )
    process.grace = grace
    return Worker(process)


@pytest.fixture
async def calc() -> AsyncIterator[Worker]:
    worker = await start(CALC)
    answer = await worker.process.load("calc", CALC, "calc.py", timeout=10)
    assert [m["name"] for m in answer["methods"]] == [
        "subtract",
        "add",
        "nap",
        "nap_serially",
        "divide",
        "broken",
        "spin",
        "hog",
        "unsendable",
    ]
    yield worker
    await worker.process.close()


async def test_declarations_carry_their_options_and_lines() -> None:
    process = await MethodProcess.start(memory_mb=256, threads=1, on_request=no_requests)
    try:
        answer = await process.load("calc", CALC, "calc.py", timeout=10)
    finally:
        await process.close()
    methods = {m["name"]: m for m in answer["methods"]}
    assert methods["subtract"] == {
        "name": "subtract",
        "events": [],
        "event_sinks": [],
        "mode": "serial",
        "params": ["minuend", "subtrahend"],
        "notification": False,
        "line": 6,
    }
    assert methods["nap"]["mode"] == "concurrent"
    assert methods["nap"]["line"] == 17


async def test_positional_and_named_params_and_module_state(calc: Worker) -> None:
    assert await calc.call("subtract", [42, 23]) == {"ok": True, "result": 19}
    assert await calc.call("subtract", {"subtrahend": 23, "minuend": 42}) == {
        "ok": True,
        "result": 19,
    }
    assert await calc.call("add", {"n": 2}) == {
        "ok": True,
        "result": 2,
        "output": ["total is now 2"],
    }
    assert (await calc.call("add", {"n": 5}))["result"] == 7  # the module state lives on


async def test_declared_params_that_do_not_fit_are_invalid_params(calc: Worker) -> None:
    wrong_count = await calc.call("subtract", [1])
    assert wrong_count["error"] == {
        "code": -32602,
        "message": "calc.subtract takes 2 params (minuend, subtrahend); got 1",
        "data": {"params": ["minuend", "subtrahend"]},
    }
    wrong_names = await calc.call("subtract", {"minuend": 1, "x": 2})
    assert wrong_names["error"]["code"] == -32602
    assert "missing subtrahend; unknown x" in wrong_names["error"]["message"]
    raised = await calc.call("divide", {"a": 1, "b": 0})
    assert raised["error"] == {"code": -32602, "message": "b must not be 0", "data": {"field": "b"}}


async def test_an_exception_is_server_error_with_type_message_and_line(calc: Worker) -> None:
    answer = await calc.call("broken", {})
    assert answer["ok"] is False
    assert answer["error"] == {
        "code": -32000,
        "message": "The method calc.broken raised KeyError: 'missing' (calc.py:36).",
        "data": {"type": "KeyError", "message": "'missing'", "line": 36},
    }
    unsendable = await calc.call("unsendable")
    assert unsendable["error"]["code"] == -32603
    assert "cannot be sent as JSON" in unsendable["error"]["message"]


async def test_concurrent_calls_overlap_and_serial_calls_do_not(calc: Worker) -> None:
    started = time.monotonic()
    await asyncio.gather(*(calc.call("nap", {"seconds": 0.4}) for _ in range(3)))
    concurrent = time.monotonic() - started
    started = time.monotonic()
    answers = await asyncio.gather(*(calc.call("nap_serially", {"seconds": 0.2}) for _ in range(3)))
    serial = time.monotonic() - started
    assert concurrent < 0.8  # three 0.4 s naps side by side
    assert serial >= 0.6  # three 0.2 s naps one after the other
    ends = sorted(a["result"] for a in answers)
    assert ends[1] - ends[0] >= 0.19
    assert ends[2] - ends[1] >= 0.19


async def test_a_call_past_its_time_is_cancelled_and_the_worker_lives_on(calc: Worker) -> None:
    await calc.call("add", {"n": 1})
    with pytest.raises(WorkerTimeout):
        await calc.call("spin", timeout=0.3)
    await asyncio.wait_for(calc.process.drained(), 5)  # the worker let go of the call
    assert calc.process.alive
    assert (await calc.call("add", {"n": 1}))["result"] == 2  # same worker, same state


async def test_a_call_stuck_in_one_c_call_gets_its_worker_killed() -> None:
    worker = await start(CALC, grace=0.3)
    await worker.process.load("calc", CALC, "calc.py", timeout=10)
    with pytest.raises(WorkerTimeout):
        await worker.call("hog", timeout=0.3)
    how = await asyncio.wait_for(worker.process.exited, 5)
    assert how == "a call did not stop within 0.3 s of its time running out, so it was stopped"
    with pytest.raises(WorkerDied):
        await worker.call("add", {"n": 1})


async def test_calls_in_flight_fail_when_the_worker_dies(calc: Worker) -> None:
    call = asyncio.create_task(calc.call("nap", {"seconds": 5}))
    await asyncio.sleep(0.2)
    calc.process.kill()
    with pytest.raises(WorkerDied) as died:
        await call
    assert died.value.how == "it was killed by SIGKILL"


async def test_scriptling_form_with_string_handlers_notifications_and_errors() -> None:
    worker = await start(SCRIPTLING)
    try:
        answer = await worker.process.load("handlers", SCRIPTLING, "handlers.py", timeout=10)
        assert [m["name"] for m in answer["methods"]] == ["echo", "divide", "progress", "seen"]
        progress = next(m for m in answer["methods"] if m["name"] == "progress")
        assert progress["notification"] is True
        assert await worker.call("echo", {"hello": "world"}) == {
            "ok": True,
            "result": {"hello": "world"},
        }
        assert (await worker.call("divide", {"a": 1, "b": 0}))["error"] == {
            "code": -32602,
            "message": "division by zero",
            "data": {"field": "b"},
        }
        assert await worker.call("progress", {"done": 1}) == {"ok": True, "result": None}
        assert (await worker.call("seen"))["result"] == [{"done": 1}]
    finally:
        await worker.process.close()


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import os\n", {"line": 1, "col": 8, "rule": "import of 'os' is not allowed"}),
        (
            "from knot import files\n",
            {"line": 1, "col": 18, "rule": "'knot.files' is not available to method scripts"},
        ),
        (
            "open('x')\n",
            {"line": 1, "col": 1, "rule": "the file system is not available to scripts"},
        ),
    ],
)
async def test_method_scripts_follow_the_sandbox_rules(source: str, problem: Any) -> None:
    worker = await start(source)
    try:
        with pytest.raises(RemoteError) as refused:
            await worker.process.load("bad", source, "bad.py", timeout=10)
        assert refused.value.code == -32001
        assert refused.value.data == [problem]
    finally:
        await worker.process.close()


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("import knot.methods\nknot.methods.method(mode='sometimes')(len)\n", 2, "mode must be"),
        ("import knot.methods\n@knot.methods.method(events=3)\ndef f(p):\n    pass\n", 2, "events"),
        ("import scriptling.runtime as r\nr.jsonrpc.method('x', 'nope')\n", 0, "names no function"),
        ("x = 1\n\n1 / 0\n", 3, "division by zero"),
    ],
)
async def test_a_top_level_that_raises_is_a_load_error_with_its_line(
    source: str, line: int, message: str
) -> None:
    worker = await start(source)
    try:
        with pytest.raises(RemoteError) as failed:
            await worker.process.load("bad", source, "bad.py", timeout=10)
        assert failed.value.code == -32003
        assert failed.value.data["line"] == line
        assert message in failed.value.data["message"]
    finally:
        await worker.process.close()


async def test_declaring_after_load_is_refused() -> None:
    source = (
        "import knot.methods\n@knot.methods.method\ndef late(p):\n    knot.methods.method(len)\n"
    )
    worker = await start(source)
    try:
        await worker.process.load("late", source, "late.py", timeout=10)
        answer = await worker.call("late", {})
        assert answer["error"]["data"]["type"] == "RuntimeError"
        assert "while the script loads" in answer["error"]["message"]
    finally:
        await worker.process.close()


async def test_emit_goes_to_the_runtime_with_the_call_context() -> None:
    seen: list[tuple[str, Any, Any]] = []

    async def serve(method: str, params: Any, context: Any, deadline: Any = None) -> Any:
        seen.append((method, params, context))
        return {"id": "event-1"}

    source = (
        "import knot.methods, knot.event\n"
        "@knot.methods.method\n"
        "def shout(p):\n"
        "    return knot.event.emit('said', {'text': p['text']})\n"
    )
    worker = await start(source, on_request=serve)
    try:
        await worker.process.load("loud", source, "loud.py", timeout=10)
        body = json.dumps({"method": "shout", "params": {"text": "hi"}, "timeout": 5})
        answer = await worker.process.request("call", body, timeout=5, context="ctx")
    finally:
        await worker.process.close()
    assert answer == {"ok": True, "result": "event-1"}
    emitted = {"call": 2, "index": 0, "type": "said", "payload": {"text": "hi"}}
    assert seen == [("emit", emitted, "ctx")]


async def test_a_batch_runs_in_order_reports_progress_and_stops_at_the_first_failure() -> None:
    emits: list[Any] = []

    async def serve(method: str, params: Any, context: Any, deadline: Any = None) -> Any:
        emits.append((params["index"], params["payload"]))
        return {"id": f"e{params['index']}"}

    source = (
        "import knot.methods, knot.event\n"
        "@knot.methods.method\n"
        "def take(p):\n"
        "    if p == 3:\n"
        "        raise ValueError('three')\n"
        "    print('took', p, knot.event.id())\n"
        "    return knot.event.emit('took', {'p': p})\n"
    )
    worker = await start(source, on_request=serve)
    progress: list[int] = []
    try:
        await worker.process.load("batch", source, "batch.py", timeout=10)
        items = [{"params": n, "event": {"id": f"ev{n}"}} for n in range(5)]
        body = json.dumps({"method": "take", "batch": items, "timeout": 5})
        answer = await worker.process.request(
            "call", body, timeout=5, on_progress=lambda: progress.append(1)
        )
    finally:
        await worker.process.close()
    assert [r["ok"] for r in answer["results"]] == [True, True, True, False]
    assert [r.get("result") for r in answer["results"][:3]] == ["e0", "e1", "e2"]
    assert [r["output"] for r in answer["results"][:3]] == [
        ["took 0 ev0"],
        ["took 1 ev1"],
        ["took 2 ev2"],
    ]
    assert answer["results"][3]["error"]["data"]["message"] == "three"
    assert emits == [(0, {"p": 0}), (1, {"p": 1}), (2, {"p": 2})]  # each with its own event
    assert len(progress) == 3
