"""Knot's body templates: Go text/template syntax with `${{ }}` delimiters.

A template is parsed once into closures and rendered per event. The subset:

- text, actions `${{ pipeline }}`, trim markers `${{- ` / ` -}}`, comments `${{/* ... */}}`;
- fields `.event.id` (and `.type`, `.ts`, `.data.FIELD...`), `.space.id/.name/.urls`,
  `.actor.id/.username/.kind`, `.custom.FIELD`, `.` and `$` (the root), `(pipeline).field`;
- literals: "strings" (Go escapes), `raw strings`, numbers, true, false, nil;
- pipelines `a | f b` (the value goes last, as in Go) and parenthesised sub-pipelines;
- the functions of `_template_eval` (Knot's `json`, `quote`, `toUpper`, `toLower`, `map`,
  and a few of Go's);
- `if` / `else if` / `else`, `range` (lists, and maps in key order) and `with`, each ending in
  `end`.

Anything else Go's syntax has (variables, `define`, `template`, `printf`) is refused with its
position, so a template either works here as in Knot or is refused when the sink is defined.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._events import Event
from .._exceptions import TemplateError
from .render import (
    FUNCTIONS,
    MAX_RANGE_STEPS,
    Emit,
    Eval,
    Failed,
    Function,
    Output,
    Root,
    Value,
    action_node,
    block_node,
    chain,
    json_of,
    path,
    template_context,
    text_node,
)

__all__ = ["DEFAULT_TEMPLATE", "FUNCTIONS", "Template", "template_context"]

DEFAULT_TEMPLATE = (
    '{"event_id":"${{ .event.id }}","event_type":"${{ .event.type }}",'
    '"event_ts":"${{ .event.ts }}","data": ${{ json .event.data }}}'
)
LEFT, RIGHT = "${{", "}}"
SCOPES: Mapping[str, frozenset[str] | None] = {
    "event": frozenset({"id", "type", "ts", "data"}),
    "space": frozenset({"id", "name", "urls"}),
    "actor": frozenset({"id", "username", "kind"}),
    "custom": None,  # any field name
}


_UNSUPPORTED = frozenset({"define", "template", "block", "break", "continue", "printf", "call"})


# -- lexing -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[()|])
    | (?P<assign>:?=)
    """,
    re.VERBOSE,
)
# Go's escapes, matched left to right so that `\\\\` is one escape; group 1 is a bad one.
_ESCAPE = re.compile(
    r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|[abfnrtv\\'\"])|(\\.?)"
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokens(
    source: str, start: int, end: int, fail: Callable[[str, int], Exception]
) -> list[_Token]:
    out: list[_Token] = []
    pos = start
    while pos < end:
        match = _TOKEN.match(source, pos, end)
        if match is None:
            if source[pos] == '"':
                raise fail("this string is never closed with a double quote", pos)
            if source[pos] == "`":
                raise fail("this raw string is never closed with a backquote", pos)
            raise fail(f"the character {source[pos]!r} is not allowed here", pos)
        kind = match.lastgroup or ""
        if kind == "assign":
            raise fail("variables ($x := ...) are not supported; use the fields directly", pos)
        if kind != "space":
            out.append(_Token(kind, match.group(), pos))
        pos = match.end()
    return out


def _unquote(token: _Token, fail: Callable[[str, int], Exception]) -> str:
    if token.kind == "raw":
        return token.text[1:-1]
    for match in _ESCAPE.finditer(token.text):
        if match.group(1) is not None:
            raise fail(
                f"the escape {match.group(1)} is not valid in a string", token.pos + match.start()
            )
    # Go's escapes are a subset of Python's, with the same meanings.
    value: str = ast.literal_eval(token.text)
    return value


# -- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    """A run of text (`tokens` is None) or one action's tokens, at offset `pos`."""

    pos: int
    text: str | None = None
    tokens: tuple[_Token, ...] | None = None


Command = Callable[[Value, Root, list[Value]], Value]  # (dot, root, piped args) -> value
_MISSING: list[Value] = []


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pieces = self._split()
        self.index = 0

    def fail(self, message: str, pos: int) -> TemplateError:
        line = self.source.count("\n", 0, pos) + 1
        column = pos - (self.source.rfind("\n", 0, pos) + 1) + 1
        return TemplateError(
            f"The template does not parse at line {line}, column {column}: {message}.",
            template=self.source,
            position=pos,
        )

    # -- text and actions --------------------------------------------------------------

    def _split(self) -> list[_Piece]:
        src, pieces, pos = self.source, [], 0
        while True:
            start = src.find(LEFT, pos)
            if start < 0:
                if pos < len(src):
                    pieces.append(_Piece(pos, text=src[pos:]))
                return pieces
            text = src[pos:start]
            inner = start + len(LEFT)
            if src.startswith("-", inner) and src[inner + 1 : inner + 2].isspace():
                text = text.rstrip()  # `${{- ` trims the white space before the action
                inner += 2
            if text:
                pieces.append(_Piece(pos, text=text))
            content_end, comment, pos = self._close(start, inner)
            if not comment:
                tokens = tuple(_tokens(src, inner, content_end, self.fail))
                pieces.append(_Piece(start, tokens=tokens))

    def _skip_space(self, pos: int) -> int:
        while pos < len(self.source) and self.source[pos].isspace():
            pos += 1
        return pos

    def _close(self, start: int, inner: int) -> tuple[int, bool, int]:
        """The action opened at `start`: (end of its content, is a comment, where text resumes)."""
        src = self.source
        comment_at = self._skip_space(inner)
        if src.startswith("/*", comment_at):
            close = src.find("*/", comment_at + 2)
            if close < 0:
                raise self.fail("this comment is never closed with */", comment_at)
            rest = self._skip_space(close + 2)
            if rest > close + 2 and src.startswith("-" + RIGHT, rest):
                return close, True, self._skip_space(rest + 1 + len(RIGHT))
            if not src.startswith(RIGHT, rest):
                raise self.fail("a comment must be the whole action, closed right after */", rest)
            return close, True, rest + len(RIGHT)
        pos = inner
        while pos < len(src):
            ch = src[pos]
            if ch in '"`':
                close = self._string_end(pos)
                if close < 0:
                    what = "string" if ch == '"' else "raw string"
                    raise self.fail(f"this {what} is never closed with {ch}", pos)
                pos = close + 1
                continue
            if src.startswith(RIGHT, pos):
                if pos - 2 >= inner and src[pos - 1] == "-" and src[pos - 2].isspace():
                    # ` -}}` trims the white space after the action
                    return pos - 1, False, self._skip_space(pos + len(RIGHT))
                return pos, False, pos + len(RIGHT)
            pos += 1
        raise self.fail(f"this action is never closed with {RIGHT}", start)

    def _string_end(self, pos: int) -> int:
        src, quote, i = self.source, self.source[pos], pos + 1
        while i < len(src):
            if src[i] == "\\" and quote == '"':
                i += 2
                continue
            if src[i] == quote:
                return i
            if src[i] == "\n" and quote == '"':
                return -1
            i += 1
        return -1

    # -- structure ---------------------------------------------------------------------

    def parse(self) -> list[Emit]:
        nodes, stop = self._list(at_root=True)
        if stop is not None:
            assert stop.tokens is not None
            raise self.fail(f"there is no block open for this {stop.tokens[0].text}", stop.pos)
        return nodes

    def _list(self, *, at_root: bool) -> tuple[list[Emit], _Piece | None]:
        nodes: list[Emit] = []
        while self.index < len(self.pieces):
            piece = self.pieces[self.index]
            self.index += 1
            if piece.tokens is None:
                nodes.append(text_node(piece.text or ""))
                continue
            tokens = piece.tokens
            if not tokens:
                raise self.fail("this action is empty", piece.pos)
            head = tokens[0]
            if head.kind == "ident":
                if head.text in ("end", "else"):
                    return nodes, piece
                if head.text in ("if", "range", "with"):
                    nodes.append(self._block(head.text, tokens, piece.pos, at_root=at_root))
                    continue
            pipeline = self._pipeline(list(tokens), piece.pos, at_root=at_root)
            nodes.append(action_node(pipeline, piece.pos))
        return nodes, None

    def _block(self, word: str, tokens: tuple[_Token, ...], pos: int, *, at_root: bool) -> Emit:
        if len(tokens) < 2:
            raise self.fail(f"{word} needs a pipeline after it", pos)
        cond = self._pipeline(list(tokens[1:]), pos, at_root=at_root)
        body, stop = self._list(at_root=at_root and word == "if")
        otherwise: list[Emit] = []
        if stop is None:
            raise self.fail(f"this {word} is never closed with {LEFT} end {RIGHT}", pos)
        assert stop.tokens is not None
        if stop.tokens[0].text == "else":
            rest = stop.tokens[1:]
            if rest:
                if rest[0].kind != "ident" or rest[0].text not in ("if", "with"):
                    raise self.fail("else may only be followed by if or with", rest[0].pos)
                # `else if` chains: the nested block consumes the one shared `end`.
                otherwise = [self._block(rest[0].text, rest, stop.pos, at_root=at_root)]
            else:
                otherwise, end = self._list(at_root=at_root)
                if end is None:
                    raise self.fail(f"this {word} is never closed with {LEFT} end {RIGHT}", pos)
                assert end.tokens is not None
                if end.tokens[0].text == "else":
                    raise self.fail(f"this {word} already has an else", end.pos)
                if len(end.tokens) > 1:
                    raise self.fail("end takes nothing after it", end.tokens[1].pos)
        elif len(stop.tokens) > 1:
            raise self.fail("end takes nothing after it", stop.tokens[1].pos)
        return block_node(word, cond, body, otherwise, pos)

    # -- pipelines ---------------------------------------------------------------------

    def _pipeline(self, tokens: list[_Token], pos: int, *, at_root: bool) -> Eval:
        commands: list[list[_Token]] = [[]]
        depth = 0
        for token in tokens:
            if token.text == "(" and token.kind == "punct":
                depth += 1
            elif token.text == ")" and token.kind == "punct":
                depth -= 1
                if depth < 0:
                    raise self.fail("this ) has no ( to close", token.pos)
            if token.text == "|" and token.kind == "punct" and depth == 0:
                commands.append([])
                continue
            commands[-1].append(token)
        if depth > 0:
            raise self.fail("a ( is never closed with )", pos)
        compiled: list[Command] = []
        for i, command in enumerate(commands):
            if not command:
                raise self.fail("a pipeline has an empty command around |", pos)
            compiled.append(self._command(command, piped=i > 0, at_root=at_root))
        first, rest = compiled[0], compiled[1:]
        if not rest:
            return lambda dot, root: first(dot, root, _MISSING)

        def run(dot: Value, root: Root) -> Value:
            value = first(dot, root, _MISSING)
            for command in rest:
                value = command(dot, root, [value])
            return value

        return run

    def _command(self, tokens: list[_Token], *, piped: bool, at_root: bool) -> Command:
        operands = self._operands(tokens, at_root=at_root)
        head_token, head = operands[0]
        if head_token.kind == "ident" and head_token.text in FUNCTIONS:
            fn = FUNCTIONS[head_token.text]
            args = [ev for _, ev in operands[1:]]
            count = len(args) + (1 if piped else 0)
            self._check_arity(head_token, fn, count)
            call = fn.call
            if head_token.text == "json":  # may reuse the event's encoded data
                if args:
                    arg = args[0]
                    return lambda dot, root, extra: json_of(arg(dot, root), root)
                return lambda dot, root, extra: json_of(extra[0], root)
            return lambda dot, root, extra: call(*[a(dot, root) for a in args], *extra)
        if len(operands) > 1 or piped:
            where = operands[1][0].pos if len(operands) > 1 else head_token.pos
            raise self.fail(
                f"{head_token.text} is not a function, so it cannot take arguments"
                + (" or a piped value" if piped else ""),
                where,
            )
        return lambda dot, root, extra: head(dot, root)

    def _check_arity(self, token: _Token, fn: Function, count: int) -> None:
        name = token.text
        if count < fn.min_args or (fn.max_args is not None and count > fn.max_args):
            if fn.max_args == fn.min_args:
                wanted = f"{fn.min_args} argument{'s' if fn.min_args != 1 else ''}"
            else:
                wanted = f"at least {fn.min_args} argument{'s' if fn.min_args != 1 else ''}"
            raise self.fail(f"{name} takes {wanted}, not {count}", token.pos)
        if fn.even and count % 2:
            raise self.fail(
                f"{name} takes key/value pairs (an even number of arguments), not {count}",
                token.pos,
            )

    def _operands(self, tokens: list[_Token], *, at_root: bool) -> list[tuple[_Token, Eval]]:
        out: list[tuple[_Token, Eval]] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.kind == "punct" and token.text == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(
                        tokens[j].text if tokens[j].kind == "punct" else "", 0
                    )
                    j += 1
                inner = tokens[i + 1 : j - 1]
                if not inner:
                    raise self.fail("() is empty", token.pos)
                sub = self._pipeline(inner, token.pos, at_root=at_root)
                close = tokens[j - 1]
                if j < len(tokens) and tokens[j].kind == "field" and tokens[j].pos == close.pos + 1:
                    names = tuple(tokens[j].text[1:].split("."))
                    sub = chain(sub, names)
                    j += 1
                out.append((token, sub))
                i = j
                continue
            out.append((token, self._term(token, first=not out, at_root=at_root)))
            i += 1
        return out

    def _term(self, token: _Token, *, first: bool, at_root: bool) -> Eval:
        kind, text = token.kind, token.text
        if kind == "field":
            names = () if text == "." else tuple(text[1:].split("."))
            if at_root:
                self._check_scope(names, token.pos)
            return path(names, from_root=False)
        if kind == "var":
            head, _, rest = text.partition(".")
            if head != "$":
                raise self.fail(
                    f"the variable {head} is not defined; only $ (the root) is", token.pos
                )
            names = tuple(rest.split(".")) if rest else ()
            self._check_scope(names, token.pos)
            return path(names, from_root=True)
        if kind in ("string", "raw"):
            value: Value = _unquote(token, self.fail)
            return lambda dot, root: value
        if kind == "number":
            number: Value = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda dot, root: number
        if kind == "ident":
            constants = {"true": True, "false": False, "nil": None}
            if text in constants:
                constant = constants[text]
                return lambda dot, root: constant
            if text in FUNCTIONS:
                if first:  # handled by _command
                    return lambda dot, root: None
                fn = FUNCTIONS[text]
                if fn.min_args:
                    raise self.fail(f"put {text} and its arguments in parentheses", token.pos)
                call = fn.call
                return lambda dot, root: call()
            if text in _UNSUPPORTED or text in ("if", "range", "with", "else", "end"):
                raise self.fail(f"{text} is not supported here", token.pos)
            known = ", ".join(sorted(FUNCTIONS))
            raise self.fail(
                f"the function {text!r} is not defined; known functions: {known}", token.pos
            )
        raise self.fail(f"{text!r} is not allowed here", token.pos)

    def _check_scope(self, names: tuple[str, ...], pos: int) -> None:
        if not names:
            return
        scope = names[0]
        if scope not in SCOPES:
            raise self.fail(
                f"there is no .{scope}; a template can use .event, .space, .actor and .custom", pos
            )
        fields = SCOPES[scope]
        if fields is None or len(names) < 2:
            return
        if names[1] not in fields:
            listed = ", ".join(sorted(fields))
            raise self.fail(f".{scope} has no field {names[1]}; it has {listed}", pos)
        if len(names) > 2 and (scope, names[1]) != ("event", "data"):
            raise self.fail(f".{scope}.{names[1]} has no field {names[2]}", pos)


# -- the public face ----------------------------------------------------------------------


class Template:
    """A parsed body template: `Template.parse(text).render(event)`."""

    __slots__ = ("_nodes", "source")

    def __init__(self, source: str, nodes: list[Emit]) -> None:
        self.source = source
        self._nodes = nodes

    @staticmethod
    def parse(source: str) -> Template:
        """Parse `source`; raise TemplateError (with .position) when it does not parse."""
        return _parse_cached(source)

    @staticmethod
    def check(source: object) -> str | None:
        """Why `source` is not a usable template, or None."""
        if not isinstance(source, str):
            return "The body template must be a string."
        try:
            Template.parse(source)
        except TemplateError as exc:
            return exc.message
        return None

    def render(self, event: Event, *, custom: Mapping[str, Any] | None = None) -> str:
        """The template filled in for `event`; TemplateError when a function fails on it."""
        return self.render_context(template_context(event, custom=custom))

    def render_context(self, root: Mapping[str, Any]) -> str:
        data = root if isinstance(root, Root) else Root(root)
        data.steps = MAX_RANGE_STEPS
        out = Output()
        try:
            for node in self._nodes:
                node(data, data, out)
        except Failed as exc:
            line = self.source.count("\n", 0, exc.pos) + 1
            column = exc.pos - (self.source.rfind("\n", 0, exc.pos) + 1) + 1
            raise TemplateError(
                f"The template failed at line {line}, column {column}: {exc.message}.",
                template=self.source,
                position=exc.pos,
            ) from None
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


@functools.lru_cache(maxsize=512)
def _parse_cached(source: str) -> Template:
    return Template(source, _Parser(source).parse())
