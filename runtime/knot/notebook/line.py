"""Splitting a `%knot` line into words: shell words, except JSON typed as is.

A notebook user types `%knot event myapp.deployed {"version": "1.0"}`; split like a shell line
that JSON falls apart at its spaces (and an apostrophe inside it opens a quote). So a word that
starts with `{` or `[` (also after `--option=`) and parses as one JSON value up to a space or
the end of the line is taken whole, exactly as typed. Everything else is split with shlex, so
shell-quoted JSON (`'{"version": "1.0"}'`) and quoted arguments work as before.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass

from .._exceptions import InvalidInput

__all__ = ["Words", "split_line"]

_OPTION_VALUE = re.compile(r"--[A-Za-z][\w-]*=")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Words:
    words: list[str]
    # Why a word that looked like JSON was not: reported instead of argparse's complaint about
    # the pieces the shell split it into ("unrecognized arguments: 1}").
    json_problem: str = ""


def _json_end(line: str, start: int) -> int:
    """Where the JSON value starting at `start` ends; JSONDecodeError when there is none, or
    when it does not end at a space or the end of the line."""
    _, end = _DECODER.raw_decode(line, start)
    if end < len(line) and not line[end].isspace():
        raise json.JSONDecodeError("Extra data after the JSON value", line, end)
    return end


def _snippet(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _shell_word(line: str, start: int) -> tuple[str, int]:
    """One shell word from `start`; the word and where the rest of the line begins."""
    stream = io.StringIO(line[start:])
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # as shlex.split: `#` is text (`%knot events 'a#b'`)
    word = lexer.get_token()
    return word or "", start + stream.tell()


def split_line(line: str) -> Words:
    """The words of a magic line; InvalidInput for an unclosed quote."""
    words: list[str] = []
    problem = ""
    at = 0
    while True:
        while at < len(line) and line[at].isspace():
            at += 1
        if at >= len(line):
            return Words(words, problem)
        option = _OPTION_VALUE.match(line, at)
        value_at = option.end() if option else at
        if value_at < len(line) and line[value_at] in "{[":
            try:
                end = _json_end(line, value_at)
            except json.JSONDecodeError as exc:
                problem = problem or (
                    f"The JSON {_snippet(line[value_at:].rstrip())} does not parse: {exc.msg} "
                    f"(at its character {exc.pos - value_at + 1})."
                )
            else:
                words.append(line[at:end])
                at = end
                continue
        try:
            word, at = _shell_word(line, at)
        except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
            raise InvalidInput(
                f"The %knot line does not parse ({exc}): type JSON as is, or quote it as in "
                "a shell."
            ) from None
        words.append(word)
