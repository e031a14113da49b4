"""Sandbox escapes: every known RestrictedPython escape and our own attempts stay shut.

Each attempt is either refused when the script is loaded (a rule with line and column) or
fails when it runs; the tests check which, and with what, so a guard that stops working shows.
Most run the sandbox in-process (fast); `test_escape_attempts_fail_inside_a_worker` repeats a
few through a real worker process.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from knot import Config, DeliveryStatus, Runtime
from knot._config import DeliverySettings, ScriptSettings
from knot.sandbox.worker.policy import check_source
from knot.sandbox.worker.runner import RunOutcome, ScriptRunner
from knot.scripts import load_script

RUNNER = ScriptRunner()


def run(source: str, data: dict[str, object] | None = None) -> RunOutcome:
    source = textwrap.dedent(source)
    violations = check_source(source, "escape.py")
    assert not violations, violations
    digest = str(hash(source))
    assert RUNNER.load("escape", digest, source, "escape.py") == ()
    event = {"id": "e1", "type": "custom.t", "data": data or {}}

    def emit(event_type: str, payload: str) -> str:
        return "child"

    return RUNNER.run_one("escape", event, emit, timeout=5.0)


def refused(source: str) -> list[str]:
    return [v.rule for v in check_source(textwrap.dedent(source), "escape.py")]


def fails(source: str) -> str:
    """Run `source`; it must fail. Returns 'Type: message'."""
    outcome = run(source)
    assert outcome.error is not None, f"ran without error; output {outcome.output}"
    return f"{outcome.error.type}: {outcome.error.message}"


# -- the escapes FACTS lists, fixed in RestrictedPython 9.0 --------------------------------


def test_generator_frames_are_unreachable() -> None:
    gen = "def g():\n    yield 1\ngen = g()\n"
    assert refused(gen + "f = gen.gi_frame\n") == [
        '"gi_frame" is a restricted name, that is forbidden to access in RestrictedPython'
    ]
    assert refused(gen + "c = gen.gi_code\n") != []
    assert "restricted attribute" in fails(gen + "f = getattr(gen, 'gi_' + 'frame')\n")
    assert "restricted attribute" in fails(gen + "f = getattr(gen, 'gi_code')\n")
    assert "restricted attribute" in fails(gen + "f = getattr(gen, 'gi_yieldfrom')\n")


def test_traceback_frames_are_unreachable() -> None:
    assert refused("try:\n    1/0\nexcept Exception as e:\n    tb = e.__traceback__\n") != []
    message = fails("try:\n    1/0\nexcept Exception as e:\n    tb = getattr(e, '__traceback__')\n")
    assert "starts with" in message
    outcome = run(
        "def f():\n    yield 1\ng = f()\nfor name in ['tb_frame', 'tb_next', 'f_globals', "
        "'f_back']:\n    try:\n        getattr(g, name)\n    except AttributeError as e:\n"
        "        print(name, 'refused' if 'restricted' in str(e) else 'missing')\n"
    )
    assert outcome.output == [
        "tb_frame refused",
        "tb_next refused",
        "f_globals refused",
        "f_back refused",
    ]


def test_str_format_and_format_map_cannot_traverse_attributes() -> None:
    assert refused("x = '{0.__class__}'.format(1)\n") == [
        "str.format() is not allowed; use an f-string"
    ]
    assert refused("x = '{a.__class__}'.format_map({'a': 1})\n") == [
        "str.format_map() is not allowed; use an f-string"
    ]
    assert "str.format() is not allowed" in fails("s = '{0.__class__}'\nx = s.format(1)\n")
    assert "str.format_map() is not allowed" in fails("s = '{0}'\nx = s.format_map({})\n")
    assert "str.format() is not allowed" in fails("x = getattr(str, 'format')('{0.real}', 1)\n")
    assert "str.format() is not allowed" in fails(
        "class S(str):\n    pass\nx = S('{0.__class__}').format(1)\n"
    )


def test_string_formatter_is_not_available() -> None:
    assert "has no attribute 'Formatter'" in fails("import string\nf = string.Formatter()\n")
    assert refused("from string import Formatter\n") == []  # legal syntax, but ...
    assert "Formatter" in fails("from string import Formatter\n")


def test_attribute_error_obj_is_refused() -> None:
    message = fails(
        "import json\ntry:\n    json.nope\nexcept AttributeError as e:\n    x = e.obj\n"
    )
    assert "restricted attribute of exceptions" in message
    message = fails("try:\n    (1).nope\nexcept AttributeError as e:\n    x = getattr(e, 'obj')\n")
    assert "restricted attribute of exceptions" in message


def test_try_star_is_refused() -> None:
    assert refused("try:\n    pass\nexcept* ValueError:\n    pass\n") == [
        "TryStar statements are not allowed"
    ]


def test_positional_only_parameters_cannot_shadow_guards() -> None:
    rules = refused("def f(_getattr_, /):\n    pass\n")
    assert rules == ['"_getattr_" is an invalid variable name because it starts with "_"']
    assert refused("g = lambda _write_=None, /: _write_\n") != []


# -- our own attempts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("b = __builtins__\n", 'starts with "_"'),
        ("m = __import__('os')\n", 'starts with "_"'),
        ("import os\n", "import of 'os' is not allowed"),
        ("import sys\n", "import of 'sys' is not allowed"),
        ("import importlib\n", "import of 'importlib' is not allowed"),
        ("from os import path\n", "import of 'os' is not allowed"),
        ("from . import x\n", "relative imports are not allowed"),
        ("from json import *\n", '"*" imports are not allowed'),
        ("from knot import methods\n", "'knot.methods' is not available to sink scripts"),
        ("x = open('/etc/passwd')\n", "the file system is not available to scripts"),
        ("eval('1')\n", "Eval calls are not allowed"),
        ("exec('1')\n", "Exec calls are not allowed"),
        ("c = compile('1', 'f', 'eval')\n", "compile() is not allowed"),
        ("g = globals()\n", "globals() is not allowed"),
        ("v = vars()\n", "vars() is not allowed"),
        ("d = dir(1)\n", "dir() is not allowed"),
        ("t = type(1)\n", "type() is not allowed; use isinstance()"),
        ("c = (1).__class__\n", 'starts with "_"'),
        ("s = object.__subclasses__()\n", 'starts with "_"'),
        ("class A(metaclass=print):\n    pass\n", 'metaclass" is not allowed'),
        ("async def f():\n    pass\n", "AsyncFunctionDef statements are not allowed"),
        ("def f():\n    x = 1\n    def g():\n        nonlocal x\n", "Nonlocal statements"),
        ("(_x := 1)\n", 'starts with "_"'),
        ("breakpoint()\n", '"breakpoint" is a reserved name'),
    ],
)
def test_refused_at_load_time(source: str, rule: str) -> None:
    rules = refused(source)
    assert any(rule in r for r in rules), rules


def test_a_script_may_bind_names_that_shadow_missing_builtins() -> None:
    assert run("type = 'deploy'\nprint(type)\n").output == ["deploy"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = getattr(1, '__class__')\n", 'starts with "_"'),
        ("x = getattr(object, '__subclasses__')\n", 'starts with "_"'),
        ("x = int.mro()\n", '"mro" is a restricted attribute'),
        ("class A:\n    pass\nx = A.mro()\n", '"mro" is a restricted attribute'),
        ("class A:\n    pass\nx = getattr(A, '__bases__')\n", 'starts with "_"'),
        ("import knot.event\nx = getattr(knot.event.emit, '__globals__')\n", 'starts with "_"'),
        ("import knot.event\nx = getattr(knot.event.emit, '__closure__')\n", 'starts with "_"'),
        ("import json\njson.dumps = print\n", "Scripts cannot change module objects"),
        ("import json\nsetattr(json, 'dumps', print)\n", "Scripts cannot change module objects"),
        ("import knot.event\nsetattr(knot.event, 'id', print)\n", "cannot change module"),
        ("def f():\n    pass\nsetattr(f, 'x', 1)\n", "Scripts cannot change function objects"),
        ("class A:\n    pass\nsetattr(A(), '__class__', int)\n", 'starts with "_"'),
        ("import functools\nw = functools.wraps\n", "has no attribute 'wraps'"),
        ("import functools\nw = functools.update_wrapper\n", "no attribute 'update_wrapper'"),
        ("import datetime\nx = datetime.sys\n", "has no attribute 'sys'"),
        ("import json\nx = json.decoder\n", "has no attribute 'decoder'"),
        ("import random\nrandom.seed(1)\n", "has no attribute 'seed'"),
        ("import re\nx = re.compile('a').__class__\n", ""),
        ("x = hasattr(1, '__class__') or undefined_name\n", "undefined_name"),
        ("x = object()\nx.attr = 1\n", "Scripts cannot change object objects"),
        ("try:\n    1/0\nexcept Exception as e:\n    e.with_traceback(None)\n", "restricted"),
        ("x = open\n", ""),
    ],
)
def test_refused_at_run_time(source: str, message: str) -> None:
    if refused(source):
        # Some of these never get to run: that is fine as long as they are refused.
        return
    assert message in fails(source)


def test_script_classes_work_and_only_they_are_writable() -> None:
    outcome = run(
        """
        class Counter:
            def __init__(self, start):
                self.value = start

            def bump(self):
                self.value = self.value + 1
                return self.value

        c = Counter(41)
        print(c.bump())
        setattr(c, 'label', 'answer')
        print(c.label, isinstance(c, Counter))
        """
    )
    assert outcome.error is None
    assert outcome.output == ["42", "answer True"]


def test_modules_hold_no_path_to_real_modules() -> None:
    # Purpose-built submodules only: never a module Python imported for real.
    submodules = {
        ("knot", "event"),
        ("knot", "kv"),
        ("knot", "secrets"),
        ("requests", "exceptions"),
        ("scriptling", "runtime"),
        ("scriptling.runtime", "kv"),
    }
    real = {id(m) for m in sys.modules.values()}
    for name, module in RUNNER.modules.items():
        assert id(module) not in real, name
        for attr in dir(module):
            if attr.startswith("_"):
                continue
            value = getattr(module, attr)
            if isinstance(value, ModuleType):
                assert (name, attr) in submodules
                assert id(value) not in real
    assert not hasattr(RUNNER.modules["string"], "Formatter")
    assert not hasattr(RUNNER.modules["time"], "sleep") or RUNNER.modules[
        "time"
    ].sleep.__module__ == ("knot.sandbox.worker.modules")


def test_nothing_survives_from_one_run_to_the_next() -> None:
    assert run("counter = 1\nprint(counter)\n").output == ["1"]
    assert "name 'counter' is not defined" in fails("print(counter)\n")


def test_system_exit_and_keyboard_interrupt_are_just_failures() -> None:
    assert fails("raise SystemExit(3)\n").startswith("SystemExit")
    assert fails("raise KeyboardInterrupt()\n").startswith("KeyboardInterrupt")
    assert run("print('still here')\n").output == ["still here"]


def test_sleep_past_the_deadline_fails_at_once() -> None:
    message = fails("import time\ntime.sleep(60)\n")
    assert "would run past the script's time limit" in message


def test_regex_is_linear_time_and_explains_what_re2_cannot_do() -> None:
    outcome = run("import re\nprint(re.match('(a+)+$', 'a' * 50000 + 'b'))\n")
    assert outcome.error is None
    assert outcome.output == ["None"]
    message = fails("import re\nre.compile(r'(a)\\1')\n")
    assert message.startswith("RegexError")
    assert "is not supported" in message
    caught = run(
        "import re\ntry:\n    re.compile('(?<=a)b')\nexcept re.error:\n    print('re.error')\n"
    )
    assert caught.output == ["re.error"]


pytestmark_worker = pytest.mark.anyio


@pytest.mark.anyio
async def test_escape_attempts_fail_inside_a_worker(tmp_path: Path) -> None:
    script = tmp_path / "sneaky.py"
    script.write_text(
        "# events: *\nimport knot.event\n"
        "what = knot.event.get_string('try')\n"
        "if what == 'builtins':\n    x = getattr(print, '__self__')\n"
        "elif what == 'format':\n    s = '{0.__class__}'\n    print(s.format(1))\n"
        "elif what == 'module':\n    setattr(knot.event, 'emit', print)\n"
        "print('done', what)\n"
    )
    spec = load_script(script).spec
    assert spec is not None
    config = Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.001,)),
        scripts=ScriptSettings(timeout=5.0, memory_mb=64, workers=1),
    )
    async with Runtime(tmp_path, config=config) as rt:
        await rt.add_sink(spec)
        for attempt, expected in [
            ("builtins", 'starts with "_"'),
            ("format", "str.format() is not allowed"),
            ("module", "Scripts cannot change module objects"),
        ]:
            report = await rt.emit_and_wait("t", {"try": attempt})
            outcome = report.outcomes["sneaky"]
            assert outcome.status is DeliveryStatus.FAILED
            assert expected in outcome.error
        report = await rt.emit_and_wait("t", {"try": "nothing"})
        result = report.outcomes["sneaky"].result
        assert result is not None
        assert result.output == ("done nothing",)
