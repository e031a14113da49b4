"""The reference pages of the documentation, generated from the code so that they cannot drift.

- the command line from the argparse parser (`knot.cli.build_parser()`): every command's help,
  usage, arguments and examples;
- `knot.toml` from the settings model (`knot._settings`, `knot._config.Config`, the sink
  types' options, `[users.NAME]`'s keys): every key, its type, default and meaning;
- the HTTP API from the routes of `knot.server.app.create_app`: each endpoint's docstring is
  its entry.

A reference page in docs/ holds a marker `<!-- generated: NAME -->` (NAME: cli, config, http)
where the build (tools/mkdocs_hooks.py) puts the generated Markdown. `undocumented()` lists
what has no documentation (a command or argument without help, a key without a meaning, a
route without a docstring); tests/test_docs_reference.py fails on any.

Run `python tools/gen_docs.py NAME` to print a page's generated part, or
`python tools/gen_docs.py check` to list what is undocumented (exit 1 if anything is).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from knot._allowlist import ScriptAccess
from knot._config import RESTART_SETTINGS, Config, rule_of
from knot._settings import MEANING
from knot._sinkspec import SINK_KEYS
from knot._users import USER_KEYS
from knot.cli import build_parser
from knot.sinks import SINK_TYPES

__all__ = [
    "REFERENCES",
    "cli_reference",
    "config_reference",
    "expand",
    "http_reference",
    "undocumented",
]

MARKER = re.compile(r"<!-- generated: ([a-z]+) -->")
USAGE_WIDTH = "100"  # argparse wraps usage at $COLUMNS: fixed, so the page is the same anywhere


def cell(text: str) -> str:
    """Text for one Markdown table cell: one line, `|` escaped."""
    return " ".join(text.split()).replace("|", "\\|")


# --- the command line ----------------------------------------------------------------------


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("knot",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """(command path, its parser, its one-line help) for every command, depth first."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias of a command already listed
                continue
            seen.add(id(sub))
            yield (*path, name), sub, helps.get(name, "")
            yield from commands(sub, (*path, name))


def arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        yield action


def _usage(parser: argparse.ArgumentParser) -> str:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = USAGE_WIDTH
    try:
        return parser.format_usage().strip()
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _argument_row(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs != 0:
            names += f" {action.metavar or action.dest.upper()}"
    else:
        names = str(action.metavar or action.dest)
    default = ""
    if action.default not in (None, False, "", argparse.SUPPRESS, []) and action.nargs != 0:
        default = f"`{action.default}`"
    return f"| `{cell(names)}` | {cell(action.help or '')} | {default} |"


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or build_parser()
    out = [f"```\n{_usage(parser)}\n```", "", cell(parser.description or ""), ""]
    for path, sub, help_text in commands(parser):
        name = " ".join(path)
        out += [f"## `{name}`", "", cell(help_text), "", f"```\n{_usage(sub)}\n```", ""]
        rows = [_argument_row(a) for a in arguments(sub)]
        if rows:
            out += ["| argument | meaning | default |", "|---|---|---|", *rows, ""]
        if sub.epilog:
            out += [f"```\n{sub.epilog.strip()}\n```", ""]
    return "\n".join(out)


def undocumented_commands(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for path, sub, help_text in commands(parser):
        name = " ".join(path)
        if not help_text.strip():
            missing.append(f"The command `{name}` has no help text (add_command's help=).")
        missing.extend(
            f"The argument {a.option_strings or a.dest} of `{name}` has no help text (help=)."
            for a in arguments(sub)
            if not (a.help or "").strip()
        )
    return missing


# --- knot.toml -----------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}"
    entries = getattr(value, "entries", None)  # an AllowList
    if entries is not None:
        return _toml(list(entries))
    return str(value)


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _own_first(model: type[Any]) -> list[Field[Any]]:
    """The fields of a settings class, its own before those it inherits (the run limits)."""
    inherited = {f.name for base in model.__mro__[1:] if is_dataclass(base) for f in fields(base)}
    every = list(fields(model))
    return [f for f in every if f.name not in inherited] + [f for f in every if f.name in inherited]


def _key_rows(
    model: type[Any],
    section: str | None,
    skip: frozenset[str] = frozenset(),
    rules: str | None = None,
) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of each key of a settings table; `rules`: the table
    whose validation the keys share (a script's own table takes [scripts]' rules)."""
    for f in _own_first(model):
        if f.name in skip or not f.compare:
            continue
        dotted = f"{section}.{f.name}" if section else f.name
        meaning = str(f.metadata.get(MEANING, ""))
        if dotted in RESTART_SETTINGS:
            meaning += " A running runtime keeps its value until it restarts."
        checked_by = rules or section
        rule = rule_of(checked_by, f.name) if checked_by else "a non-empty string"
        default = _default(f)
        shown = "" if default is MISSING else f"`{_toml(default)}`"
        yield f.name, rule, shown, meaning


SUBTABLES = frozenset({"sinks", "methods"})  # [scripts.sinks.NAME], [scripts.methods.NAME]
TABLES = ("server", "store", "delivery", "scripts", "spaces", "methods", "metrics")
LISTS = ("sinks", "users", "secrets")  # tables of named entries, documented below


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out += [f"| `{k}` | {cell(t)} | {d} | {cell(m)} |" for k, t, d, m in rows]
    return [*out, ""]


def config_sections() -> Iterator[tuple[str, str, list[tuple[str, str, str, str]]]]:
    """(heading, introduction, rows) for every table of knot.toml."""
    by_name = {f.name: f for f in fields(Config)}
    top = [r for r in _key_rows(Config, None) if r[0] not in (*TABLES, *LISTS, "extra")]
    yield "Top level", "", top
    for name in TABLES:
        model = by_name[name].default_factory
        assert callable(model)
        skip = SUBTABLES if name == "scripts" else frozenset()
        yield f"`[{name}]`", "", list(_key_rows(type(model()), name, skip))
        if name == "scripts":
            scripts = {f.name: f for f in fields(type(model()))}
            intro = " ".join(str(scripts[s].metadata.get(MEANING, "")) for s in sorted(SUBTABLES))
            rows = list(_key_rows(ScriptAccess, None, rules="scripts"))
            yield "`[scripts.sinks.NAME]`, `[scripts.methods.NAME]`", intro, rows
    sinks = [(k, "", "", m) for k, m in SINK_KEYS.items()]
    yield "`[[sinks]]`", str(by_name["sinks"].metadata.get(MEANING, "")), sinks
    for type_name, cls in sorted(SINK_TYPES.items()):
        rows = [(k, "", "", m) for k, m in cls.options.items()]
        yield f"`[[sinks]]` of type `{type_name}`", "", rows
    users = [(k, "", "", m) for k, m in USER_KEYS.items()]
    yield "`[users.NAME]`", str(by_name["users"].metadata.get(MEANING, "")), users
    yield "`[secrets]`", str(by_name["secrets"].metadata.get(MEANING, "")), []


def config_reference() -> str:
    out: list[str] = []
    for heading, intro, rows in config_sections():
        out += [f"## {heading}", ""]
        if intro:
            out += [cell(intro), ""]
        if rows:
            if all(not t and not d for _, t, d, _ in rows):
                out += ["| key | meaning |", "|---|---|"]
                out += [f"| `{k}` | {cell(m)} |" for k, _, _, m in rows]
                out.append("")
            else:
                out += _table(rows)
    return "\n".join(out)


def undocumented_keys(
    sections: Iterator[tuple[str, str, list[tuple[str, str, str, str]]]] | None = None,
) -> list[str]:
    return [
        f"The knot.toml key {k!r} ({heading}) has no meaning: give its field one with "
        "setting(default, meaning) in knot/_settings.py (or its mapping's entry)."
        for heading, _, rows in (sections if sections is not None else config_sections())
        for k, _, _, m in rows
        if not m.strip()
    ]


# --- the HTTP API --------------------------------------------------------------------------


def _app_routes() -> list[BaseRoute]:
    from knot import Runtime
    from knot.server.app import create_app

    with tempfile.TemporaryDirectory() as project:  # the routes need a runtime, never started
        return list(create_app(Runtime(project)).routes)


def routes(
    found: Sequence[BaseRoute] | None = None, prefix: str = ""
) -> Iterator[tuple[str, list[str], str]]:
    """(path, methods, documentation) of every route, mounts included."""
    for route in found if found is not None else _app_routes():
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner:
                yield from routes(list(inner), prefix + route.path)
            else:
                doc = summary(route.app)
                if not doc and isinstance(route.app, StaticFiles):
                    doc = "Static files of the package, served as they are (the dashboard's)."
                yield prefix + route.path + "/…", ["GET"], doc
        elif isinstance(route, Route):
            shown = [m for m in sorted(route.methods or ["GET"]) if m != "HEAD"]
            yield prefix + route.path, shown, summary(route.endpoint)


def summary(endpoint: object) -> str:
    """The first paragraph of an endpoint's docstring: its entry in the reference (the rest is
    for whoever works on it)."""
    return (inspect.getdoc(endpoint) or "").split("\n\n")[0]


def http_reference(found: Sequence[BaseRoute] | None = None) -> str:
    """One row per documentation, in path order: the routes one endpoint serves share it
    (`/api/sinks` and its alias `/api/event-sinks`)."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for path, methods, doc in routes(found):
        rows.setdefault(doc, []).append(("/".join(methods), path))
    verbs = ["GET", "POST", "PATCH", "DELETE"]

    def order(names: list[tuple[str, str]]) -> tuple[str, int]:
        method, path = names[0]
        first = method.split("/")[0]
        return path, verbs.index(first) if first in verbs else len(verbs)

    out = ["| route | what |", "|---|---|"]
    for doc, names in sorted(rows.items(), key=lambda row: order(row[1])):
        shown = ", ".join(f"`{method} {path}`" for method, path in names)
        out.append(f"| {shown} | {cell(doc)} |")
    return "\n".join(out) + "\n"


def undocumented_routes(found: Sequence[BaseRoute] | None = None) -> list[str]:
    return [
        f"The route {'/'.join(methods)} {path} has no documentation: give its endpoint a "
        "docstring (it is the route's entry in docs/reference/http.md)."
        for path, methods, doc in routes(found)
        if not doc.strip()
    ]


# --- all of it -----------------------------------------------------------------------------

REFERENCES: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "config": config_reference,
    "http": http_reference,
}


def expand(markdown: str) -> str:
    """`markdown` with each `<!-- generated: NAME -->` marker replaced by that reference."""

    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in REFERENCES:
            known = ", ".join(sorted(REFERENCES))
            raise ValueError(f"There is no generated reference {name!r}; known: {known}.")
        return REFERENCES[name]()

    return MARKER.sub(generated, markdown)


def undocumented() -> list[str]:
    return [*undocumented_commands(build_parser()), *undocumented_keys(), *undocumented_routes()]


def main(argv: list[str]) -> int:
    if argv == ["check"]:
        missing = undocumented()
        print("\n".join(missing) or "Every command, key and route is documented.")
        return 1 if missing else 0
    if len(argv) == 1 and argv[0] in REFERENCES:
        print(REFERENCES[argv[0]]())
        return 0
    print(f"usage: gen_docs.py check | {' | '.join(REFERENCES)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
