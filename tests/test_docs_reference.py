"""The reference pages are generated from the code (tools/gen_docs.py): every command, knot.toml
key and HTTP route has documentation, and the check that says so notices when one has none."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gen_docs import (
    SUBTABLES,
    TABLES,
    cli_reference,
    commands,
    config_reference,
    config_sections,
    expand,
    http_reference,
    routes,
    undocumented,
    undocumented_commands,
    undocumented_keys,
    undocumented_routes,
)
from knot._config import Config, parse_config
from knot._settings import setting
from knot.cli import build_parser


def test_every_command_key_and_route_is_documented() -> None:
    assert undocumented() == []


def test_the_cli_reference_has_every_command_and_option() -> None:
    page = cli_reference()
    for path, sub, _ in commands(build_parser()):
        assert f"## `{' '.join(path)}`" in page
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and action.help != argparse.SUPPRESS:
                    assert f"`{option}" in page or f", {option}" in page, (path, option)


def test_a_command_or_argument_without_help_is_reported() -> None:
    parser = argparse.ArgumentParser(prog="knot")
    sub = parser.add_subparsers()
    documented = sub.add_parser("good", help="does good")
    documented.add_argument("--fine", help="a fine option")
    documented.add_argument("--bare")
    sub.add_parser("bad")
    assert undocumented_commands(parser) == [
        "The argument ['--bare'] of `knot good` has no help text (help=).",
        "The command `knot bad` has no help text (add_command's help=).",
    ]


def test_the_config_reference_has_every_key_the_settings_accept() -> None:
    page = config_reference()
    by_name = {f.name: f for f in fields(Config)}
    for table in TABLES:
        factory = by_name[table].default_factory
        assert callable(factory)
        for key in fields(type(factory())):
            if key.compare and not (table == "scripts" and key.name in SUBTABLES):
                assert f"| `{key.name}` |" in page, (table, key.name)
    assert "## `[scripts.sinks.NAME]`, `[scripts.methods.NAME]`" in page


def test_each_documented_key_is_one_knot_toml_takes() -> None:
    # A row for a key the loader does not know would send a reader to a warning.
    for heading, _, rows in config_sections():
        table = re.fullmatch(r"`\[(\w+)\]`", heading)
        if table is None or table.group(1) not in TABLES:
            continue
        for key, _, default, _ in rows:
            literal = default.strip("`") or '""'
            result = parse_config(f"[{table.group(1)}]\n{key} = {literal}\n")
            assert not [w for w in result.warnings if "not a known setting" in w], (heading, key)


def test_a_key_without_meaning_is_reported() -> None:
    @dataclass(frozen=True)
    class Settings:
        said: int = setting(1, "What it means.")
        unsaid: int = 2

    rows = [(f.name, "", "", str(f.metadata.get("knot.meaning", ""))) for f in fields(Settings)]
    (problem,) = undocumented_keys(iter([("`[new]`", "", rows)]))
    assert problem.startswith("The knot.toml key 'unsaid' (`[new]`) has no meaning")


async def _documented(request: Request) -> Response:
    """What it answers."""
    return Response()


async def _bare(request: Request) -> Response:
    return Response()


def test_a_route_without_a_docstring_is_reported_and_routes_share_a_row() -> None:
    found = [
        Route("/a", _documented, methods=["GET"]),
        Route("/b", _documented, methods=["GET"]),
        Route("/c", _bare, methods=["POST"]),
    ]
    assert [path for path, _, _ in routes(found)] == ["/a", "/b", "/c"]
    assert undocumented_routes(found) == [
        "The route POST /c has no documentation: give its endpoint a docstring (it is the "
        "route's entry in docs/reference/http.md)."
    ]
    assert "| `GET /a`, `GET /b` | What it answers. |" in http_reference(found)


def test_the_http_reference_lists_every_route_of_the_app() -> None:
    page = http_reference()
    for path, methods, _ in routes():
        assert f"`{'/'.join(methods)} {path}`" in page


def test_markers_are_replaced_and_an_unknown_one_is_an_error() -> None:
    assert "## `knot serve`" in expand("# CLI\n\n<!-- generated: cli -->\n")
    with pytest.raises(ValueError, match="There is no generated reference 'nothing'"):
        expand("<!-- generated: nothing -->")
