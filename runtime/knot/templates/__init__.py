"""Knot's body templates: Go text/template syntax with `${{ }}` delimiters.

syntax.py  parsing a template into nodes (a template that does not parse is refused)
render.py  how parsed nodes run against an event: fields, values, functions
"""

from __future__ import annotations

from .syntax import DEFAULT_TEMPLATE, Template, template_context

__all__ = ["DEFAULT_TEMPLATE", "Template", "template_context"]
