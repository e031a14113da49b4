"""What the fuzz suites share: example budgets, and strategies for the inputs users send.

Budgets are small by default so the suite stays quick; `KNOT_FUZZ=deep make test` (or
`make fuzz`) multiplies every budget (profiles are registered in conftest.py). Strategies lean
towards the shapes the runtime reads (known field names, event types, patterns), so most
examples get past the first check and exercise the deeper ones.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "SAFE_COMMANDS",
    "bodies",
    "event_types",
    "fuzz",
    "json_objects",
    "json_values",
    "patterns",
    "safe_for_spaces",
    "texts",
]

BASE_EXAMPLES = 100  # max_examples of the "ci" profile; "deep" has more (conftest.py)


def fuzz(examples: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@settings` for a fuzz test: `examples` in the ci profile, scaled up in `deep`."""
    default = settings.default
    assert default is not None
    return settings(
        max_examples=max(1, examples * default.max_examples // BASE_EXAMPLES),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- text ------------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.ascii_letters + string.digits + "._-*/ ,", max_size=40),
    st.sampled_from(["", " ", "*", ".*", "none", "null", "\x00", "é", "😀", "a" * 300, "%", "%ff"]),
)
segment = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
event_types = st.one_of(
    st.lists(segment, min_size=1, max_size=4).map(".".join),
    texts,
    st.sampled_from(["custom.fuzz.x", "space.created", "custom.", "a" * 300, "a..b", ".a"]),
)
patterns = st.one_of(
    event_types,
    event_types.map(lambda t: t + ".*"),
    st.sampled_from(["*", "*.created", "space.*.x", "sp*", "a,,b", " , "]),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)


# -- spaces: never a command or a health check that does anything --------------------------

SAFE_COMMANDS = ["", "true", "exit 3", "sleep 0.2", "'", "$(", "\x00", "x" * 300, "kill -9 $$"]
SAFE_HEALTH = [
    "",
    "true",
    "exit 1",
    "http://127.0.0.1:1/",
    "http://example.com/",
    "http://[",
    "ftp://x",
    "'",
]


def safe_for_spaces(value: Any) -> Any:
    """A fuzzed body, with any space command or health check replaced by a harmless one.

    Random text never becomes a shell command here: a space's `cmd` and `health` run for real.
    """
    if not isinstance(value, dict):
        return value
    safe = dict(value)
    for key, choices in (("cmd", SAFE_COMMANDS), ("health", SAFE_HEALTH)):
        if key in safe:
            original = safe[key]
            safe[key] = choices[len(str(original)) % len(choices)]
    return safe


# -- request bodies ----------------------------------------------------------------------------

KNOWN_FIELDS = {
    "payload": json_values,
    "id": st.one_of(texts, st.uuids().map(str)),
    "owner": texts,
    "name": st.one_of(texts, segment),
    "allow": st.one_of(patterns, st.lists(patterns, max_size=3)),
    "deny": st.one_of(patterns, st.lists(patterns, max_size=3)),
    "eci": texts,
    "cmd": st.sampled_from(SAFE_COMMANDS),
    "health": st.sampled_from(SAFE_HEALTH),
    "interval": json_scalars,
    "urls": st.one_of(
        json_values, st.lists(st.one_of(texts, st.sampled_from(["http://[", "http://a/"])))
    ),
    "start": json_scalars,
    "template_id": texts,
    "startup_script_id": texts,
    "timeout": json_scalars,
    "threshold": json_scalars,
    "on_restart": st.one_of(json_values, st.sampled_from(["start", "stop"])),
    "events": st.one_of(patterns, st.lists(patterns, max_size=3)),
    "type": st.one_of(event_types, st.sampled_from(["webhook", "json-rpc", "script", "recording"])),
    "url": st.one_of(
        texts,
        st.sampled_from(
            ["http://[", "http://[::1", "http://127.0.0.1:1/x", "ftp://x", "http://a:99999/"]
        ),
    ),
    "headers": st.one_of(json_values, st.dictionaries(texts, texts, max_size=2)),
    "body_template": st.one_of(texts, st.sampled_from(["${{ json .event.data }}", "${{"])),
    "secret": json_scalars,
    "skip_tls_verify": json_scalars,
    "manage_global_sinks": json_scalars,
    "manage_users": json_scalars,
    "description": texts,
    "active": json_scalars,
    "_domain": texts,
    "_type": texts,
    "_name": texts,
    "_async": json_scalars,
    "_rids": st.one_of(texts, st.lists(texts, max_size=3)),
    "_timeout": st.one_of(json_scalars, st.sampled_from(["0.5", "-1", "nan", "inf"])),
    "_timestamp": st.one_of(
        texts, st.sampled_from(["2024-05-01T12:00:00Z", "2024-13-01T00:00:00Z"])
    ),
}
shaped_objects = st.fixed_dictionaries({}, optional=KNOWN_FIELDS).flatmap(
    lambda known: json_objects.map(lambda extra: {**extra, **known})
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.knot+json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
    "application/json; charset=latin-1",
    'x/y; q="',
]


def _encode(kind: str, value: Any) -> bytes:
    if kind == "json":
        return json.dumps(value, ensure_ascii=False).encode()
    if kind == "form":
        items = value.items() if isinstance(value, dict) else []
        return urlencode(
            [(str(k), json.dumps(v) if not isinstance(v, str) else v) for k, v in items]
        ).encode()
    return b""


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes | None, str | None]:
    """A request body and its Content-Type (None: no body, or no header)."""
    kind = draw(st.sampled_from(["none", "json", "json", "form", "raw", "text"]))
    content_type = draw(st.none() | st.sampled_from(CONTENT_TYPES))
    if kind == "none":
        return None, content_type
    if kind == "raw":
        return draw(st.binary(max_size=200)), content_type
    if kind == "text":
        return draw(texts).encode("utf-8", "surrogatepass"), content_type
    value = draw(st.one_of(shaped_objects, shaped_objects, json_values).map(safe_for_spaces))
    return _encode(kind, value), content_type


query_keys = (
    st.sampled_from(
        [
            "n",
            "pattern",
            "sink",
            "_domain",
            "_type",
            "_name",
            "_async",
            "_rids",
            "_timeout",
            "_timestamp",
            "owner",
            "x",
        ]
    )
    | texts
)
queries = st.lists(st.tuples(query_keys, texts), max_size=4).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
)
