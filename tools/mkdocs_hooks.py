"""mkdocs hooks (mkdocs.yml `hooks:`): the reference pages get their generated part at build
time, from the code (see gen_docs.py), so that no copy is kept to drift."""

from __future__ import annotations

from typing import Any

from mkdocs.exceptions import PluginError

from gen_docs import expand  # mkdocs puts this folder on sys.path while it loads the hooks


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    try:
        return expand(markdown)
    except ValueError as exc:  # a marker naming no reference: one line, not a traceback
        raise PluginError(f"{page.file.src_uri}: {exc}") from None
