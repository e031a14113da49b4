"""What README.md shows must be what the shipped scripts do (a real `knot serve`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from .helpers import KnotServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_first_sky_example_answers_as_shown_with_the_shipped_scripts(
    tmp_path: Path, server_factory: type[KnotServer]
) -> None:
    # The example used myapp/hello, which no shipped script listens to: the answer was
    # {"directives": []}, not the `say` directive the README showed.
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    sky = section("Sky Event API")
    commands, shown = blocks(sky, "sh")[0], json.loads(blocks(sky, "json")[0])
    (expected,) = shown["directives"]
    server = server_factory(tmp_path, quiet=True)
    with server.client() as http:
        assert http.post("/api/channels", json={"eci": "demo"}).status_code == 201
        get = re.search(r"curl '127\.0\.0\.1:12201(/sky/event/[^']+)'", commands)
        post = re.search(
            r"curl -X POST '127\.0\.0\.1:12201(/sky/event/[^']+)'.*?-d '([^']+)'", commands, re.S
        )
        assert get is not None
        assert post is not None
        answers = [http.get(get.group(1)), http.post(post.group(1), content=post.group(2))]
    for answer, eid in zip(answers, ("e1", "e2"), strict=True):
        assert answer.status_code == 200, answer.text
        (directive,) = answer.json()["directives"]
        assert directive["name"] == expected["name"]
        assert directive["options"] == expected["options"]
        assert directive["meta"] == {**expected["meta"], "eid": eid}


def test_the_notebook_section_names_the_magics_that_need_the_embedded_runtime() -> None:
    # "Every magic works the same either way", but %%knot sink and %%knot method save a file in
    # the embedded runtime's scripts folder; connected, they say where to save it instead.
    notebooks = section("Notebooks")
    claim = next(line for line in notebooks.split(". ") if "either way" in line)
    assert "%%knot sink" in claim
    assert "%%knot method" in claim
