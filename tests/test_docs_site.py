"""The documentation site builds with warnings as errors, as `make docs` builds it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_site_builds_strictly_with_the_generated_references(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's banner about its successor
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr
    config = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    for key in ("queue_size", "http_allow", "token_sha256", "skip_tls_verify"):
        assert f"<code>{key}</code>" in config, key
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "knot sinks add" in cli
    http = (site / "reference" / "http" / "index.html").read_text(encoding="utf-8")
    assert "/api/events/{event_id}/trace" in http
    assert "<!-- generated:" not in config + cli + http


def test_every_link_of_the_readme_leads_to_a_file() -> None:
    # README.md is read on its own (not built with the site), so mkdocs checks none of its links.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert len(targets) > 10
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert missing == []
