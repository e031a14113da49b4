"""`knot serve`'s log keeps untrusted text on its own line: no request can forge a log record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from knot._logtext import loggable

from .helpers import KnotServer

TOKEN = "log-token-0123456789abcdef"
FORGED = "12:00:00.000 WARNING:  FORGED"
SCRIPT = """# events: custom.loud.*
import knot.event

raise ValueError(knot.event.get_string("msg"))
"""


def forged_lines(server: KnotServer) -> list[str]:
    """Lines that begin with the forged record (a real record starts with its own time)."""
    return [line for line in server.lines if line.startswith(FORGED)]


def test_loggable_escapes_what_could_start_a_line() -> None:
    assert loggable("/api/x\n12:00 INFO: y\r\x1b[2K") == "/api/x\\n12:00 INFO: y\\r\\x1b[2K"
    assert loggable("/sky/event/é/a b\tc") == "/sky/event/é/a b\tc"


def test_a_request_path_or_an_error_cannot_forge_a_log_line(tmp_path: Path) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    (tmp_path / "knot.toml").write_text(
        f'[delivery]\nattempts = 1\nbackoff = 0.01\n[users.ops]\ntoken_sha256 = "{digest}"\n'
    )
    (tmp_path / "scripts" / "sinks").mkdir(parents=True)
    (tmp_path / "scripts" / "sinks" / "loud.py").write_text(SCRIPT)
    server = KnotServer(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            # %0A decodes to a newline in the path the 401 line names.
            for path in ("/api/events%0A" + FORGED, "/sky/event/e%0D%0A" + FORGED + "/a/b"):
                assert http.get(path.replace(" ", "%20")).status_code == 401
            # A script's exception (here: event data) is quoted in the delivery-failure line.
            r = http.post(
                "/event",
                json={"type": "loud.x", "payload": {"msg": "boom\n" + FORGED}},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert r.status_code == 202
        server.wait_for_line(r"loud ✗ custom\.loud\.x")
        server.wait_for_line(r"401 GET /sky/event/")
    finally:
        server.terminate()
    assert forged_lines(server) == [], server.output()
    escaped = [line for line in server.lines if "\\n" + FORGED in line]
    assert len(escaped) == 3, server.output()  # both paths and the error, each on its line
    assert any("401 GET /api/events\\n" in line for line in escaped)
    assert any("401 GET /sky/event/e\\r\\n" in line for line in escaped)
    assert any("raised ValueError: boom\\n" in line for line in escaped)


def test_a_method_scripts_top_level_print_reaches_the_log_escaped(tmp_path: Path) -> None:
    # Output is split into lines before it is logged; what is left to escape is a terminal
    # escape sequence (here: erase the line), which would act on the terminal showing the log.
    (tmp_path / "scripts" / "methods").mkdir(parents=True)
    (tmp_path / "scripts" / "methods" / "chatty.py").write_text(
        "import knot.methods\n\nprint('hello \\x1b[2K bye')\n\n\n"
        "@knot.methods.method\ndef ping(params):\n    return 'pong'\n"
    )
    server = KnotServer(tmp_path)
    try:
        line = server.wait_for_line(r"chatty: hello")
    finally:
        server.terminate()
    assert "\x1b" not in server.output()
    assert line.rstrip().endswith("chatty: hello \\x1b[2K bye")
