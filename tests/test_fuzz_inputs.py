"""Fuzz the parsers behind every ingress, in-process: files, headers, scripts, patterns, specs.

The rule they share: bad input is data, not a crash. Functions that return results (config,
script loads, space checks) never raise; functions that raise do so only with an error of
the knot tree (a KnotError whose message is a sentence), never a TypeError or a
RecursionError from somewhere inside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from knot import KnotError, Pattern, SinkOrigin, SinkSpec, parse_config
from knot._events import as_custom_type, check_event_id, encode_payload
from knot.sandbox.worker.policy import compile_script
from knot.scripts import load_script
from knot.scripts.loader import parse_header
from knot.sinks import build_sink
from knot.sky.channels import ChannelPolicy
from knot.sky.esl import (
    BodyKind,
    body_kind,
    parse_esl_path,
    parse_sky_request,
    read_attributes,
)
from knot.spaces.spec import check_space

from .fuzzing import event_types, fuzz, json_objects, json_values, patterns, texts

# -- knot.toml ---------------------------------------------------------------------------------

SECTIONS = ["server", "store", "delivery", "scripts", "spaces", "users", "methods", "sky", "x"]
KEYS = [
    "zone", "host", "port", "max_body_bytes", "path", "retention_events", "retention_audit",
    "synchronous", "queue_size", "attempts", "backoff", "max_depth", "max_payload_bytes",
    "sync_timeout", "dir", "timeout", "memory_mb", "workers", "stop_grace", "name", "type",
    "events", "url", "secret", "headers", "body_template", "owner", "active", "description",
    "limit", "delay", "fail_attempts", "skip_tls_verify", "sinks",
]  # fmt: skip


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string (bar a few escapes)


toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf").lower()),
    st.booleans().map(lambda b: "true" if b else "false"),
    texts.map(toml_string),
    st.sampled_from(["1979-05-27T07:32:00Z", "07:32:00", "1979-05-27", "0x10", "1_000", "nan"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k} = {v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=6,
)
toml_lines = st.one_of(
    st.sampled_from(SECTIONS).map(lambda s: f"[{s}]"),
    st.just("[[sinks]]"),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), toml_values),
    st.builds(
        lambda s, k, v: f"{s}.{k} = {v}",
        st.sampled_from(SECTIONS),
        st.sampled_from(KEYS),
        toml_values,
    ),
    texts,
)
toml_documents = st.lists(toml_lines, max_size=14).map("\n".join)


def check_config_result(text: str) -> None:
    result = parse_config(text, path="knot.toml")
    assert (result.config is None) == bool(result.errors)
    for message in (*result.errors, *result.warnings):
        assert isinstance(message, str)
        assert message.startswith("knot.toml"), message
    if result.config is not None:
        for spec in result.config.sinks:
            assert spec.origin is SinkOrigin.CONFIG


@fuzz(300)
@given(text=toml_documents)
@example(text="[[sinks]]\nname = 'ab'\ntype = 'recording'\nevents = '*'\nlimit = -1")
@example(text="delivery = 3")
@example(text="[delivery]\nbackoff = [1, 'x']")
@example(text="[[sinks]]\n" + "x = 1\n" * 50)
def test_parse_config_never_raises_on_toml(text: str) -> None:
    check_config_result(text)


@fuzz(150)
@given(text=st.text(max_size=300))
def test_parse_config_never_raises_on_any_text(text: str) -> None:
    check_config_result(text)


# -- script headers and sources ------------------------------------------------------------------

header_lines = st.one_of(
    st.builds(lambda p: f"# events: {p}", st.lists(patterns, max_size=3).map(", ".join)),
    st.builds(lambda t: f"# description: {t}", texts),
    st.sampled_from(["# events:", "#events:*", "# event: *", "# EVENTS: *", "#", ""]),
    texts.map(lambda t: "# " + t),
)
code_lines = st.one_of(
    st.sampled_from(
        [
            "import knot.event",
            "import os",
            "print(knot.event.type())",
            "x = 1 +",
            "def f(:",
            "class A:\n    def __init__(self): pass",
            "x = (1).__class__",
            "return 1",
            "yield 1",
            "\x00",
            "x = " + "(" * 300 + ")" * 300,
            "x = " + "+".join(["1"] * 3000),
            "x = " + "-" * 100000 + "1",
            "x = " + "not " * 5000 + "1",
            "x = [" * 150 + "]" * 150,
            "f" + "(1)" * 5000,
            "lambda: " * 3000 + "1",
        ]
    ),
    texts,
)
scripts = st.builds(
    lambda head, body: "\n".join([*head, *body]) + "\n",
    st.lists(header_lines, max_size=4),
    st.lists(code_lines, max_size=4),
)
script_names = st.one_of(st.sampled_from(["deploy", "a", "1x", "ok_name", "x" * 70]), texts)


@fuzz(200)
@given(source=scripts, name=script_names)
def test_load_script_never_raises(
    tmp_path_factory: pytest.TempPathFactory, source: str, name: str
) -> None:
    folder = tmp_path_factory.getbasetemp()
    safe_name = "".join(c for c in name if c.isalnum() or c == "_")[:80] or "x"
    load = load_script(folder / f"{safe_name}.py", source=source)
    assert (load.spec is None) == bool(load.problems)
    for problem in load.problems:
        assert problem.line >= 1, problem
        assert problem.col >= 1, problem
        assert problem.rule.strip(), problem
        assert "\n" not in problem.rule, problem
    header = parse_header(source)
    assert all(line >= 1 and col >= 1 for line, col, _ in header.problems)


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "+".join(["1"] * 100000),
        "x = " + "-" * 100000 + "1",
        "x = " + "not " * 5000 + "1",
        "f" + "(1)" * 20000,
        "x" + ".y" * 20000,
        "lambda: " * 5000 + "1",
    ],
)
def test_a_script_nested_too_deeply_is_a_load_error(source: str) -> None:
    """Found by fuzzing: these raised RecursionError / MemoryError out of load_script."""
    load = load_script(Path("deep.py"), source="# events: *\n" + source + "\n")
    assert load.spec is None
    (problem,) = load.problems
    assert "nested too deeply to compile" in problem.rule


@fuzz(150)
@given(source=st.text(max_size=400))
def test_compile_script_never_raises(source: str) -> None:
    compiled = compile_script(source, "fuzz.py")
    assert compiled.ok == (not compiled.violations)


# -- the small parsers under every ingress --------------------------------------------------------


def raises_only_knot_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except KnotError as exc:
        message = str(exc)
    assert message.strip(), f"{fn.__name__} raised an error without a message"
    return None


@fuzz(200)
@given(value=st.one_of(patterns, json_values))
def test_patterns_and_types(value: Any) -> None:
    if isinstance(value, str):  # typed `str`: every ingress checks the type before
        raises_only_knot_errors(Pattern.parse, value)
    raises_only_knot_errors(as_custom_type, value)
    raises_only_knot_errors(check_event_id, value)
    raises_only_knot_errors(ChannelPolicy.parse, allow=value if isinstance(value, str) else None)


sink_fields = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(texts, st.sampled_from(["ok_sink", "a"])),
        "type": st.one_of(texts, st.sampled_from(["webhook", "script", "json-rpc", "recording"])),
        "events": st.one_of(patterns, st.lists(patterns, max_size=3), json_values),
        "description": json_values,
        "owner": json_values,
        "active": json_values,
        "url": st.one_of(json_values, st.sampled_from(["http://[", "http://[::1", "ftp://x"])),
        "secret": json_values,
        "headers": json_values,
        "body_template": json_values,
        "limit": json_values,
    },
)


@fuzz(200)
@given(raw=st.one_of(sink_fields, json_objects))
@example(raw={"name": "hook", "type": "webhook", "events": "*", "url": "http://["})
def test_sink_specs(raw: dict[str, Any]) -> None:
    """A definition is refused with a SinkError or builds (its type's checks included)."""
    spec = raises_only_knot_errors(SinkSpec.from_dict, raw, origin=SinkOrigin.API)
    if spec is not None:
        raises_only_knot_errors(build_sink, spec)
        again = SinkSpec.from_dict(spec.to_dict(redact=False), origin=SinkOrigin.API)
        assert (again.name, again.events) == (spec.name, spec.events)


space_fields = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        for k in [
            "name",
            "owner",
            "cmd",
            "urls",
            "template_id",
            "startup_script_id",
            "health",
            "interval",
            "timeout",
            "threshold",
            "on_restart",
        ]
    },
)


@fuzz(200)
@given(raw=st.one_of(space_fields, json_objects))
def test_space_checks(raw: dict[str, Any]) -> None:
    result = check_space(raw)
    assert (result.spec is None) == bool(result.errors)


@fuzz(200)
@given(payload=json_values, event_type=event_types)
def test_payloads(payload: Any, event_type: str) -> None:
    raises_only_knot_errors(encode_payload, payload, max_bytes=4096, event_type=event_type)


@fuzz(300)
@given(
    rest=st.lists(
        st.one_of(texts, st.sampled_from(["", "none", "%2F", "%ff", "a%20b"])), max_size=6
    ).map("/".join),
    query=texts,
    body=st.one_of(st.binary(max_size=100), json_values.map(lambda v: json.dumps(v).encode())),
    content_type=st.one_of(st.none(), texts),
)
def test_sky_parsing(rest: str, query: str, body: bytes, content_type: str | None) -> None:
    path = raises_only_knot_errors(parse_esl_path, rest)
    kind = body_kind(content_type, body)
    assert isinstance(kind, BodyKind)
    if kind is BodyKind.UNSUPPORTED:
        return
    attrs = raises_only_knot_errors(read_attributes, query, body, kind)
    if path is not None and attrs is not None:
        raises_only_knot_errors(parse_sky_request, path, attrs)
