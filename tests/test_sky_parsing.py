"""The pure parts of the Sky Event API: eid cleaning, ESL paths, bodies, reserved keys, channel
policies and who may raise on a channel (pico-engine's own cases where it has them)."""

from __future__ import annotations

from typing import Any

import pytest

from knot import Actor, Channel, ChannelPolicy, EventError, PatternError
from knot.server.auth import LOCAL_CALLER, Caller
from knot.server.sky import may_raise_on
from knot.sky.esl import (
    BodyKind,
    EslPath,
    body_kind,
    clean_eid,
    parse_esl_path,
    parse_sky_request,
    parse_timestamp,
    read_attributes,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (" foo ", "foo"),
        ("   3 3 3 3   ", "3 3 3 3"),
        ("", ""),
        ("  ", ""),
        ("null", ""),
        ("none", ""),
        ("NULL", ""),
        ("123", "123"),
    ],
)
def test_eid_cleaning_follows_pico_engine(raw: str, clean: str) -> None:
    assert clean_eid(raw) == clean


def test_overlong_eid_is_refused() -> None:
    with pytest.raises(EventError, match="at most 255"):
        clean_eid("x" * 256)


@pytest.mark.parametrize(
    ("rest", "parts"),
    [
        ("eci", ("eci", "", "", "")),
        ("eci/e", ("eci", "e", "", "")),
        ("%20eci%20/a%2Fb/d/t", ("eci", "a/b", "d", "t")),
        ("eci//d/t", ("eci", "", "d", "t")),
    ],
)
def test_esl_path_parts_are_decoded_after_splitting(rest: str, parts: tuple[str, ...]) -> None:
    path = parse_esl_path(rest)
    assert path is not None
    assert (path.eci, path.eid, path.domain, path.type) == parts


def test_esl_path_with_too_many_parts_is_none() -> None:
    assert parse_esl_path("eci/e/d/t/extra") is None


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", BodyKind.JSON),
        ("Application/JSON; charset=utf-8", BodyKind.JSON),
        ("application/vnd.x+json", BodyKind.JSON),
        ("application/cloudevents+json", BodyKind.JSON),
        (None, BodyKind.JSON),
        ("application/x-www-form-urlencoded", BodyKind.FORM),
        ("text/plain", BodyKind.UNSUPPORTED),
        ("multipart/form-data; boundary=x", BodyKind.UNSUPPORTED),
    ],
)
def test_body_kind_by_media_type(content_type: str | None, kind: BodyKind) -> None:
    assert body_kind(content_type, b"{}") is kind
    assert body_kind(content_type, b" \n") is BodyKind.NONE


def test_form_percent_escapes_must_be_utf8() -> None:
    with pytest.raises(EventError, match="not UTF-8"):
        read_attributes("", b"a=%ff", BodyKind.FORM)


def request(path: EslPath, **attrs: Any) -> Any:
    return parse_sky_request(path, attrs)


def test_reserved_values_in_json_may_be_typed() -> None:
    sky = request(
        EslPath("eci", "e", "d", "t"), _async=True, _rids=["a", " b ", "a", ""], _timeout=2
    )
    assert (sky.is_async, sky.rids, sky.timeout) == (True, ("a", "b"), 2.0)
    assert request(EslPath("eci", "e", "d", "t"), _rids=" ; ").rids is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("_domain", 5), ("_type", ["t"]), ("_async", 2), ("_rids", 7), ("_timeout", "inf")],
)
def test_reserved_values_of_the_wrong_kind_are_refused(key: str, value: Any) -> None:
    with pytest.raises(EventError, match=key):
        request(EslPath("eci", "e", "d", "t"), **{key: value})


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000000Z"),
        ("2024-05-01t12:00:00z", "2024-05-01T12:00:00.000000Z"),
        ("2024-05-01 09:30:00.25-02:30", "2024-05-01T12:00:00.250000Z"),
        ("2024-05-01T12:00:00.123456789+00:00", "2024-05-01T12:00:00.123456Z"),
    ],
)
def test_rfc3339_timestamps_become_utc(raw: str, utc: str) -> None:
    assert parse_timestamp(raw) == utc


@pytest.mark.parametrize(
    "bad", ["2024-05-01T12:00:00", "2024-05-01", "20240501T120000Z", "2024-02-30T00:00:00Z", 5]
)
def test_non_rfc3339_timestamps_are_refused(bad: object) -> None:
    with pytest.raises(EventError, match="_timestamp"):
        parse_timestamp(bad)


def refusal(policy: ChannelPolicy, domain: str, name: str) -> str | None:
    return policy.refusal(f"custom.{domain}.{name}")


def test_channel_policies_follow_pico_frameworks_cases() -> None:
    # pico-framework's assertEventPolicy cases, with our patterns over custom.<domain>.<type>.
    assert refusal(ChannelPolicy.parse(), "foo", "bar") is None  # default: everything
    only_foo = ChannelPolicy.parse(allow=["custom.foo.*"])
    assert refusal(only_foo, "foo", "bar") is None
    assert "allows only" in str(refusal(only_foo, "bar", "foo"))
    foo_but_bar = ChannelPolicy.parse(allow="custom.foo.*", deny="custom.foo.bar")
    assert refusal(foo_but_bar, "foo", "ba") is None
    assert "denies" in str(refusal(foo_but_bar, "foo", "bar"))
    assert refusal(foo_but_bar, "foo", "barr") is None
    no_admin = ChannelPolicy.parse(deny=["custom.admin.*"])
    assert refusal(no_admin, "foo", "bar") is None
    assert "denies" in str(refusal(no_admin, "admin", "bar"))


def test_bad_policy_patterns_are_refused_by_name() -> None:
    with pytest.raises(PatternError, match=r"\*\.bar"):
        ChannelPolicy.parse(deny=["*.bar"])


def user(name: str, *, manage_global: bool = False) -> Caller:
    return Caller(Actor(name, name), owner=name, manage_global_sinks=manage_global)


def test_who_may_raise_on_a_channel() -> None:
    alices = Channel("e1", owner="alice")
    global_channel = Channel("e2")
    assert may_raise_on(LOCAL_CALLER, alices) is None
    assert may_raise_on(user("alice"), alices) is None
    assert may_raise_on(user("admin", manage_global=True), alices) is None
    assert "belongs to user alice" in str(may_raise_on(user("bob"), alices))
    assert may_raise_on(LOCAL_CALLER, global_channel) is None
    assert "global channel" in str(may_raise_on(user("bob"), global_channel))
