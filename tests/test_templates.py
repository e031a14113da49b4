"""Knot's `${{ }}` body templates: every DESIGN example, the Go syntax we take, and the errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knot import Actor, ActorKind, Event, Space, TemplateError
from knot._events import encode_payload
from knot.templates.syntax import DEFAULT_TEMPLATE, Template

DATA = {"version": "1.2", "n": 3, "ok": True, "nested": {"b": [1, 2.5, None]}, "txt": 'say "hi"'}


def make_event(data: dict[str, Any] | None = None, *, space: Space | None = None) -> Event:
    payload, encoded = encode_payload(DATA if data is None else data)
    return Event(
        id="01920000-0000-7000-8000-000000000001",
        type="custom.myapp.deployed",
        data=payload,
        ts="2025-03-04T05:06:07.123456Z",
        actor=Actor("u1", "alice", ActorKind.USER),
        space=space or Space("sp1", "dev-box", ("https://a.example", "https://b.example")),
        data_json=encoded,
    )


def render(text: str, event: Event | None = None, **custom: Any) -> str:
    return Template.parse(text).render(event or make_event(), custom=custom)


def test_the_default_template_renders_the_design_body() -> None:
    body = json.loads(render(DEFAULT_TEMPLATE))
    assert body == {
        "event_id": "01920000-0000-7000-8000-000000000001",
        "event_type": "custom.myapp.deployed",
        "event_ts": "2025-03-04T05:06:07.123456Z",
        "data": DATA,
    }
    assert DEFAULT_TEMPLATE == (
        '{"event_id":"${{ .event.id }}","event_type":"${{ .event.type }}","event_ts":'
        '"${{ .event.ts }}","data": ${{ json .event.data }}}'
    )


def test_the_knot_toml_example_template() -> None:
    text = """{"id": "${{ .event.id }}", "data": ${{ json .event.data }}}"""
    assert json.loads(render(text)) == {"id": "01920000-0000-7000-8000-000000000001", "data": DATA}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ .event.id }}", "01920000-0000-7000-8000-000000000001"),
        ("${{ .event.type }}", "custom.myapp.deployed"),
        ("${{ .event.ts }}", "2025-03-04T05:06:07.123456Z"),
        ("${{ .event.data.version }}", "1.2"),
        ("${{ .event.data.n }}", "3"),
        ("${{ .event.data.ok }}", "true"),
        ("${{ .event.data.nested.b }}", "[1,2.5,null]"),
        ("${{ .event.data.missing }}", ""),
        ("${{ .space.id }}", "sp1"),
        ("${{ .space.name }}", "dev-box"),
        ("${{ json .space.urls }}", '["https://a.example","https://b.example"]'),
        ("${{ .actor.id }}", "u1"),
        ("${{ .actor.username }}", "alice"),
        ("${{ .actor.kind }}", "User"),
        ("${{ .custom.GITHUB_REPO }}", "me/repo"),
        ("${{ .custom.UNSET }}", ""),
        ("${{ json .event.data.version }}", '"1.2"'),
        ("${{ quote .space.name }}", "dev-box"),
        ("${{ quote .event.data.txt }}", 'say \\"hi\\"'),
        ("${{ toUpper .actor.kind }}", "USER"),
        ("${{ toLower .event.type }}", "custom.myapp.deployed"),
        ('${{ map "k" "v" "k2" "v2" }}', '{"k":"v","k2":"v2"}'),
        (
            '${{ json (map "id" .event.id "n" .event.data.n) }}',
            '{"id":"01920000-0000-7000-8000-000000000001","n":3}',
        ),
    ],
)
def test_design_and_knot_examples(text: str, expected: str) -> None:
    assert render(text, GITHUB_REPO="me/repo") == expected


def test_custom_is_the_payload_of_a_custom_event_and_empty_for_a_system_event() -> None:
    template = Template.parse("${{ .custom.version }}|${{ json .custom }}")
    assert template.render(make_event()) == f"1.2|{json.dumps(DATA, separators=(',', ':'))}"
    system = make_event()._replace(type="space.started")
    assert template.render(system) == "|{}"


def test_quote_escapes_double_quotes_only() -> None:
    # Knot's quote escapes `"` and nothing else; json is the fully escaped form.
    event = make_event({"s": 'a"b\\c\nd'})
    assert render("${{ quote .event.data.s }}", event) == 'a\\"b\\c\nd'
    assert render("${{ json .event.data.s }}", event) == '"a\\"b\\\\c\\nd"'


def test_no_space_and_no_actor_details_render_empty() -> None:
    event = Event(id="e1", type="custom.t", data={}, ts="t", actor=Actor("", "", ActorKind.SYSTEM))
    assert (
        render("[${{ .space.id }}|${{ .space.name }}|${{ json .space.urls }}]", event) == "[||[]]"
    )
    assert render("${{ .actor.kind }}", event) == "System"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ .event.type | toUpper }}", "CUSTOM.MYAPP.DEPLOYED"),
        ("${{ .space.name | quote | toUpper }}", "DEV-BOX"),
        ('${{ "x" | print "a" }}', "ax"),
        ("${{ (index .space.urls 1) }}", "https://b.example"),
        ('${{ (map "a" (map "b" "deep")).a.b }}', "deep"),
        ("${{ index .event.data.nested.b 1 }}", "2.5"),
        ('${{ index .event.data "version" }}', "1.2"),
        ("${{ len .event.data.nested.b }}", "3"),
        ('${{ print 1 2 "a" 3 }}', "1 2a3"),
        ("${{ eq .event.data.n 3 }}", "true"),
        ('${{ eq .event.data.version "1.0" "1.2" }}', "true"),
        ("${{ ne .event.data.n 3 }}", "false"),
        ("${{ lt .event.data.n 4 }}", "true"),
        ("${{ ge .event.data.n 4 }}", "false"),
        ('${{ and .event.data.ok "yes" }}', "yes"),
        ('${{ or .event.data.missing "fallback" }}', "fallback"),
        ("${{ not .event.data.ok }}", "false"),
        ("${{ 42 }} ${{ -1.5 }} ${{ 2.0 }} ${{ true }} ${{ nil }}", "42 -1.5 2 true "),
        ('${{ "tab\\tnew\\nq\\"\\u00e9\\x41" }}', 'tab\tnew\nq"éA'),
        ("${{ `raw \\n ${ }` }}", "raw \\n ${ }"),
        ("${{ . | json | len | lt 10 }}", "true"),
        ("${{ $.event.type }}", "custom.myapp.deployed"),
    ],
)
def test_pipelines_literals_and_go_builtins(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ if .event.data.ok }}yes${{ end }}", "yes"),
        ("${{ if .event.data.missing }}yes${{ else }}no${{ end }}", "no"),
        (
            "${{ if eq .event.data.n 1 }}one${{ else if eq .event.data.n 3 }}three"
            "${{ else }}many${{ end }}",
            "three",
        ),
        ("${{ range .space.urls }}<${{ . }}>${{ end }}", "<https://a.example><https://b.example>"),
        ('${{ range (map "b" 2 "a" 1) }}${{ . }}${{ end }}', "12"),
        ("${{ range .event.data.missing }}x${{ else }}empty${{ end }}", "empty"),
        (
            "${{ with .space }}${{ .name }}@${{ $.event.type }}${{ end }}",
            "dev-box@custom.myapp.deployed",
        ),
        ("${{ with .event.data.missing }}x${{ else }}none${{ end }}", "none"),
        ("a  ${{- .space.id -}}  b", "asp1b"),
        ("a ${{/* a comment */}}b", "a b"),
        ("a\n  ${{- /* trimmed */ -}}\n  b", "ab"),
        ("${{ if .event.data.ok -}}\n  ok\n${{- end }}", "ok"),
        ("${{-3}}", "-3"),
        ('{"a": {"b": "${{ .space.id }}"}}', '{"a": {"b": "sp1"}}'),
        ('${{ "}}" }}', "}}"),
        ("plain text, no actions", "plain text, no actions"),
        ("", ""),
    ],
)
def test_control_structures_trim_markers_and_comments(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("${{ .evnt.id }}", 4, "there is no .evnt"),
        ("${{ .event.foo }}", 4, ".event has no field foo; it has data, id, ts, type"),
        ("${{ .space.name.first }}", 4, ".space.name has no field first"),
        ("${{ $.actor.email }}", 4, ".actor has no field email"),
        ('{"a": ${{ toupper .event.type }}}', 10, "the function 'toupper' is not defined"),
        ("${{ .event.id ", 0, "never closed with }}"),
        ("ab\ncd ${{ .event.id", 6, "line 2, column 4"),
        ('${{ "abc }}', 4, "string is never closed"),
        ("${{ if .event.id }}x", 0, "never closed with ${{ end }}"),
        ("${{ range .space.urls }}x${{ else }}y", 0, "range is never closed"),
        ("${{ if 1 }}a${{ else }}b${{ else }}c${{ end }}", 24, "already has an else"),
        ("x${{ end }}", 1, "no block open for this end"),
        ("${{ else }}", 0, "no block open for this else"),
        ("${{ if }}x${{ end }}", 0, "if needs a pipeline"),
        ("${{ if 1 }}x${{ end 2 }}", 20, "end takes nothing"),
        ('${{ map "a" }}', 4, "key/value pairs"),
        ("${{ json }}", 4, "json takes 1 argument, not 0"),
        ("${{ json .event.id .event.ts }}", 4, "json takes 1 argument, not 2"),
        ("${{ .event.id | json .event.ts }}", 16, "json takes 1 argument, not 2"),
        ("${{ eq 1 }}", 4, "eq takes at least 2 arguments, not 1"),
        ("${{ .event.id 1 }}", 14, "not a function, so it cannot take arguments"),
        ("${{ .event.type | .event.id }}", 18, "or a piped value"),
        ("${{ }}", 0, "this action is empty"),
        ("${{ $x := 1 }}", 7, "variables"),
        ("${{ $y }}", 4, "the variable $y is not defined"),
        ('${{ define "x" }}${{ end }}', 4, "define is not supported"),
        ('${{ printf "%s" 1 }}', 4, "printf is not supported"),
        ("${{ .event.id | }}", 0, "empty command"),
        ("${{ (.event.id }}", 0, "never closed with )"),
        ("${{ .event.id) }}", 13, "no ( to close"),
        ("${{ () }}", 4, "() is empty"),
        ("${{ eq 1 json }}", 9, "put json and its arguments in parentheses"),
        ('${{ "\\q" }}', 5, "the escape \\q is not valid"),
        ("${{ # }}", 4, "the character '#' is not allowed"),
        ("${{/* open", 3, "comment is never closed"),
        ("${{/* c */ x }}", 11, "a comment must be the whole action"),
        ("${{ else 3 }}", 0, "no block open"),
        (
            "${{ if 1 }}${{ else range .x }}${{ end }}",
            20,
            "else may only be followed by if or with",
        ),
    ],
)
def test_parse_errors_carry_the_position_and_read_as_sentences(
    text: str, position: int, words: str
) -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    error = info.value
    assert words in error.message
    assert error.position == position
    assert error.template == text
    assert error.message.startswith("The template does not parse at line ")
    assert error.message.endswith(".")
    assert Template.check(text) == error.message


def test_check_accepts_good_templates_and_rejects_non_strings() -> None:
    assert Template.check(DEFAULT_TEMPLATE) is None
    assert Template.check(42) == "The body template must be a string."


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("${{ index .space.urls 5 }}", "index 5 out of range (length 2)"),
        ('${{ lt .event.data.n "a" }}', "lt compares two numbers or two strings"),
        ("${{ len .event.data.n }}", "len of a number"),
        ("${{ range .event.data.n }}x${{ end }}", "range needs a list or a map, not a number"),
        ("${{ (index .space.urls 0).host }}", "cannot read the field host of a string"),
        ('${{ map 1 "x" }}', "map keys must be strings, not a number"),
    ],
)
def test_render_errors_name_the_action(text: str, words: str) -> None:
    template = Template.parse(text)  # parses: these fail only on this event's data
    with pytest.raises(TemplateError) as info:
        template.render(make_event())
    assert words in info.value.message
    assert info.value.message.startswith("The template failed at line 1, column 1: ")
    assert info.value.position == 0


def test_parsing_is_cached_and_rendering_repeats() -> None:
    assert Template.parse(DEFAULT_TEMPLATE) is Template.parse(DEFAULT_TEMPLATE)
    template = Template.parse("${{ .event.data.n }}")
    assert [template.render(make_event({"n": i})) for i in range(3)] == ["0", "1", "2"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6), st.text())
def test_default_and_json_bodies_are_valid_json_for_any_payload(
    payload: dict[str, Any], name: str
) -> None:
    event = make_event(payload, space=Space("s", name))
    body = json.loads(render(DEFAULT_TEMPLATE, event))
    assert body["data"] == payload
    built = json.loads(render('${{ json (map "name" .space.name "data" .event.data) }}', event))
    assert built == {"name": name, "data": payload}
