"""examples/sky end to end: the greeter script sink under `knot serve`, the Python sink of
serve.py, and the client that raises by both encodings and prints the directives."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .helpers import KnotServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sky"


def run_client(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """client.py with no KNOT_* variables but those in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KNOT_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "client.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def client(url: str, name: str) -> list[str]:
    done = run_client("--url", url, name)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def copy_example(tmp_path: Path) -> Path:
    project = tmp_path / "sky"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".knot", "__pycache__"))
    return project


def test_script_sink_answers_both_encodings(tmp_path: Path) -> None:
    server = KnotServer(copy_example(tmp_path), quiet=True)
    try:
        with server.client() as http:
            assert http.post("/api/channels", json={"eci": "demo"}).status_code == 201
        lines = client(server.url, "Ada")
    finally:
        server.kill()
    say = '  greeter: say {"text": "Hello, Ada!", "event": "custom.greet.hello"}'
    assert lines == [
        "path encoding (GET): eid client-1, 1 directive(s)",
        say,
        "query encoding (POST, JSON body): eid client-2, 1 directive(s)",
        say,
    ]


def test_the_client_finds_the_runtime_and_its_token_in_the_environment(tmp_path: Path) -> None:
    # With users, knowing the eci is not enough: the client sends KNOT_TOKEN, like the CLI.
    project = copy_example(tmp_path)
    token = "example-token-0123456789abcdef"
    digest = hashlib.sha256(token.encode()).hexdigest()
    (project / "knot.toml").write_text(f'[users.ada]\ntoken_sha256 = "{digest}"\n')
    server = KnotServer(project, quiet=True)
    try:
        with server.client() as http:
            made = http.post(
                "/api/channels", json={"eci": "demo"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert made.status_code == 201, made.text
            assert made.json()["owner"] == "ada"
        port = str(server.port)
        refused = run_client("Ada", env={"KNOT_API_PORT": port})
        done = run_client("Ada", env={"KNOT_API_PORT": port, "KNOT_TOKEN": token})
    finally:
        server.kill()
    assert refused.returncode == 1
    assert refused.stdout.startswith("path encoding (GET): HTTP 401: "), refused.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    say = '  greeter: say {"text": "Hello, Ada!", "event": "custom.greet.hello"}'
    assert done.stdout.splitlines() == [
        "path encoding (GET): eid client-1, 1 directive(s)",
        say,
        "query encoding (POST, JSON body): eid client-2, 1 directive(s)",
        say,
    ]


def test_serve_py_adds_a_python_sink_that_answers_too(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    server = subprocess.Popen(
        [sys.executable, str(project / "serve.py"), "--port", "0", "--project", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = None
        for line in server.stdout:
            found = re.search(r"Sky example on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        assert found, "serve.py did not start"
        lines = client(found.group(1), "Grace")
    finally:
        server.kill()
        server.wait(10)
    assert lines[0] == "path encoding (GET): eid client-1, 2 directive(s)"
    assert lines[1:3] == [
        '  greeter: say {"text": "Hello, Grace!", "event": "custom.greet.hello"}',
        '  hello_py: say {"text": "Hi Grace, from Python."}',
    ]
    assert lines[3] == "query encoding (POST, JSON body): eid client-2, 2 directive(s)"
    assert lines[4:6] == lines[1:3]
