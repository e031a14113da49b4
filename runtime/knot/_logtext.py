"""Untrusted text (request paths, remote error messages) made safe to put in one log line.

`knot serve` writes one log line per record; a percent-encoded `%0A` in a request path decodes
to a real newline, and logged as is it would start a line of the attacker's choosing (a forged
"INFO: ..." record). Control characters are escaped the way Python writes them (`\\n`, `\\x1b`)
so the text stays on its line and inert; a tab is kept, as it cannot start a line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["log_output", "loggable"]


def loggable(text: str, *, keep_tab: bool = True) -> str:
    """`text` with every non-printable character (but the tab, unless `keep_tab` is false)
    escaped (`\\n`, `\\r`, `\\x1b`)."""
    if text.isprintable():  # the common case costs one scan
        return text
    tab = "\t" if keep_tab else ""
    return "".join(c if c.isprintable() or c == tab else repr(c)[1:-1] for c in text)


def log_output(logger: str, name: str, lines: Iterable[str]) -> None:
    """What a script printed: one INFO line each, `name: line`, on `logger` (`knot serve` shows
    them); a script's line may hold anything, escapes included."""
    out = logging.getLogger(logger)
    for line in lines:
        out.info("%s: %s", name, loggable(line))
