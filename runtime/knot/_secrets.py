"""Secrets for scripts: where `knot.secrets.get(NAME)` finds values, and how output hides them.

`[secrets]` in knot.toml names each secret, with its value or the file that holds it:

    [secrets]
    SLACK_TOKEN = "xoxb-..."
    DEPLOY_KEY = { file = "/run/secrets/deploy_key" }   # relative paths: from the project

and `KNOT_SECRET_<NAME>` in the runtime's environment defines (or overrides) one. Parsing here
never echoes a value: an error names the secret and what is wrong, not what it holds.

`Redactor` replaces every known value by `[secret:NAME]`, in text and in the messages a
worker sends: in every string (and key) of what a script shows, never in the protocol's own
members, so even a secret like "1" leaves the message readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SECRET_ENV_PREFIX",
    "SHOWN",
    "Redactor",
    "SecretSettings",
    "SecretSource",
    "check_secret_name",
    "parse_secrets",
]

SECRET_ENV_PREFIX = "KNOT_SECRET_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_secret_name(name: object) -> str | None:
    """None for a good name; else why not (a clause for a sentence)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (
            "is not a secret name (letters, digits and underscores, not starting with a digit, "
            "at most 128)"
        )
    return None


@dataclass(frozen=True, slots=True)
class SecretSource:
    """One secret of `[secrets]`: its value, or the file holding it. The value never shows in
    a repr (settings get logged and compared)."""

    name: str
    value: str | None = field(default=None, repr=False)
    file: str = ""

    def __repr__(self) -> str:
        where = f"file={self.file!r}" if self.file else "value=********"
        return f"SecretSource({self.name!r}, {where})"


@dataclass(frozen=True, slots=True)
class SecretSettings:
    sources: tuple[SecretSource, ...] = ()

    def names(self) -> list[str]:
        return [s.name for s in self.sources]


def parse_secrets(table: object) -> tuple[SecretSettings, list[tuple[str, str]]]:
    """`[secrets]` as settings, and (key, problem) pairs; a problem never quotes a value."""
    if not isinstance(table, Mapping):
        return SecretSettings(), [("", "must be a table of NAME = value or { file = PATH }")]
    sources: list[SecretSource] = []
    problems: list[tuple[str, str]] = []
    for name, raw in table.items():
        bad_name = check_secret_name(name)
        if bad_name is not None:
            problems.append((str(name), bad_name))
            continue
        if isinstance(raw, str):
            if not raw:
                problems.append((name, "is empty"))
                continue
            sources.append(SecretSource(name, value=raw))
        elif isinstance(raw, Mapping) and set(raw) == {"file"} and isinstance(raw["file"], str):
            if not raw["file"]:
                problems.append((name, "names an empty file path"))
                continue
            sources.append(SecretSource(name, file=raw["file"]))
        else:
            problems.append(
                (name, 'must be a string or { file = "PATH" } (its value is not shown here)')
            )
    return SecretSettings(tuple(sources)), problems


def _needle(value: str) -> bytes:
    """`value` as it appears inside a JSON string a worker encodes (knot._jsonrpc.encode)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")


# The members of a worker's messages that carry what a script shows (its output, an
# exception's message, an emitted payload, directives, a method's result or error data):
# everything beneath one is redacted, keys included. The rest is the protocol's own (ids,
# indexes, kinds, method declarations) and is left as it is, so even a secret like "1" or
# "n" cannot unmake a message.
SHOWN = frozenset({"output", "directives", "payload", "message", "data", "result"})
# Where a worker cuts a text short: print's cap ends the output with this line, a long
# exception message ends with "...". A secret cut there would show its first characters.
_TRUNCATED = re.compile(r"\[output truncated at \d+ bytes\]")
_CUT = re.compile(rb"output truncated at|\.\.\.")
MIN_TAIL = 4  # characters of a secret's start worth hiding at a cut (fewer say nothing)


class Redactor:
    """Hides secret values: `[secret:NAME]` wherever one appears. All are replaced in one
    pass, longest first: a secret that holds another is replaced whole, and a value that
    appears in a marker (a secret "secret") does not rewrite markers already put in.

    A worker's messages are redacted once decoded, string by string (`message`): JSON escapes
    (`\\n`, `\\u00e9`) make a match in the raw line unsafe, a secret "n" would cut one in
    half. The raw line only says, fast, whether there can be anything to do (`suspects`)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._text: re.Pattern[str] | None = None
        self._line: re.Pattern[bytes] | None = None
        self._marks: dict[str, str] = {}
        self.update(secrets or {})

    def update(self, secrets: Mapping[str, str]) -> None:
        pairs = sorted(
            ((value, name) for name, value in secrets.items() if value),
            key=lambda p: (-len(p[0]), p[1]),
        )
        self._marks = {value: f"[secret:{name}]" for value, name in pairs}
        # Alternations of escaped literals: no backtracking to speak of.
        self._text = re.compile("|".join(map(re.escape, self._marks))) if pairs else None
        needles = {_needle(value) for value, _ in pairs}
        self._line = re.compile(b"|".join(map(re.escape, needles))) if pairs else None

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, text: str) -> str:
        if self._text is None:
            return text
        return self._text.sub(lambda m: self._marks[m.group()], text)

    def suspects(self, line: bytes) -> bool:
        """Whether a worker's raw line may hold a secret, or the start of one at a cut."""
        return self._line is not None and (
            self._line.search(line) is not None or _CUT.search(line) is not None
        )

    def message(self, message: Any, *, shown: bool = False) -> Any:
        """A decoded message's members with every secret replaced beneath those a script
        shows (`SHOWN`), and the start of a secret hidden where the worker cut a text short.
        The caller hands in the envelope's `params`, `result` or `error`."""
        if self._text is None:
            return message
        if isinstance(message, str):
            if not shown:
                return message
            if message.endswith("..."):
                return self._tail(message[:-3]) + "..."
            return self.text(message)
        if isinstance(message, list):
            out = [self.message(item, shown=shown) for item in message]
            cut = shown and len(out) > 1 and isinstance(out[-1], str)
            if cut and _TRUNCATED.fullmatch(out[-1]) and isinstance(out[-2], str):
                out[-2] = self._tail(out[-2])
            return out
        if isinstance(message, dict):
            return {
                (self.text(key) if shown else key): self.message(value, shown=shown or key in SHOWN)
                for key, value in message.items()
            }
        return message

    def _tail(self, text: str) -> str:
        """`text` redacted, and a secret's start at its very end (where it was cut) hidden."""
        text = self.text(text)
        for value, mark in self._marks.items():
            for size in range(len(value) - 1, MIN_TAIL - 1, -1):
                if text.endswith(value[:size]):
                    return text[:-size] + mark
        return text

    def value(self, value: Any) -> Any:
        """A JSON value (dicts, lists, strings) with every string redacted: keys too."""
        if not self._text:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value

    def lines(self, lines: Iterable[str]) -> tuple[str, ...]:
        return tuple(self.text(line) for line in lines)
