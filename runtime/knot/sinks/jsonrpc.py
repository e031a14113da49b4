"""JSON-RPC sinks: named templates that format events as the params of subscribed methods.

A json-rpc sink (`type = "json-rpc"` in knot.toml, or through the API) has a name, `events`
patterns and a `body_template`; it has no destination and is never routed to by itself. A
method script names it in `event_sinks=[...]`: for each event, the first named json-rpc sink
whose patterns (and owner) match renders the method's params; when none does, the default
template does. `knot sinks test NAME` shows what it renders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .._events import Event, new_event_id, now_rfc3339
from .._exceptions import DeliveryFailed, TemplateError
from .._jsontext import loads_json
from .._sinkspec import SinkSpec
from ..templates.syntax import DEFAULT_TEMPLATE, Template
from .base import DeliveryResult, Sink

__all__ = ["JsonRpcSink", "default_params"]

OPTIONS: Mapping[str, str] = {
    "body_template": "The params of each call, in Knot's template syntax (a JSON object or "
    "array); the default template when absent.",
}


def default_params(event: Event) -> str:
    """The default template's rendering, built directly (it is on every subscribed call)."""
    data = event.data_json or json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return (
        f'{{"event_id":{json.dumps(event.id)},"event_type":{json.dumps(event.type)},'
        f'"event_ts":{json.dumps(event.ts)},"data":{data}}}'
    )


def _sample_problems(name: str, template: str) -> list[str]:
    """Render the event `knot sinks test` sends: a string, a number or a boolean is never
    valid params, whatever the event (null, or text that is not JSON, may come from data the
    sample lacks, so those wait for real events)."""
    sample = Event(new_event_id(), "custom.knot.test", {"test": True, "sink": name}, now_rfc3339())
    try:
        value: Any = loads_json(Template.parse(template).render(sample))
    except (TemplateError, ValueError):
        return []
    if value is None or isinstance(value, dict | list):
        return []
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return [
        f"The body_template renders {type(value).__name__} params ({shown} for a test event); "
        "JSON-RPC params are an object or an array."
    ]


class JsonRpcSink(Sink):
    type: ClassVar[str] = "json-rpc"
    routed: ClassVar[bool] = False  # a formatter for methods, not a destination
    options: ClassVar[Mapping[str, str]] = OPTIONS

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.template = Template.parse(str(spec.options.get("body_template") or DEFAULT_TEMPLATE))

    @classmethod
    def validate(cls, spec: SinkSpec) -> list[str]:
        opts = spec.options
        problems: list[str] = []
        for key in opts:
            if key in ("url", "secret", "headers"):
                problems.append(
                    f"json-rpc sinks have no destination ({key!r}): they format events for "
                    "method scripts that name them in event_sinks=[...]."
                )
            elif key not in OPTIONS:
                problems.append(
                    f"The option {key!r} is not known; json-rpc sinks take body_template."
                )
        template = opts.get("body_template")
        if template not in (None, ""):
            problem = Template.check(template)
            if problem is not None:
                problems.append(f"The body_template is not valid: {problem}")
            else:
                problems.extend(_sample_problems(spec.name, str(template)))
        return problems

    def accepts(self, event: Event) -> bool:
        """Whether this sink formats `event` (its patterns match; owner as for routing)."""
        spec = self.spec
        if not spec.active or (spec.owner and spec.owner != event.owner):
            return False
        return any(p.matches(event.type) for p in spec.events)

    def params(self, event: Event) -> str:
        """The method params for `event`: compact JSON of an object or array."""
        try:
            text = self.template.render(event)
        except TemplateError as exc:
            raise DeliveryFailed(
                f"The json-rpc sink {self.name} could not format event {event.id}: {exc.message}",
                sink=self.name,
                event=event.id,
            ) from None
        try:
            value: Any = loads_json(text)
        except ValueError as exc:
            raise DeliveryFailed(
                f"The json-rpc sink {self.name} rendered params that are not JSON ({exc}): "
                f"{text[:200]}",
                sink=self.name,
                event=event.id,
            ) from None
        if not isinstance(value, dict | list):
            raise DeliveryFailed(
                f"The json-rpc sink {self.name} rendered {type(value).__name__} params; JSON-RPC "
                "params are an object or an array.",
                sink=self.name,
                event=event.id,
            )
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    async def deliver(self, event: Event) -> DeliveryResult | None:
        """Never routed; a test delivery (`knot sinks test`) shows the params it renders."""
        return DeliveryResult(detail=self.params(event))
