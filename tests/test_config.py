from __future__ import annotations

from pathlib import Path

import pytest

from knot import Config, ConfigError, load_config, parse_config


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    result = load_config(tmp_path)
    assert result.ok
    assert result.config == Config()
    assert result.config.delivery.queue_size == 100
    assert result.config.delivery.backoff == (5.0, 15.0)
    assert result.config.server.port == 12201


def test_full_example_from_the_design() -> None:
    text = """
zone = "local"

[server]
host = "127.0.0.1"
port = 12201

[store]
path = ".knot/knot.db"

[delivery]
queue_size = 100
attempts = 3
backoff = [5.0, 15.0]
max_depth = 8

[scripts]
dir = "scripts"
timeout = 5.0
memory_mb = 256

[[sinks]]
name = "deploy_hook"
type = "webhook"
events = "custom.myapp.*, space.*"
url = "http://127.0.0.1:9000/hook"
headers = { "X-Team" = "infra" }
owner = ""
"""
    result = parse_config(text)
    assert result.errors == ()
    config = result.raise_for_errors()
    (sink,) = config.sinks
    assert sink.name == "deploy_hook"
    assert [p.text for p in sink.events] == ["custom.myapp.*", "space.*"]
    assert sink.options["url"] == "http://127.0.0.1:9000/hook"
    assert sink.options["headers"] == {"X-Team": "infra"}


def test_errors_name_the_line_and_key() -> None:
    text = "zone = 'z'\n\n[delivery]\nattempts = 0\nqueue_size = 'lots'\n"
    result = parse_config(text, path="knot.toml")
    assert not result.ok
    assert any(e.startswith("knot.toml:4: delivery.attempts") for e in result.errors)
    assert any(e.startswith("knot.toml:5: delivery.queue_size") for e in result.errors)
    with pytest.raises(ConfigError) as info:
        result.raise_for_errors()
    assert len(info.value.problems) == 2


def test_toml_syntax_error_names_the_line() -> None:
    result = parse_config("[delivery\nattempts = 3\n", path="knot.toml")
    assert not result.ok
    assert "line 1" in result.errors[0]


def test_unknown_keys_are_warnings_not_errors() -> None:
    result = parse_config("[delivery]\nattempts = 2\nretries = 4\n", path="knot.toml")
    assert result.ok
    assert result.warnings == (
        "knot.toml:3: delivery.retries is not a known setting and is ignored.",
    )


def test_bad_sink_table_names_its_line() -> None:
    text = (
        '[[sinks]]\nname = "ok_one"\ntype = "recording"\nevents = "*"\n\n'
        '[[sinks]]\nname = "x"\ntype = "recording"\nevents = "*.bad"\n'
    )
    result = parse_config(text, path="knot.toml")
    assert not result.ok
    (error,) = result.errors
    assert error.startswith("knot.toml:6:")
    assert "'x'" in error
    assert "'*.bad'" in error


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "1.5", '"80"'])
def test_server_port_must_be_a_port_number(port: str) -> None:
    result = parse_config(f"[server]\nport = {port}\n", path="knot.toml")
    (error,) = result.errors
    assert error.startswith(
        "knot.toml:2: server.port must be a port number from 0 to 65535 (0: any free port), not "
    )
    assert parse_config("[server]\nport = 65535\n").ok


def test_duplicate_sink_names_are_refused() -> None:
    table = '[[sinks]]\nname = "aa"\ntype = "recording"\nevents = "*"\n'
    text = table + table
    result = parse_config(text)
    assert any("defined twice" in e for e in result.errors)


def test_backoff_accepts_one_number() -> None:
    config = parse_config("[delivery]\nbackoff = 0.01\n").raise_for_errors()
    assert config.delivery.backoff == (0.01,)


def test_api_port_env_overrides_server_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNOT_API_PORT", "12345")
    assert Config().with_env().server.port == 12345
    for wrong in (
        "not-a-port",
        "0",
        "70000",
        "-1",
        "\uff11\uff12",
    ):  # fullwidth digits: int() takes them
        monkeypatch.setenv("KNOT_API_PORT", wrong)
        with pytest.raises(ConfigError, match=r"KNOT_API_PORT is .*, not a port number"):
            Config().with_env()
