"""`http_allow` entries, address classes, `[secrets]` and the settings of scripts that reach out:
parsed, matched, and refused with sentences that name the setting (and never a secret's value)."""

from __future__ import annotations

import json

import pytest

from knot._allowlist import ANY_PORT, AllowList, address_problem, parse_entry
from knot._config import parse_config
from knot._secrets import Redactor, SecretSource


@pytest.mark.parametrize(
    ("text", "host", "wildcard", "port"),
    [
        ("hooks.slack.com", "hooks.slack.com", False, None),
        ("HOOKS.Slack.com.", "hooks.slack.com", False, None),
        ("127.0.0.1:8080", "127.0.0.1", False, 8080),
        ("api.example.com:*", "api.example.com", False, ANY_PORT),
        ("*.example.com", "example.com", True, None),
        ("*", "", True, None),
        ("[::1]:8080", "::1", False, 8080),
        ("::1", "::1", False, None),
        ("[0:0:0:0:0:0:0:1]", "::1", False, None),
        ("münchen.de", "xn--mnchen-3ya.de", False, None),
    ],
)
def test_entries_parse_to_a_normal_form(
    text: str, host: str, wildcard: bool, port: int | None
) -> None:
    entry = parse_entry(text)
    assert (entry.host, entry.wildcard, entry.port) == (host, wildcard, port)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("http://example.com", "not a host"),
        ("example.com/path", "not a host"),
        ("user@example.com", "not a host"),
        ("example.com:0", "port"),
        ("example.com:70000", "port"),
        ("example.com:", "port"),
        ("ex*ample.com", "leading '*.'"),
        ("*.10.0.0.1", "wildcard on an IP address"),
        ("[::1", "does not close"),
        ("bad_host-.com", "not a valid host name"),
    ],
)
def test_bad_entries_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r".") as refused:
        parse_entry(text)
    assert problem in str(refused.value)


def test_matching_ports_schemes_and_wildcards() -> None:
    allow = AllowList.parse(["hooks.slack.com", "127.0.0.1:8080", "*.example.com", "svc:*"])
    assert allow.match("hooks.slack.com", 443, "https") is not None
    assert allow.match("hooks.slack.com", 80, "http") is not None
    assert allow.match("hooks.slack.com", 8443, "https") is None  # no port: the default only
    assert allow.match("hooks.slack.com", 80, "https") is None
    assert allow.match("127.0.0.1", 8080, "http") is not None
    assert allow.match("127.0.0.1", 8081, "http") is None
    assert allow.match("a.example.com", 443, "https") is not None
    assert allow.match("a.b.example.com", 443, "https") is not None
    assert allow.match("example.com", 443, "https") is None  # a wildcard is for subdomains
    assert allow.match("evilexample.com", 443, "https") is None
    assert allow.match("svc", 1234, "http") is not None
    assert AllowList().match("anything", 80, "http") is None


def test_an_exact_entry_wins_over_a_wildcard() -> None:
    allow = AllowList.parse(["*.internal", "db.internal:5984"])
    entry = allow.match("db.internal", 5984, "http")
    assert entry is not None
    assert not entry.wildcard


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not publicly routable"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert kind in problem


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


def test_settings_parse_http_allow_limits_and_per_script_tables() -> None:
    result = parse_config(
        """
[scripts]
http_allow = ["hooks.slack.com", "127.0.0.1:9000"]
http_max_bytes = 2048
http_max_requests = 7
kv_max_keys = 50
kv_max_value_bytes = 1000

[scripts.sinks.notify]
http_allow = ["api.example.com"]

[scripts.methods.deploys]
http_allow = ["*.deploy.example.com"]

[methods]
http_max_requests = 3
"""
    )
    config = result.raise_for_errors()
    scripts = config.scripts
    assert [e.text for e in scripts.http_allow.entries] == ["hooks.slack.com", "127.0.0.1:9000"]
    assert (scripts.http_max_bytes, scripts.http_max_requests) == (2048, 7)
    assert (scripts.kv_max_keys, scripts.kv_max_value_bytes) == (50, 1000)
    assert config.methods.http_max_requests == 3
    notify = scripts.allow_list("sinks", "notify")
    assert notify.match("api.example.com", 443, "https") is not None
    assert notify.match("hooks.slack.com", 443, "https") is not None
    assert "scripts.sinks.notify.http_allow" in notify.setting
    other = scripts.allow_list("sinks", "other")
    assert other.match("api.example.com", 443, "https") is None
    assert other.setting == "scripts.http_allow"
    assert scripts.allow_list("methods", "deploys").match("a.deploy.example.com", 443, "https")
    assert (
        scripts.allow_list("sinks", "deploys").match("a.deploy.example.com", 443, "https") is None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[scripts]\nhttp_allow = "x.com"\n',
            "knot.toml:2: scripts.http_allow must be a list of hosts",
        ),
        (
            '[scripts]\nhttp_allow = ["http://x.com"]\n',
            "knot.toml:2: scripts.http_allow must be a list of hosts: 'http://x.com' is not a host",
        ),
        (
            '[scripts.sinks.n]\nhttp_allow = ["a b"]\n',
            "knot.toml:2: scripts.sinks.n.http_allow must be a list of hosts",
        ),
        ("[scripts]\nsinks = 3\n", "scripts.sinks must be a table of tables"),
        ("[scripts]\nkv_max_keys = -1\n", "scripts.kv_max_keys must be an integer >= 0"),
    ],
)
def test_bad_settings_name_the_line_and_key(text: str, expected: str) -> None:
    result = parse_config(text)
    assert not result.ok
    assert any(expected in error for error in result.errors), result.errors


def test_secrets_parse_and_their_errors_never_show_a_value() -> None:
    config = parse_config(
        '[secrets]\nTOKEN = "t0ken-value"\nKEY = { file = "keys/deploy" }\n'
    ).raise_for_errors()
    assert [s.name for s in config.secrets.sources] == ["TOKEN", "KEY"]
    assert "t0ken-value" not in repr(config)
    assert "t0ken-value" not in repr(config.secrets.sources[0])
    bad = parse_config(
        '[secrets]\nOK = "fine"\nNUM = 12345678\nEMPTY = ""\n"bad name" = "s3cr3t-xyz"\n'
        'FILE = { path = "x" }\n'
    )
    assert not bad.ok
    text = " ".join(bad.errors)
    assert "knot.toml:3: secrets.NUM must be a string" in text
    assert "secrets.EMPTY is empty" in text
    assert "is not a secret name" in text
    assert "secrets.FILE must be a string" in text
    for value in ("12345678", "s3cr3t-xyz"):
        assert value not in text


def test_the_redactor_hides_values_in_text_and_messages() -> None:
    redactor = Redactor({"LONG": "abc-secret-123", "SHORT": "secret", "Q": 'a"b\\c\n'})
    assert redactor.text("x abc-secret-123 y secret") == "x [secret:LONG] y [secret:SHORT]"
    line = b'{"output":["say a\\"b\\\\c\\n and abc-secret-123"]}'
    assert redactor.suspects(line)
    assert redactor.message(json.loads(line)) == {"output": ["say [secret:Q] and [secret:LONG]"]}
    assert redactor.message({"index": "secret", "payload": {"secret": 1}}) == {
        "index": "secret",  # the protocol's own members are left alone
        "payload": {"[secret:SHORT]": 1},
    }
    assert not redactor.suspects(b'{"output":["nothing here"]}')
    assert redactor.value({"k-secret": ["secret"], "n": 1}) == {
        "k-[secret:SHORT]": ["[secret:SHORT]"],
        "n": 1,
    }
    assert not Redactor()
    assert repr(SecretSource("X", value="v")) == "SecretSource('X', value=********)"


def test_short_secrets_leave_escapes_numbers_and_the_protocol_alone() -> None:
    # A secret "n" matched in the raw line would cut the escape \n in half; "1" would
    # rewrite ids; "result" the message's own keys.
    redactor = Redactor({"N": "n", "ONE": "1", "R": "result"})
    message = {"jsonrpc": "2.0", "id": "w1", "result": {"output": ["line\nnext 1", "result"]}}
    line = json.dumps(message).encode()
    assert redactor.suspects(line)
    assert {k: redactor.message(v) for k, v in json.loads(line).items()} == {
        "jsonrpc": "2.0",
        "id": "w1",
        "result": {"output": ["li[secret:N]e\n[secret:N]ext [secret:ONE]", "[secret:R]"]},
    }


def test_the_start_of_a_secret_cut_short_by_the_worker_is_hidden_too() -> None:
    redactor = Redactor({"T": "abcdefgh-secret"})
    truncated = {"output": ["x abcdef", "[output truncated at 10 bytes]"]}
    assert redactor.message(truncated) == {
        "output": ["x [secret:T]", "[output truncated at 10 bytes]"]
    }
    assert redactor.message({"message": "bad abcdefgh-se..."}) == {"message": "bad [secret:T]..."}
    assert redactor.message({"message": "fine..."}) == {"message": "fine..."}
    assert redactor.message({"message": "abc..."}) == {"message": "abc..."}  # says nothing
