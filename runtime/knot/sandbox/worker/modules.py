"""The modules scripts may import: purpose-built copies holding only safe, public names.

A script never gets a real module object: `import json` hands it a fresh module containing
`dumps`, `loads` and `JSONDecodeError`, nothing else, so there is no path from an imported
name to `os`, `sys` or a file. Module objects cannot be written to from a script (the write
guard refuses them), so one script cannot plant code for another in a shared worker.

`re` is RE2 (google-re2): matching takes time linear in the input, so no pattern can
backtrack for minutes inside one C call. RE2 has no backreferences and no lookaround; such a
pattern raises `re.error` with the reason.
"""

from __future__ import annotations

import base64
import collections
import datetime
import functools
import hashlib
import hmac
import itertools
import json
import math
import random
import statistics
import string
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable
from types import MappingProxyType, ModuleType
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs

from .plain import exact_float, exact_int, exact_str

__all__ = ["SleepBudget", "build_modules"]


def _module(name: str, source: object, names: Iterable[str], **extra: Any) -> ModuleType:
    module = ModuleType(name)
    for attr in names:
        setattr(module, attr, getattr(source, attr))
    for attr, value in extra.items():
        setattr(module, attr, value)
    return module


class _Template(string.Template):
    """`string.Template` for scripts: a subclass may change its `delimiter`, not its regex.

    `string.Template` compiles a subclass's `pattern` / `idpattern` / `braceidpattern` with
    Python's backtracking `re` (scripts' own `re` is RE2), and a catastrophic one runs inside
    one C call that no watchdog can interrupt. So none of them may come from a script: not
    from the subclass itself, nor from a mixin class it also inherits from. The delimiter is
    escaped before use, which is safe for an exact `str` only: a str subclass could override
    the `translate` that `re.escape` calls and hand back any pattern it likes.
    """

    def __init_subclass__(cls) -> None:
        for klass in cls.__mro__:
            if klass is not cls and issubclass(klass, string.Template):
                continue  # this class itself, or one that passed this check when it was made
            for name in ("pattern", "idpattern", "braceidpattern", "flags"):
                if name in klass.__dict__:
                    raise TypeError(
                        f"a string.Template subclass in a script cannot set {name}: it would "
                        "run on Python's backtracking regex engine; change delimiter only, or "
                        "use re (RE2) directly."
                    )
        if type(cls.delimiter) is not str:
            raise TypeError("a string.Template's delimiter must be a plain string")
        super().__init_subclass__()


_Template.__name__ = _Template.__qualname__ = "Template"
_Template.__module__ = "string"


def _public(source: ModuleType) -> list[str]:
    return [
        n
        for n in dir(source)
        if not n.startswith("_") and not isinstance(getattr(source, n), ModuleType)
    ]


class SleepBudget:
    """`time.sleep` for scripts: a sleep that would outlast the run's deadline fails at once."""

    setting = "scripts.timeout"  # the limit a refused sleep names

    def __init__(self) -> None:
        self.deadline = float("inf")

    def sleep(self, seconds: float) -> None:
        seconds = exact_float(seconds, "time.sleep()'s argument")
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        if time.monotonic() + seconds > self.deadline:
            raise RuntimeError(
                f"time.sleep({seconds}) would run past the script's time limit ({self.setting})"
            )
        time.sleep(seconds)


# -- re, on RE2 -----------------------------------------------------------------------------


class RegexError(ValueError):
    """A pattern RE2 cannot compile (re.error inside scripts)."""


IGNORECASE = 2
MULTILINE = 8
DOTALL = 16
_KNOWN_FLAGS = IGNORECASE | MULTILINE | DOTALL
_MAX_REGEX_MEMORY = 8 << 20


def _compile_re(pattern: object, flags: object) -> Any:
    """RE2's compile of an exact copy of what the script gave (see plain.py), cached."""
    if isinstance(pattern, bytes):
        exact: str | bytes = pattern if type(pattern) is bytes else bytes.__bytes__(pattern)
    else:
        exact = exact_str(pattern, "a regular expression")
    return _compile_exact(exact, exact_int(flags, "the regex flags"))


@functools.lru_cache(maxsize=512)
def _compile_exact(pattern: str | bytes, flags: int) -> Any:
    if flags & ~_KNOWN_FLAGS:
        raise RegexError("only the flags IGNORECASE, MULTILINE and DOTALL are supported")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _MAX_REGEX_MEMORY
    if flags & IGNORECASE:
        options.case_sensitive = False
    if flags & DOTALL:
        options.dot_nl = True
    if flags & MULTILINE:
        pattern = ("(?m)" if isinstance(pattern, str) else b"(?m)") + pattern  # type: ignore[operator]
    try:
        return Pattern(re2.compile(pattern, options))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"the pattern {pattern!r} is not supported: {reason}") from None


def _text(value: object) -> str | bytes:
    if isinstance(value, bytes):
        return value if type(value) is bytes else bytes.__bytes__(value)
    return exact_str(value, "the text to match")


def _position(value: object) -> int | None:
    return None if value is None else exact_int(value, "a position")


class Pattern:
    """A compiled RE2 pattern as scripts hold it: what they pass in is copied to exact types.

    google-re2's wrapper measures a text with `len()` and encodes it with `.encode()` before
    handing byte offsets to C++: a str subclass overriding those could make the two disagree.
    """

    __slots__ = ("_regexp",)

    def __init__(self, regexp: Any) -> None:
        self._regexp = regexp

    @property
    def pattern(self) -> str | bytes:
        return self._regexp.pattern  # type: ignore[no-any-return]

    @property
    def groups(self) -> int:
        return self._regexp.groups  # type: ignore[no-any-return]

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._regexp.groupindex)

    def search(self, text: object, pos: object = None, endpos: object = None) -> Any:
        return self._regexp.search(_text(text), _position(pos), _position(endpos))

    def match(self, text: object, pos: object = None, endpos: object = None) -> Any:
        return self._regexp.match(_text(text), _position(pos), _position(endpos))

    def fullmatch(self, text: object, pos: object = None, endpos: object = None) -> Any:
        return self._regexp.fullmatch(_text(text), _position(pos), _position(endpos))

    def finditer(self, text: object, pos: object = None, endpos: object = None) -> Any:
        return self._regexp.finditer(_text(text), _position(pos), _position(endpos))

    def findall(self, text: object, pos: object = None, endpos: object = None) -> Any:
        return self._regexp.findall(_text(text), _position(pos), _position(endpos))

    def split(self, text: object, maxsplit: object = 0) -> Any:
        return self._regexp.split(_text(text), exact_int(maxsplit, "maxsplit"))

    def sub(self, repl: object, text: object, count: object = 0) -> Any:
        return self._regexp.sub(_replacement(repl), _text(text), exact_int(count, "count"))

    def subn(self, repl: object, text: object, count: object = 0) -> Any:
        return self._regexp.subn(_replacement(repl), _text(text), exact_int(count, "count"))


def _replacement(repl: object) -> Any:
    if isinstance(repl, str | bytes):
        return _text(repl)
    if not callable(repl):
        raise TypeError("the replacement must be a string or a function")
    return lambda match: _text(repl(match))


def _re_function(method: str) -> Callable[..., Any]:
    def call(pattern: Any, string: Any, *args: Any, flags: int = 0, **kwargs: Any) -> Any:
        compiled = pattern if not isinstance(pattern, str | bytes) else _compile_re(pattern, flags)
        return getattr(compiled, method)(string, *args, **kwargs)

    call.__name__ = method
    return call


def _re_sub(method: str) -> Callable[..., Any]:
    def call(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
        compiled = pattern if not isinstance(pattern, str | bytes) else _compile_re(pattern, flags)
        return getattr(compiled, method)(repl, string, count)

    call.__name__ = method
    return call


def _re_split(pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> Any:
    compiled = pattern if not isinstance(pattern, str | bytes) else _compile_re(pattern, flags)
    return compiled.split(string, maxsplit)


def _re_module() -> ModuleType:
    return _module(
        "re",
        None,
        (),
        compile=lambda pattern, flags=0: _compile_re(pattern, flags),
        match=_re_function("match"),
        search=_re_function("search"),
        fullmatch=_re_function("fullmatch"),
        findall=_re_function("findall"),
        finditer=_re_function("finditer"),
        sub=_re_sub("sub"),
        subn=_re_sub("subn"),
        split=_re_split,
        escape=re2.escape,
        error=RegexError,
        IGNORECASE=IGNORECASE,
        I=IGNORECASE,
        MULTILINE=MULTILINE,
        M=MULTILINE,
        DOTALL=DOTALL,
        S=DOTALL,
    )


# -- the rest ---------------------------------------------------------------------------------


class TextWrapper(textwrap.TextWrapper):
    """textwrap.TextWrapper without its one class-level mutable: a script could rewrite the
    shared whitespace table (and so every other script's output in that worker)."""

    unicode_whitespace_trans = MappingProxyType(  # type: ignore[assignment]
        dict(textwrap.TextWrapper.unicode_whitespace_trans)
    )


def _wrapper(**kwargs: Any) -> TextWrapper:
    return TextWrapper(**kwargs)


def _textwrap_module() -> ModuleType:
    # wrap/fill/shorten as textwrap writes them, over the wrapper above.
    def wrap(text: str, width: int = 70, **kwargs: Any) -> list[str]:
        return _wrapper(width=width, **kwargs).wrap(text)

    def fill(text: str, width: int = 70, **kwargs: Any) -> str:
        return _wrapper(width=width, **kwargs).fill(text)

    def shorten(text: str, width: int, **kwargs: Any) -> str:
        return _wrapper(width=width, max_lines=1, **kwargs).fill(" ".join(text.strip().split()))

    return _module(
        "textwrap",
        textwrap,
        ("dedent", "indent"),
        wrap=wrap,
        fill=fill,
        shorten=shorten,
        TextWrapper=TextWrapper,
    )


def _random_module() -> ModuleType:
    # No `seed`: a worker's generator is shared by every script it runs, and one script must
    # not make another's randomness predictable.
    rng = random.Random()
    names = [
        "betavariate",
        "choice",
        "choices",
        "expovariate",
        "gauss",
        "getrandbits",
        "lognormvariate",
        "normalvariate",
        "randbytes",
        "randint",
        "random",
        "randrange",
        "sample",
        "shuffle",
        "triangular",
        "uniform",
        "vonmisesvariate",
        "paretovariate",
        "weibullvariate",
    ]
    return _module("random", rng, names)


def _time_module(budget: SleepBudget) -> ModuleType:
    names = [
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "gmtime",
        "localtime",
        "mktime",
        "strftime",
        "strptime",
        "asctime",
        "ctime",
        "struct_time",
        "timezone",
        "altzone",
        "daylight",
        "tzname",
    ]
    return _module("time", time, names, sleep=budget.sleep)


def build_modules(knot: ModuleType, budget: SleepBudget) -> dict[str, ModuleType]:
    """Every importable module by name, `knot` and `knot.event` included."""
    modules = {
        "json": _module("json", json, ("dumps", "loads", "JSONDecodeError")),
        "re": _re_module(),
        "math": _module("math", math, _public(math)),
        "time": _time_module(budget),
        "datetime": _module(
            "datetime",
            datetime,
            ("date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR", "UTC"),
        ),
        "random": _random_module(),
        "uuid": _module(
            "uuid",
            uuid,
            (
                "UUID",
                "uuid3",
                "uuid4",
                "uuid5",
                "NAMESPACE_DNS",
                "NAMESPACE_URL",
                "NAMESPACE_OID",
                "NAMESPACE_X500",
            ),
        ),
        "base64": _module(
            "base64",
            base64,
            [
                "b64encode",
                "b64decode",
                "urlsafe_b64encode",
                "urlsafe_b64decode",
                "standard_b64encode",
                "standard_b64decode",
                "b32encode",
                "b32decode",
                "b16encode",
                "b16decode",
                "b85encode",
                "b85decode",
                "a85encode",
                "a85decode",
            ],
        ),
        "hashlib": _module(
            "hashlib",
            hashlib,
            [
                "md5",
                "sha1",
                "sha224",
                "sha256",
                "sha384",
                "sha512",
                "sha3_224",
                "sha3_256",
                "sha3_384",
                "sha3_512",
                "blake2b",
                "blake2s",
                "new",
            ],
            # Frozen copies: the real ones are sets any script could fill, a place to leave
            # data for the next script the worker runs.
            algorithms_available=frozenset(hashlib.algorithms_available),
            algorithms_guaranteed=frozenset(hashlib.algorithms_guaranteed),
        ),
        "hmac": _module("hmac", hmac, ("new", "compare_digest", "digest")),
        "string": _module(
            "string",
            string,
            [
                "ascii_letters",
                "ascii_lowercase",
                "ascii_uppercase",
                "digits",
                "hexdigits",
                "octdigits",
                "punctuation",
                "printable",
                "whitespace",
                "capwords",
            ],
            Template=_Template,
        ),
        "collections": _module(
            "collections",
            collections,
            ("ChainMap", "Counter", "OrderedDict", "defaultdict", "deque", "namedtuple"),
        ),
        "itertools": _module("itertools", itertools, _public(itertools)),
        # wraps/update_wrapper copy attributes (and __dict__) onto any object: left out so a
        # script cannot write into a shared module.
        "functools": _module(
            "functools",
            functools,
            ("reduce", "partial", "lru_cache", "cache", "cmp_to_key", "total_ordering"),
        ),
        "statistics": _module(
            "statistics",
            statistics,
            [
                "mean",
                "fmean",
                "geometric_mean",
                "harmonic_mean",
                "median",
                "median_low",
                "median_high",
                "median_grouped",
                "mode",
                "multimode",
                "pstdev",
                "pvariance",
                "stdev",
                "variance",
                "quantiles",
                "StatisticsError",
            ],
        ),
        "textwrap": _textwrap_module(),
        "knot": knot,
    }
    event = getattr(knot, "event", None)
    if isinstance(event, ModuleType):
        modules["knot.event"] = event
    return modules


def warm_up(modules: dict[str, ModuleType]) -> None:
    """Exercise what imports lazily (strptime, hashing), before the worker's rlimits apply."""
    datetime.datetime.strptime("2024-01-02", "%Y-%m-%d")
    time.strptime("2024", "%Y")
    time.localtime()
    for name in ("sha256", "md5", "sha1", "sha512", "blake2b"):
        getattr(hashlib, name)(b"x").hexdigest()
    hmac.new(b"k", b"m", "sha256").hexdigest()
    uuid.uuid4()
    statistics.mean([1, 2])
    _compile_re("a+", 0).search("aa")
    json.loads(json.dumps({"a": [1.5, "b"]}))
    base64.b64encode(b"x")
    textwrap.fill("a b c", 2)
