"""Fuzz Knot's body templates: parsing and rendering fail only with a TemplateError.

Templates come from whoever may create a sink; the data they render comes from whoever raises
events. So besides "never a crash", rendering has a budget (output size, `range` steps) and
a template bomb fails its own delivery, quickly, while the runtime goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from knot import Config, DeliveryStatus, Runtime, Template, TemplateError
from knot._config import DeliverySettings
from knot.templates.render import MAX_OUTPUT_CHARS, MAX_RANGE_STEPS

from .conftest import recording
from .fuzzing import fuzz, json_objects, texts
from .receiver import Receiver

WORDS = [
    "${{", "}}", "${{-", "-}}", " ", ".", ".event", ".event.id", ".event.type", ".event.ts",
    ".event.data", ".event.data.x", ".space.name", ".space.urls", ".actor.kind", ".custom.x",
    ".custom", "$", "$.event", "(", ")", "|", "json", "quote", "toUpper", "toLower", "map",
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "print", "if",
    "else", "range", "with", "end", "nil", "true", "false", '"s"', '"\\x41"', '"\\u00e9"',
    "`raw`", "1", "-2.5", "1e400", "0x1F", "/*", "*/", "{{", ":=", "$x", "define", "printf",
    '"', "'", "\\", "\n", "{", "}",
]  # fmt: skip
templates = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=25).map("".join),
    st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),
    texts,
)


def context(data: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": {"id": "01", "type": "custom.fuzz", "ts": "2024-01-01T00:00:00Z", "data": data},
        "space": {"id": "", "name": "web", "urls": ["http://127.0.0.1:1/"]},
        "actor": {"id": "u", "username": "u", "kind": "User"},
        "custom": custom,
    }


@fuzz(400)
@given(source=templates, data=json_objects, custom=json_objects)
@example(source="${{ range .event.data.l }}${{ range $.event.data.l }}x${{ end }}${{ end }}",
         data={"l": list(range(400))}, custom={})  # fmt: skip
@example(source="${{ json .event.data }}" * 3, data={"x": float("nan")}, custom={})
@example(source="${{ index .event.data.l 99999999999999999999 }}", data={"l": [1]}, custom={})
def test_templates_parse_or_refuse_and_render_or_fail(
    source: str, data: dict[str, Any], custom: dict[str, Any]
) -> None:
    problem = Template.check(source)
    if problem is not None:
        assert problem.strip()
        with pytest.raises(TemplateError):
            Template.parse(source)
        return
    template = Template.parse(source)
    try:
        out = template.render_context(context(data, custom))
    except TemplateError as exc:
        failure = exc.message
    else:
        assert len(out) <= MAX_OUTPUT_CHARS
        return
    assert failure.startswith("The template failed at line "), failure


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            "${{ range .event.data.l }}${{ range $.event.data.l }}${{ range $.event.data.l }}"
            "${{ end }}${{ end }}${{ end }}",
            f"range ran more than {MAX_RANGE_STEPS} times",
        ),
        ("${{ json .event.data }}" * 200, f"the rendered body is over {MAX_OUTPUT_CHARS}"),
        (
            "${{ range .event.data.l }}${{ if true }}" + "y" * 5000 + "${{ end }}${{ end }}",
            f"the rendered body is over {MAX_OUTPUT_CHARS}",
        ),
    ],
)
def test_a_template_bomb_fails_quickly(source: str, words: str) -> None:
    """Found in review: nested `range` over a list from the payload (or many copies of a big
    payload) rendered for minutes or into gigabytes, on the event loop."""
    data = {"l": list(range(5000)), "pad": "x" * 60000}
    started = time.perf_counter()
    with pytest.raises(TemplateError, match=words):
        Template.parse(source).render_context(context(data, {}))
    assert time.perf_counter() - started < 5.0  # a bound, not a benchmark: minutes before


@pytest.mark.anyio
async def test_a_template_bomb_fails_its_delivery_and_the_runtime_goes_on(
    project: Path, receiver: Receiver
) -> None:
    bomb = (
        "${{ range .event.data.l }}${{ range $.event.data.l }}${{ range $.event.data.l }}"
        "${{ end }}${{ end }}${{ end }}"
    )
    config = Config(delivery=DeliverySettings(attempts=1, backoff=(0.01,)))
    async with Runtime(project, config=config) as rt:
        await rt.add_sink(
            {
                "name": "bomb",
                "type": "webhook",
                "events": "custom.*",
                "url": receiver.url("/bomb"),
                "body_template": bomb,
            }
        )
        rec = recording("rec", "custom.*")
        await rt.add_sink(rec)
        report = await rt.emit_and_wait("x", {"l": list(range(1000))}, timeout=30)
        outcome = report.outcomes["bomb"]
        assert outcome.status is DeliveryStatus.FAILED
        assert f"range ran more than {MAX_RANGE_STEPS} times" in outcome.error
        assert report.outcomes["rec"].status is DeliveryStatus.DELIVERED
        assert receiver.requests == []
        after = await rt.emit_and_wait("y", {"l": [1]})
        assert after.outcomes["bomb"].status is DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1
