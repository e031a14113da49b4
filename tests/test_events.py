from __future__ import annotations

import json
import uuid

import pytest

from knot import EventError, Runtime
from knot._events import (
    CUSTOM_PREFIX,
    SYSTEM_EVENT_TYPES,
    as_custom_type,
    check_type,
    encode_payload,
    new_event_id,
    now_rfc3339,
)
from knot._jsontext import decode_json

pytestmark = pytest.mark.anyio


def test_ids_are_uuidv7_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_timestamps_are_rfc3339_utc() -> None:
    ts = now_rfc3339()
    assert ts.endswith("Z")
    assert "T" in ts


@pytest.mark.parametrize("system_type", sorted(SYSTEM_EVENT_TYPES))
def test_clients_cannot_forge_system_events(system_type: str) -> None:
    assert as_custom_type(system_type) == CUSTOM_PREFIX + system_type


def test_custom_prefix_is_not_doubled() -> None:
    assert as_custom_type("custom.myapp.x") == "custom.myapp.x"
    assert as_custom_type("myapp.x") == "custom.myapp.x"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("", "empty"),
        ("a..b", "not valid"),
        (".a", "not valid"),
        ("a.", "not valid"),
        ("a b", "not valid"),
        ("a/b", "not valid"),
        ("x" * 256, "255"),
        (42, "string"),
    ],
)
def test_bad_types_are_refused_with_a_reason(bad: object, words: str) -> None:
    assert check_type(bad) is not None
    with pytest.raises(EventError, match=words):
        as_custom_type(bad)


def test_type_that_overflows_once_prefixed_is_refused() -> None:
    with pytest.raises(EventError, match="prefixed"):
        as_custom_type("x" * 250)


@pytest.mark.parametrize(
    ("payload", "words"),
    [([1, 2], "an array"), ("s", "a string"), (3, "a number"), (True, "a boolean")],
)
def test_payload_must_be_an_object(payload: object, words: str) -> None:
    with pytest.raises(EventError, match=words):
        encode_payload(payload)


def test_payload_size_limit_counts_utf8_bytes() -> None:
    small = {"s": "é" * 30}
    data, encoded = encode_payload(small, max_bytes=100)
    assert json.loads(encoded) == data
    with pytest.raises(EventError, match="limit is 64 bytes"):
        encode_payload({"s": "é" * 40}, max_bytes=64)


def test_payload_must_be_json_encodable() -> None:
    with pytest.raises(EventError, match="JSON"):
        encode_payload({"x": float("nan")})
    with pytest.raises(EventError, match="JSON"):
        encode_payload({"x": object()})


async def test_emitted_event_carries_every_field(runtime: Runtime) -> None:
    event_id = await runtime.emit("myapp.deployed", {"version": "1.2"})
    event = await runtime.get_event(event_id)
    assert event is not None
    assert event.type == "custom.myapp.deployed"
    assert event.data == {"version": "1.2"}
    assert event.zone == "local"
    assert event.actor.kind.value == "User"
    assert event.depth == 0
    assert event.seq >= 1
    as_dict = event.to_dict()
    assert set(as_dict) >= {"id", "type", "data", "ts", "zone", "space", "actor", "owner"}


async def test_duplicate_ingress_of_an_id_is_ignored(runtime: Runtime) -> None:
    fixed = str(uuid.uuid4())
    first = await runtime.emit_and_wait("dup", {"n": 1}, id=fixed, timeout=1)
    second = await runtime.emit_and_wait("dup", {"n": 2}, id=fixed, timeout=1)
    assert not first.duplicate
    assert second.duplicate
    events = await runtime.events("custom.dup")
    assert [e.data for e in events] == [{"n": 1}]


def test_request_bodies_with_nan_are_not_json() -> None:
    with pytest.raises(EventError, match="NaN is not a JSON value"):
        decode_json(b'{"x": NaN}')
    assert decode_json(b'{"x": 1.5}') == {"x": 1.5}
