"""The sandbox's escape and bomb corpus, data-driven: add a line, not a test.

- REFUSED: refused when the script loads (the rule it breaks is named).
- FAILS: loads, then fails when it runs, with the guard's message.
- HARMLESS: runs, and what it gets is plain data (the printed lines are checked exactly).
- BOMBS: run in real sandbox workers (1 s, 64 MB); each fails its own delivery the way it
  says, while the runtime and the other sinks go on.

Plus a walk of everything a script can reach by attribute access from its builtins and
modules (and from objects those hand out): no module but the sandbox's own, no frame, code
object or traceback, no builtin the sandbox leaves out, and no mutable container shared
between scripts (a script could leave data, or change the behaviour, for the next one).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from knot import Config, DeliveryStatus, Runtime, SinkSpec
from knot._config import DeliverySettings, ScriptSettings
from knot.sandbox.worker.guards import _refuse_attribute
from knot.sandbox.worker.method_runner import MethodModule
from knot.sandbox.worker.policy import check_source
from knot.sandbox.worker.runner import RunOutcome, ScriptRunner
from knot.scripts import load_script

from .conftest import recording

RUNNER = ScriptRunner()
METHOD_MODULES = MethodModule()  # what method scripts import (knot.methods, scriptling...)


def run(source: str) -> RunOutcome:
    source = textwrap.dedent(source)
    assert check_source(source, "corpus.py") == ()
    assert RUNNER.load("corpus", str(hash(source)), source, "corpus.py") == ()
    event = {"id": "e1", "type": "custom.t", "data": {"n": 1}}
    return RUNNER.run_one("corpus", event, lambda t, p: "child", timeout=5.0)


REFUSED = {
    "dunder_attribute": ("x = (1).__class__", 'starts with "_"'),
    "builtins_name": ("b = __builtins__", 'starts with "_"'),
    "builtins_via_globals": ("g = globals()['__builtins__']", "globals() is not allowed"),
    "import_dunder": ("m = __import__('os')", 'starts with "_"'),
    "loader_name": ("l = __loader__", 'starts with "_"'),
    "spec_name": ("s = __spec__", 'starts with "_"'),
    "class_dunder_method": ("class A:\n    def __getattr__(self, n):\n        pass", 'starts with "_"'),
    "init_subclass": ("class A:\n    def __init_subclass__(cls):\n        pass", 'starts with "_"'),
    "class_getitem": ("class A:\n    def __class_getitem__(cls, i):\n        pass", 'starts with "_"'),
    "descriptor_get": ("class D:\n    def __get__(self, o, t):\n        pass", 'starts with "_"'),
    "set_name": ("class D:\n    def __set_name__(self, o, n):\n        pass", 'starts with "_"'),
    "slots": ("class A:\n    __slots__ = ()", 'starts with "_"'),
    "metaclass_keyword": ("class A(metaclass=print):\n    pass", 'metaclass" is not allowed'),
    "format_dunder": ("class A:\n    def __format__(self, s):\n        pass", 'starts with "_"'),
    "str_format_literal": ("x = '{0.__class__}'.format(1)", "str.format() is not allowed"),
    "format_map_literal": ("x = '{a}'.format_map({'a': 1})", "str.format_map() is not allowed"),
    "frame_attribute": ("def g():\n    yield 1\nf = g().gi_frame", "gi_frame"),
    "code_attribute": ("def g():\n    yield 1\nc = g().gi_code", "gi_code"),
    "traceback_frame": ("try:\n    1/0\nexcept Exception as e:\n    t = e.__traceback__", "_"),
    "exception_context": ("try:\n    1/0\nexcept Exception as e:\n    c = e.__context__", "_"),
    "async_generator": ("async def f():\n    yield 1", "AsyncFunctionDef"),
    "await": ("async def f():\n    await g()", "AsyncFunctionDef"),
    "try_star": ("try:\n    pass\nexcept* Exception:\n    pass", "TryStar"),
    "exec": ("exec('1')", "Exec calls are not allowed"),
    "eval": ("eval('1')", "Eval calls are not allowed"),
    "compile": ("compile('1', 'f', 'exec')", "compile() is not allowed"),
    "open": ("open('/etc/passwd')", "the file system is not available"),
    "vars": ("v = vars()", "vars() is not allowed"),
    "locals": ("v = locals()", "locals() is not allowed"),
    "type": ("t = type(1)", "type() is not allowed"),
    "super": ("class A:\n    def f(self):\n        return super()", "super() is not allowed"),
    "memoryview": ("m = memoryview(b'x')", "memoryview() is not allowed"),
    "import_sys": ("import sys", "import of 'sys' is not allowed"),
    "import_builtins": ("import builtins", "import of 'builtins' is not allowed"),
    "import_pickle": ("import pickle", "import of 'pickle' is not allowed"),
    "import_marshal": ("import marshal", "import of 'marshal' is not allowed"),
    "import_codecs": ("import codecs", "import of 'codecs' is not allowed"),
    "import_ctypes": ("import ctypes", "import of 'ctypes' is not allowed"),
    "import_gc": ("import gc", "import of 'gc' is not allowed"),
    "import_inspect": ("import inspect", "import of 'inspect' is not allowed"),
    "import_json_submodule": ("import json.decoder", "import of 'json.decoder' is not allowed"),
    "from_string_private": ("from string import _re", 'starts with "_"'),
    "from_knot_sandbox": ("from knot import sandbox", "'knot.sandbox' is not available"),
    "walrus_private": ("(_x := 1)", 'starts with "_"'),
    "lambda_guard_shadow": ("f = lambda _getattr_: 1", 'starts with "_"'),
    "nonlocal": ("def f():\n    x = 1\n    def g():\n        nonlocal x", "Nonlocal"),
}  # fmt: skip

FAILS = {
    "getattr_dunder": ("getattr(1, '__cl' + 'ass__')", 'starts with "_"'),
    "getattr_frame": ("def g():\n    yield 1\ngetattr(g(), 'gi_' + 'frame')", "restricted attribute"),
    "getattr_mro": ("int.mro()", '"mro" is a restricted attribute'),
    "format_via_getattr": ("f = getattr('{0}', 'for' + 'mat')", "str.format() is not allowed"),
    "format_on_subclass": ("class S(str):\n    pass\nS('{0}').format(1)", "str.format() is not allowed"),
    "format_spec_traversal": ("format(1, '{0.__class__}')", "Invalid format specifier"),
    "exception_obj": ("try:\n    (1).nope\nexcept AttributeError as e:\n    e.obj", "restricted attribute of exceptions"),
    "with_traceback": ("try:\n    1/0\nexcept Exception as e:\n    e.with_traceback(None)", "restricted attribute of exceptions"),
    "bound_self": ("import random\ngetattr(random.choice, '__self__')", 'starts with "_"'),
    "print_self": ("getattr(print, '__self__')", 'starts with "_"'),
    "partial_keywords_dict": ("import functools\np = functools.partial(print)\ngetattr(p.func, '__func__')", 'starts with "_"'),
    "property_fget_globals": ("p = property(lambda s: 1)\ngetattr(p.fget, '__globals__')", 'starts with "_"'),
    "classmethod_func": ("c = classmethod(print)\ngetattr(c, '__func__')", 'starts with "_"'),
    "lru_wrapped": ("import functools\nf = functools.lru_cache(print)\ngetattr(f, '__wrapped__')", 'starts with "_"'),
    "setattr_on_module": ("import json\nsetattr(json, 'loads', print)", "cannot change module objects"),
    "setattr_on_builtin_class": ("setattr(int, 'x', 1)", "cannot change type objects"),
    "setattr_dunder_on_own_class": ("class A:\n    pass\nsetattr(A, '__str__', print)", 'starts with "_"'),
    "write_to_function": ("def f():\n    pass\nf.x = 1", "cannot change function objects"),
    "write_to_template_class": ("import string\nstring.Template.delimiter = '%'", "cannot change type objects"),
    # string.Template would compile these with Python's backtracking `re`, not RE2.
    "template_catastrophic_pattern": (
        "import string\nclass T(string.Template):\n    pattern = r'(?P<named>(a+)+$)|"
        "(?P<escaped>x)|(?P<braced>y)|(?P<invalid>z)'\nT('a' * 40 + 'b').safe_substitute({})",
        "cannot set pattern",
    ),
    "template_catastrophic_idpattern": (
        "import string\nclass T(string.Template):\n    idpattern = '(a+)+$'", "cannot set idpattern",
    ),
    "template_braceidpattern": (
        "import string\nclass T(string.Template):\n    braceidpattern = '(a|a)+'", "cannot set braceidpattern",
    ),
    "template_flags": ("import string\nclass T(string.Template):\n    flags = 0", "cannot set flags"),
    "textwrap_shared_table": ("import textwrap\ntextwrap.TextWrapper.unicode_whitespace_trans[97] = 'Z'", "cannot change mappingproxy"),
    "hashlib_shared_set": ("import hashlib\nhashlib.algorithms_available.add('x')", "no attribute 'add'"),
    "random_seed": ("import random\nrandom.seed(1)", "no attribute 'seed'"),
    "random_state": ("import random\nrandom.getstate()", "no attribute 'getstate'"),
    "json_private_module": ("import json\njson.decoder", "no attribute 'decoder'"),
    "json_encoder_class": ("import json\njson.JSONEncoder", "no attribute 'JSONEncoder'"),
    "datetime_sys": ("import datetime\ndatetime.sys", "no attribute 'sys'"),
    "string_formatter": ("import string\nstring.Formatter", "no attribute 'Formatter'"),
    "functools_wraps": ("import functools\nfunctools.wraps", "no attribute 'wraps'"),
    "uuid1_reads_mac": ("import uuid\nuuid.uuid1()", "no attribute 'uuid1'"),
    "time_sleep_past_deadline": ("import time\ntime.sleep(60)", "would run past the script's time limit"),
    "re_backreference": ("import re\nre.compile(r'(a)\\1')", "is not supported"),
    "int_digits_limit": ("int('9' * 100000)", "Exceeds the limit"),
    "json_deep_nesting": ("import json\njson.loads('[' * 100000 + ']' * 100000)", "maximum recursion depth"),
    "repr_deep_nesting": ("x = []\nfor i in range(100000):\n    x = [x]\nrepr(x)", "maximum recursion depth"),
    "emit_non_dict": ("import knot.event\nknot.event.emit('x', [1])", "needs the payload as a dict"),
    "directive_non_json": ("import knot.event\nknot.event.directive('d', {'x': object()})", "not JSON"),
    "system_exit": ("raise SystemExit(0)", "SystemExit"),
    "generator_exit": ("raise GeneratorExit()", "GeneratorExit"),
}  # fmt: skip

HARMLESS = {
    "json_object_hook": ("import json\nprint(json.loads('{\"a\": 1}', object_hook=lambda d: sorted(d)))", ["['a']"]),
    "json_default": ("import json\nprint(json.dumps({'a': {1}}, default=sorted))", ['{"a": [1]}']),
    "json_cls_is_called_like_any_class": (
        "import json\nclass D:\n    def __init__(self, **kw):\n        self.kw = kw\n"
        "    def decode(self, s):\n        return 'mine'\nprint(json.loads('1', cls=D))",
        ["mine"],
    ),
    "json_parse_hooks": ("import json\nprint(json.loads('[1, 2.5]', parse_int=str, parse_float=str))", ["['1', '2.5']"]),
    "random_shared_generator_only_gives_numbers": ("import random\nprint(0 <= random.random() < 1)", ["True"]),
    "hashlib_names_are_plain_data": ("import hashlib\nprint('sha256' in hashlib.algorithms_guaranteed)", ["True"]),
    "template_subclass_delimiter": ("import string\nclass T(string.Template):\n    delimiter = '%'\nprint(T('%a').substitute(a=1))", ["1"]),
    "template_flags_is_a_flag": ("import string\nf = string.Template.flags\nprint(f.name, f.value)", ["IGNORECASE 2"]),
    "namedtuple_validates_names": (
        "import collections\ntry:\n    collections.namedtuple('P', 'a; import os')\n"
        "except ValueError as e:\n    print('refused')",
        ["refused"],
    ),
    "decorator_chain": (
        "import functools\ndef deco(f):\n    return functools.partial(f, 1)\n@deco\n"
        "@functools.lru_cache\ndef add(a, b=2):\n    return a + b\nprint(add())",
        ["3"],
    ),
    "own_class_is_writable": ("class A:\n    pass\na = A()\na.x = 1\nprint(a.x)", ["1"]),
    "total_ordering_on_own_class": (
        "import functools\n@functools.total_ordering\nclass V(int):\n    pass\nprint(V(1) < V(2))",
        ["True"],
    ),
    "exception_args_are_data": ("try:\n    {}['k']\nexcept KeyError as e:\n    print(e.args)", ["('k',)"]),
    "stop_iteration_value": ("def g():\n    return 5\n    yield\ntry:\n    next(g())\nexcept StopIteration as e:\n    print(e.value)", ["5"]),
    "generator_state_flags": ("def g():\n    yield 1\nx = g()\nprint(x.gi_running, x.gi_suspended)", ["False False"]),
    "percent_format_uses_items_only": ("print('%(a)s' % {'a': 1})", ["1"]),
    "fstring_nested_spec": ("w = 4\nprint(f'{1:>{w}}')", ["   1"]),
    "self_referencing_list": ("x = [1]\nx.append(x)\nprint(repr(x))", ["[1, [...]]"]),
    "textwrap_still_wraps": ("import textwrap\nprint(textwrap.fill('a bb ccc', 4))", ["a bb", "ccc"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_at_load(case: str) -> None:
    source, rule = REFUSED[case]
    rules = [v.rule for v in check_source(source + "\n", "corpus.py")]
    assert any(rule in r for r in rules), rules


@pytest.mark.parametrize("case", sorted(FAILS))
def test_fails_when_run(case: str) -> None:
    source, message = FAILS[case]
    outcome = run(source + "\n")
    assert outcome.error is not None, outcome.output
    assert message in f"{outcome.error.type}: {outcome.error.message}"


@pytest.mark.parametrize("case", sorted(HARMLESS))
def test_harmless(case: str) -> None:
    source, output = HARMLESS[case]
    outcome = run(source + "\n")
    assert outcome.error is None, outcome.error
    assert outcome.output == output


# -- what a script can reach -----------------------------------------------------------------

DANGEROUS_BUILTINS = (
    "open", "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "super", "memoryview", "type",
)  # fmt: skip
SHARED_MUTABLES = (list, dict, set, bytearray, collections.deque)


def made_by_calls() -> dict[str, Any]:
    """Objects scripts get back from the modules' functions (not reachable by attributes)."""
    m = RUNNER.modules
    outcome = run(
        "def g():\n    yield 1\ntry:\n    1/0\nexcept Exception as e:\n    err = e\n"
        "import knot.event\nknot.event.directive('d')\nprint('x')\n"
    )
    assert outcome.error is None
    return {
        "regex": m["re"].compile("a+"),
        "match": m["re"].search("a", "a"),
        "hmac": m["hmac"].new(b"k", b"m", "sha256"),
        "hash": m["hashlib"].sha256(b"x"),
        "now": m["datetime"].datetime.now(),
        "delta": m["datetime"].timedelta(1),
        "uuid": m["uuid"].uuid4(),
        "template": m["string"].Template("$a"),
        "wrapper": m["textwrap"].TextWrapper(),
        "counter": m["collections"].Counter("ab"),
        "tuple_class": m["collections"].namedtuple("P", "x y"),
        "partial": m["functools"].partial(print),
        "cached": m["functools"].lru_cache(len),
        "chain": m["itertools"].chain([1]),
        "struct_time": m["time"].gmtime(),
        "json_error": m["json"].JSONDecodeError("m", "d", 0),
        "stats_error": m["statistics"].StatisticsError(),
        "property": property(len),
        "classmethod": classmethod(print),
        "object": object(),
        "response": m["requests"].Response(200, "OK", "http://h/", {}, b"{}"),
        "http_error": m["requests"].HTTPError("m", m["requests"].Response(500, "", "", {}, b"")),
        "kv_error": m["knot.kv"].KvError("m"),
        "secret_missing": m["knot.secrets"].SecretNotFound("m"),
    }


def reachable(roots: dict[str, Any]) -> dict[int, tuple[str, Any]]:
    """Everything reachable from `roots` by attribute names a script may use."""
    seen: dict[int, tuple[str, Any]] = {}
    todo = list(roots.items())
    while todo:
        path, obj = todo.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = (path, obj)  # keeps obj alive, so ids stay unique
        try:
            names = dir(obj)
        except Exception:
            continue
        for name in names:
            if _refuse_attribute(obj, name) is not None:
                continue
            try:
                value = getattr(obj, name)
            except Exception:
                continue
            if not isinstance(value, int | float | str | bytes | bool | type(None)):
                todo.append((f"{path}.{name}", value))
    return seen


def script_roots() -> dict[str, Any]:
    """What sink scripts and method scripts can name: builtins and importable modules."""
    roots: dict[str, Any] = dict(RUNNER.namespace["__builtins__"])
    roots.update({f"import {name}": module for name, module in RUNNER.modules.items()})
    roots.update({f"method import {n}": m for n, m in METHOD_MODULES.modules.items()})
    return roots


def test_nothing_reachable_leads_out_of_the_sandbox() -> None:
    built = [*RUNNER.modules.values(), *METHOD_MODULES.modules.values()]
    # The purpose-built modules and their submodules (knot.event, scriptling.runtime.jsonrpc):
    # module objects made for scripts, never the interpreter's own (those are in sys.modules).
    sandbox_modules = {id(m) for m in built} | {
        id(v)
        for m in built
        for v in vars(m).values()
        if isinstance(v, types.ModuleType) and sys.modules.get(v.__name__) is not v
    }
    import builtins

    dangerous = {id(getattr(builtins, n)) for n in DANGEROUS_BUILTINS}
    found = reachable({**script_roots(), **made_by_calls()})
    assert len(found) > 500  # the walk did walk
    problems = []
    for path, obj in found.values():
        if isinstance(obj, types.ModuleType) and id(obj) not in sandbox_modules:
            problems.append(f"{path}: the real module {obj.__name__}")
        elif isinstance(obj, types.FrameType | types.CodeType | types.TracebackType):
            problems.append(f"{path}: a {type(obj).__name__}")
        elif id(obj) in dangerous:
            problems.append(f"{path}: the builtin {obj!r}")
    assert problems == []


def test_no_mutable_container_is_shared_between_scripts() -> None:
    """Found in review: hashlib.algorithms_available (a set) and TextWrapper's whitespace
    table (a dict) were module-level objects every script could change: one script could
    leave data for the next, or change another script's textwrap output in the same worker."""
    shared = [
        path
        for path, obj in reachable(script_roots()).values()
        if isinstance(obj, SHARED_MUTABLES)
        and not path.endswith(".groupindex")  # a fresh copy on each access
    ]
    assert shared == []


# -- bombs, in real workers --------------------------------------------------------------------

TIMEOUT = 1.0
TOO_LONG = f"ran longer than {TIMEOUT} s (scripts.timeout) and was stopped"
NO_MEMORY = "ran out of memory (scripts.memory_mb = 64)"
TOO_DEEP = "recursed too deeply"

BOMBS = {
    "infinite_generator_list": ("import itertools\nx = list(itertools.count())", NO_MEMORY),
    "infinite_generator_loop": ("def g():\n    while True:\n        yield 1\nfor x in g():\n    pass", TOO_LONG),
    "infinite_generator_sum": ("import itertools\nsum(itertools.repeat(1))", TOO_LONG),
    "infinite_deque": ("import collections\nd = collections.deque()\nwhile True:\n    d.append('x' * 100000)", NO_MEMORY),
    "huge_bytes": ("b = b'x' * 10**10", NO_MEMORY),
    "huge_list": ("x = [0] * 10**9", NO_MEMORY),
    "huge_ljust": ("s = 'x'.ljust(10**10)", NO_MEMORY),
    "huge_format_width": ("s = f'{1:>10000000000}'", NO_MEMORY),
    "huge_expandtabs": ("s = '\\t'.expandtabs(2**30)", NO_MEMORY),
    "huge_randbytes": ("import random\nb = random.randbytes(2 * 10**8)", NO_MEMORY),
    "huge_factorial": ("import math\nx = math.factorial(10**7)", TOO_LONG),
    "huge_sum_range": ("x = sum(range(10**13))", TOO_LONG),
    "recursion_mutual": ("def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\na(0)", TOO_DEEP),
    "recursion_in_init": ("class A:\n    def __init__(self):\n        A()\nA()", TOO_DEEP),
    "recursion_in_sort_key": ("def k(x):\n    return sorted([1], key=k)\nk(0)", TOO_DEEP),
    "recursion_via_reduce": ("import functools\ndef f(a, b):\n    return functools.reduce(f, [1, 2])\nf(0, 0)", TOO_DEEP),
    "recursion_swallowed_then_loop": (
        "def f():\n    return f()\nwhile True:\n    try:\n        f()\n    except Exception:\n        pass",
        TOO_LONG,
    ),
}  # fmt: skip


def script_spec(folder: Path, name: str, body: str, events: str = "") -> SinkSpec:
    path = folder / f"{name}.py"
    path.write_text(f"# events: {events or 'custom.bomb.' + name}\n{body}\n", encoding="utf-8")
    load = load_script(path)
    assert load.spec is not None, load.problems
    return load.spec


@pytest.mark.anyio
async def test_every_bomb_fails_its_delivery_and_nothing_else(tmp_path: Path) -> None:
    config = Config(
        delivery=DeliverySettings(attempts=1, backoff=(0.01,), queue_size=1000),
        scripts=ScriptSettings(timeout=TIMEOUT, memory_mb=64, workers=4),
    )
    async with Runtime(tmp_path, config=config) as rt:
        for name, (body, _) in BOMBS.items():
            await rt.add_sink(script_spec(tmp_path, name, body))
        steady = "import knot.event\nprint(knot.event.get_int('n'))"
        await rt.add_sink(script_spec(tmp_path, "steady", steady, "custom.tick"))
        rec = recording("rec", "custom.tick")
        await rt.add_sink(rec)
        bombing = [
            asyncio.create_task(rt.emit_and_wait(f"bomb.{name}", {}, timeout=60)) for name in BOMBS
        ]
        for n in range(20):
            await rt.emit("tick", {"n": n})
        await rec.wait_for(20, timeout=30)
        reports = await asyncio.gather(*bombing)
        wrong = {}
        for name, report in zip(BOMBS, reports, strict=True):
            outcome = report.outcomes[name]
            expected = BOMBS[name][1]
            if outcome.status is not DeliveryStatus.FAILED or expected not in outcome.error:
                wrong[name] = (outcome.status.value, outcome.error)
        assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())
        await rt.wait_idle()
        assert rt.sink("steady").status()["output"] == [str(n) for n in range(20)]
        pool = rt.script_pool
        assert pool is not None
        assert pool.workers <= 4
        after = await rt.emit_and_wait("tick", {"n": 99})
        assert after.outcomes["steady"].status is DeliveryStatus.DELIVERED
