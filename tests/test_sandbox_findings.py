"""Every finding of the sandbox review (issue 22), as a regression test with real workers.

1. a `str` subclass as an attribute name walked out of the sandbox;
2. a generator's `finally`, left in a reference cycle by one sink, ran inside another's run;
3. state shared by the scripts of one worker: the regex cache, ABC registries, `random`;
4. one huge `print` passed the output cap whole;
5. deeply nested JSON ended workers (and a method worker's state);
6. emits escaped the time and size budget;
7. the `string.Template` rule was bypassed by a mixin or a str-subclass delimiter;
and the suspected ones: a C-level crash of a worker, unbounded directives, `id()`.
"""

from __future__ import annotations

import asyncio
import random
import textwrap
from pathlib import Path
from typing import Any

import pytest

from knot import Config, DeliveryStatus, MethodFailed, Runtime
from knot._config import DeliverySettings, ScriptSettings
from knot.sandbox.process import RemoteError, WorkerProcess, WorkerTimeout
from knot.sandbox.worker.policy import check_source
from knot.scripts import load_script

from .conftest import write_config

pytestmark = pytest.mark.anyio

ESCAPE = """\
import json
class N(str):
    def startswith(self, *a):
        return False
    def __eq__(self, other):
        return False
"""


def config(**scripts: Any) -> Config:
    settings: dict[str, Any] = {"timeout": 5.0, "memory_mb": 64, "workers": 1}
    settings.update(scripts)
    return Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.01,), queue_size=1000),
        scripts=ScriptSettings(**settings),
    )


async def add_script(rt: Runtime, folder: Path, name: str, events: str, body: str) -> None:
    load = load_script(write_script(folder, name, events, body))
    assert load.spec is not None, load.problems
    await rt.add_sink(load.spec)


def write_script(folder: Path, name: str, events: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"# events: {events}\n{textwrap.dedent(body)}", encoding="utf-8")
    return path


async def run_once(rt: Runtime, event: str, sink: str, data: dict[str, Any] | None = None) -> Any:
    report = await rt.emit_and_wait(event, data or {}, timeout=30)
    return report.outcomes[sink]


# -- 1. a str subclass as an attribute name ---------------------------------------------------


@pytest.mark.parametrize(
    "attempt",
    [
        "b = getattr(json.dumps, N('__globals__'))",
        "class C:\n    pass\nsetattr(C(), N('__class__'), C)",
        "class C:\n    pass\ndelattr(C, N('__init__'))",
    ],
)
async def test_a_str_subclass_name_reaches_nothing_in_a_worker(
    tmp_path: Path, attempt: str
) -> None:
    source = ESCAPE + attempt + "\n"
    assert check_source(source) == ()  # nothing to see at load time: it fails when it runs
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "sly", "*", source)
        outcome = await run_once(rt, "x", "sly")
        assert outcome.status is DeliveryStatus.FAILED
        assert "attribute names must be plain strings" in outcome.error


async def test_hasattr_with_a_str_subclass_says_no(tmp_path: Path) -> None:
    source = ESCAPE + "print(hasattr(json.dumps, N('__globals__')), hasattr(json, 'dumps'))\n"
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "sly", "*", source)
        outcome = await run_once(rt, "x", "sly")
        assert outcome.result is not None
        assert outcome.result.output == ("False True",)


async def test_the_reported_escape_fails_where_it_printed_uid_root(tmp_path: Path) -> None:
    source = ESCAPE + (
        "b = getattr(json.dumps, N('__globals__'))[N('__builtins__')]\n"
        "print(b[N('__import__')]('os').getuid())\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "evil", "*", source)
        outcome = await run_once(rt, "x", "evil")
        assert outcome.status is DeliveryStatus.FAILED
        assert outcome.error.endswith(
            "raised AttributeError: attribute names must be plain strings (not of a str subclass)"
        )
        assert rt.sink("evil").status()["output"] == []


async def test_a_method_script_cannot_use_the_escape_either(project: Path) -> None:
    source = ESCAPE + textwrap.dedent(
        """\
        import knot.methods

        @knot.methods.method
        def walk(params):
            return str(getattr(json.dumps, N("__globals__")))

        @knot.methods.method
        def handler_trick(params):
            return "fine"

        class H(str):
            def rsplit(self, *a):
                return ["_getattr_"]
            def startswith(self, *a):
                return False

        import scriptling.runtime as runtime
        runtime.jsonrpc.method("trick", H("mm.handler_trick"))
        """
    )
    write_config(project, "")
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "mm.py").write_text(source, encoding="utf-8")
    async with Runtime(project) as rt:
        with pytest.raises(MethodFailed, match="plain strings"):
            await rt.methods.call("mm", "walk")
        # The handler's name is read as the plain text it holds, not as its rsplit says.
        assert await rt.methods.call("mm", "trick") == "fine"


# -- 2. and 3. nothing of one sink's script meets another's run --------------------------------

PLANTER = """\
import collections
import knot.event
import re

def g():
    try:
        yield 1
    finally:
        knot.event.emit("stolen", {"victim": knot.event.id()})

class Holder:
    pass

h = Holder()
h.gen = g()
next(h.gen)
h.me = h  # a cycle: freed by the garbage collector, whenever it next runs

class Sly(str):
    def upper(self):
        return "x"

re.compile(Sly("invoice-[0-9]+"))  # planted in the regex cache
collections.ChainMap.register(str)
"""

VICTIM = """\
import collections
import knot.event
import re
junk = [[n] for n in range(3000)]  # enough allocation for the garbage collector to run
print(re.compile("invoice-[0-9]+").pattern.upper(), isinstance("x", collections.ChainMap))
"""


async def test_one_sinks_leftovers_never_run_in_another_sinks_run(tmp_path: Path) -> None:
    # workers=1 once meant one shared process; now it bounds live processes, and each sink
    # still gets a process of its own.
    async with Runtime(tmp_path, config=config(workers=1)) as rt:
        await add_script(rt, tmp_path / "s", "planter", "custom.plant", PLANTER)
        await add_script(rt, tmp_path / "s", "victim", "custom.work", VICTIM)
        assert (await run_once(rt, "plant", "planter")).status is DeliveryStatus.DELIVERED
        victims = []
        for _ in range(5):
            report = await rt.emit_and_wait("work", {}, timeout=30)
            outcome = report.outcomes["victim"]
            assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
            assert outcome.result is not None
            assert outcome.result.output == ("INVOICE-[0-9]+ False",)
            victims.append(report.id)
        await rt.wait_idle()
        stolen = [e.data.get("victim") for e in await rt.events("custom.stolen")]
        assert not set(stolen) & set(victims)


def untemper(value: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output."""
    value ^= value >> 18
    value ^= (value << 15) & 0xEFC60000
    result = value
    for _ in range(5):
        result = value ^ ((result << 7) & 0x9D2C5680)
    value = result & 0xFFFFFFFF
    result = value
    for _ in range(3):
        result = value ^ (result >> 11)
    return result & 0xFFFFFFFF


async def test_another_sinks_randomness_cannot_be_predicted(tmp_path: Path) -> None:
    leak = "import random\nprint(' '.join(str(random.getrandbits(32)) for n in range(624)))\n"
    draw = "import random\nprint(random.getrandbits(32))\n"
    async with Runtime(tmp_path, config=config(workers=1)) as rt:
        await add_script(rt, tmp_path / "s", "leaker", "custom.leak", leak)
        await add_script(rt, tmp_path / "s", "other", "custom.draw", draw)
        await add_script(rt, tmp_path / "s", "self_", "custom.leak2", draw)
        outcome = await run_once(rt, "leak", "leaker")
        words = [untemper(int(v)) for v in outcome.result.output[0].split()]
        predictor = random.Random()
        predictor.setstate((3, (*words, 624), None))
        predicted = predictor.getrandbits(32)
        other = await run_once(rt, "draw", "other")
        assert int(other.result.output[0]) != predicted


# -- 4. the print cap holds for one huge print -------------------------------------------------


async def test_one_huge_print_keeps_only_the_cap(tmp_path: Path) -> None:
    body = "print('Q' * (15 * 1024 * 1024))\nprint('after')\n"
    async with Runtime(tmp_path, config=config(memory_mb=256, max_output_bytes=4096)) as rt:
        await add_script(rt, tmp_path / "s", "loud", "*", body)
        outcome = await run_once(rt, "x", "loud")
        assert outcome.status is DeliveryStatus.DELIVERED
        assert outcome.result.output == ("Q" * 4096, "[output truncated at 4096 bytes]")


async def test_the_cap_counts_bytes_and_never_splits_a_character(tmp_path: Path) -> None:
    body = "print('é' * 3000)\n"  # 6000 bytes of UTF-8
    async with Runtime(tmp_path, config=config(max_output_bytes=1001)) as rt:
        await add_script(rt, tmp_path / "s", "accents", "*", body)
        outcome = await run_once(rt, "x", "accents")
        assert outcome.result.output == ("é" * 500, "[output truncated at 1001 bytes]")


# -- 5. nested JSON ------------------------------------------------------------------------------


def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


async def test_a_worker_survives_a_message_nested_past_its_recursion_limit() -> None:
    worker = await WorkerProcess.spawn(memory_mb=64)
    try:
        deep = "[" * 5000 + "]" * 5000
        params = f'{{"name":"s","hash":"h","source":"x = 1\\n","events":[{{"data":{deep}}}]}}'
        with pytest.raises(RemoteError) as refused:
            await worker.request("run", params, timeout=5)
        assert refused.value.code == -32700
        assert "nested too deeply" in refused.value.message
        assert worker.alive
        ok = await worker.request(
            "run",
            {"name": "s", "hash": "h", "source": "x = 1\n", "events": [{"data": nested(90)}]},
            timeout=5,
        )
        assert ok == {"failed_at": None}
    finally:
        await worker.close()


COUNTER = """\
import knot.methods
state = {"n": 0}

@knot.methods.method
def bump(params):
    state["n"] = state["n"] + 1
    return state["n"]

@knot.methods.method
def deep(params):
    value = 0
    for n in range(150):
        value = [value]
    return value
"""


async def test_a_method_worker_keeps_its_state_whatever_the_params(project: Path) -> None:
    write_config(project, "")
    folder = project / "scripts" / "methods"
    folder.mkdir(parents=True)
    (folder / "counter.py").write_text(COUNTER, encoding="utf-8")
    async with Runtime(project) as rt:
        assert await rt.methods.call("counter", "bump") == 1
        pid = rt.methods.worker_pid("counter")
        with pytest.raises(Exception, match="nests deeper than 100 levels"):
            await rt.methods.call("counter", "bump", nested(600))
        # A result too deep to send is the method's error, not the worker's end.
        with pytest.raises(MethodFailed, match="nests deeper than 100 levels"):
            await rt.methods.call("counter", "deep")
        assert await rt.methods.call("counter", "bump") == 2
        assert rt.methods.worker_pid("counter") == pid


async def test_deep_payloads_are_refused_at_ingress_and_workers_go_on(tmp_path: Path) -> None:
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "reader", "*", "import knot.event\nx = 1\n")
        with pytest.raises(Exception, match="nests deeper than 100 levels"):
            await rt.emit("deep", {"n": nested(400)})
        outcome = await run_once(rt, "fine", "reader", {"n": nested(98)})
        assert outcome.status is DeliveryStatus.DELIVERED


# -- 6. emits inside the budget -------------------------------------------------------------------


async def test_emitted_bytes_are_capped_per_run(tmp_path: Path) -> None:
    body = (
        "import knot.event\nblob = 'x' * (512 * 1024)\n"
        "for n in range(1000):\n    knot.event.emit('big', {'n': n, 'blob': blob})\n"
    )
    async with Runtime(tmp_path, config=config(max_emit_bytes=2 * 1024 * 1024)) as rt:
        await add_script(rt, tmp_path / "s", "hog", "custom.go", body)
        outcome = await run_once(rt, "go", "hog")
        assert outcome.status is DeliveryStatus.FAILED
        assert "tried to emit more than 2097152 bytes of events while handling one event" in (
            outcome.error
        )
        assert "(scripts.max_emit_bytes = 2097152)" in outcome.error
        await rt.wait_idle()
        assert len(await rt.events("custom.big")) == 3  # 3 of 512 KiB fit, the 4th does not


async def test_time_spent_on_emits_is_charged_to_the_run() -> None:
    worker = await WorkerProcess.spawn(memory_mb=64)
    source = "import knot.event\nfor n in range(5):\n    knot.event.emit('t', {})\n"

    async def slow_journal(method: str, params: Any) -> Any:
        await asyncio.sleep(0.2)  # each emit takes 0.2 s on the runtime's side
        return {"id": "child"}

    try:
        with pytest.raises(WorkerTimeout):
            await worker.request(
                "run",
                {"name": "s", "hash": "h", "source": source, "events": [{"id": "e"}]},
                timeout=0.5,
                on_request=slow_journal,
            )
    finally:
        await worker.close()


async def test_directives_are_capped_per_run(tmp_path: Path) -> None:
    body = "import knot.event\nfor n in range(500):\n    knot.event.directive('d', {'n': n})\n"
    async with Runtime(tmp_path, config=config(max_directives=20)) as rt:
        await add_script(rt, tmp_path / "s", "chatty", "*", body)
        outcome = await run_once(rt, "x", "chatty")
        assert outcome.status is DeliveryStatus.FAILED
        assert "tried to add more than 20 directives" in outcome.error


# -- 7. string.Template --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "class M:\n    idpattern = '(a+)+$'\nclass T(M, string.Template):\n    pass\n",
            "cannot set idpattern",
        ),
        (
            "class D(str):\n    def translate(self, table):\n        return '(a+)+$'\n"
            "class T(string.Template):\n    delimiter = D('$')\n",
            "delimiter must be a plain string",
        ),
        (
            "class D(str):\n    pass\nclass M:\n    delimiter = D('$')\n"
            "class T(M, string.Template):\n    pass\n",
            "delimiter must be a plain string",
        ),
    ],
)
async def test_template_rules_hold_against_mixins_and_subclassed_delimiters(
    tmp_path: Path, body: str, message: str
) -> None:
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "tpl", "*", "import string\n" + body)
        outcome = await run_once(rt, "x", "tpl")
        assert outcome.status is DeliveryStatus.FAILED
        assert message in outcome.error


async def test_a_template_subclass_that_only_changes_the_delimiter_still_works(
    tmp_path: Path,
) -> None:
    body = (
        "import string\nclass T(string.Template):\n    delimiter = '%'\n"
        "class U(T):\n    pass\nprint(U('%who here').substitute(who='we'))\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "tpl", "*", body)
        outcome = await run_once(rt, "x", "tpl")
        assert outcome.result.output == ("we here",)


# -- suspected: a crash in C, id() ----------------------------------------------------------------


async def test_a_worker_crashing_in_c_fails_only_its_own_sink(tmp_path: Path) -> None:
    crash = (
        "import itertools\nc = []\nfor n in range(300000):\n    c = itertools.chain(c)\nlist(c)\n"
    )
    async with Runtime(tmp_path, config=config(workers=2)) as rt:
        await add_script(rt, tmp_path / "s", "crash", "custom.crash", crash)
        await add_script(rt, tmp_path / "s", "calm", "*", "print('calm')\n")
        report = await rt.emit_and_wait("crash", {}, timeout=30)
        assert report.outcomes["crash"].status is DeliveryStatus.FAILED
        assert "stopped its sandbox worker" in report.outcomes["crash"].error
        assert report.outcomes["calm"].status is DeliveryStatus.DELIVERED
        pool = rt.script_pool
        assert pool is not None
        assert list(pool.owners()) == ["calm"]  # the crashed one's worker is gone


def test_id_is_refused_at_load_time() -> None:
    (violation,) = check_source("x = id(object())\n")
    assert violation.rule == "id() is not available to scripts (it would reveal memory addresses)"
    assert check_source("id = 'mine'\nprint(id)\n") == ()


# -- found by hand: text that is not text ---------------------------------------------------------


async def test_lone_surrogates_from_a_script_end_nothing(tmp_path: Path) -> None:
    body = (
        "import knot.event\nprint('lone \\ud800 here')\n"
        "try:\n    knot.event.emit('child', {'a': '\\ud800'})\nexcept ValueError as e:\n"
        "    print('emit:', e)\n"
        "try:\n    knot.event.directive('d', {'x': '\\udfff'})\nexcept TypeError as e:\n"
        "    print('directive:', e)\n"
    )
    async with Runtime(tmp_path, config=config()) as rt:
        await add_script(rt, tmp_path / "s", "odd", "*", body)
        outcome = await run_once(rt, "x", "odd")
        assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
        assert outcome.result.output == (
            "lone \ufffd here",
            "emit: the emitted payload holds a lone surrogate, which is not text",
            "directive: the directive's options are not JSON: the directive holds a lone "
            "surrogate, which is not text",
        )
        with pytest.raises(Exception, match="lone surrogate"):
            await rt.emit("direct", {"a": "\ud800"})


async def test_each_event_of_a_batch_has_the_whole_timeout() -> None:
    """The run's clock starts over as each event finishes (the runtime moves its deadline at
    each result): three events of 0.3 s fit a 0.5 s timeout; one of 0.8 s does not, and the
    events before it stay reported."""
    worker = await WorkerProcess.spawn(memory_mb=64)
    source = "import time\nimport knot.event\ntime.sleep(knot.event.get_int('s') / 10)\n"
    reported: list[int] = []

    def on_notify(method: str, params: Any) -> None:
        reported.append(int(params["index"]))

    def run(*tenths: int) -> Any:
        events = [{"id": str(i), "type": "t", "data": {"s": s}} for i, s in enumerate(tenths)]
        params = {"name": "s", "hash": "h", "source": source, "events": events}
        return worker.request("run", params, timeout=0.5, on_notify=on_notify)

    try:
        assert await run(3, 3, 3) == {"failed_at": None}
        assert reported == [0, 1, 2]
        reported.clear()
        with pytest.raises(WorkerTimeout):
            await run(3, 3, 8, 3)
        assert reported == [0, 1]
    finally:
        await worker.close()


async def test_results_are_seen_as_events_finish_not_when_the_run_ends() -> None:
    """Results travel on a pipe the runtime reads every few milliseconds (and before anything
    else the worker says): a slow batch's first events are known long before its last ends
    (a synchronous Sky answer waits for its own event only)."""
    worker = await WorkerProcess.spawn(memory_mb=64)
    source = "import time\ntime.sleep(0.25)\n"
    loop = asyncio.get_running_loop()
    seen: list[float] = []

    def on_notify(method: str, params: Any) -> None:
        seen.append(loop.time())

    try:
        events = [{"id": str(i), "type": "t", "data": {}} for i in range(3)]
        params = {"name": "s", "hash": "h", "source": source, "events": events}
        assert await worker.request("run", params, timeout=5, on_notify=on_notify) == {
            "failed_at": None
        }
    finally:
        await worker.close()
    # Each result is seen apart from the next (a quarter of a second of sleep between them),
    # not all together when the run's answer comes.
    assert len(seen) == 3
    assert seen[1] - seen[0] > 0.1
    assert seen[2] - seen[1] > 0.1
