"""examples/sky: the Python-sink server and the client that raises by both encodings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sky"


def test_client_prints_the_directives_of_both_encodings(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "serve.py"), "--port", "0", "--project", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert found, first
        client = subprocess.run(
            [sys.executable, str(EXAMPLE / "client.py"), "--url", found.group(0), "Grace"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.kill()
        server.wait(10)
    assert client.returncode == 0, client.stdout + client.stderr
    lines = client.stdout.splitlines()
    assert lines[0] == "path encoding (GET): eid client-1, 1 directive(s)"
    assert lines[1] == '  hello_py: say {"text": "Hi Grace, from Python."}'
    assert lines[2] == "query encoding (POST, JSON body): eid client-2, 1 directive(s)"
    assert lines[3] == lines[1]
