"""Every example of the documentation runs (README.md and docs/): an example that rots fails.

See tests/docblocks.py for the convention a page follows (which blocks run, and how a block
says it is a file, needs a runtime, or cannot run and why).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .docblocks import CHECKED, ROOT, RUN, Session, blocks, pages, problems


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_block_is_run_or_says_why_not() -> None:
    # A directive that is not understood, or a skip without a reason, would let an example
    # go untested without anyone deciding so.
    found = [p for page in pages() for block in blocks(page) for p in problems(block)]
    assert found == []


def test_the_convention_finds_blocks_and_their_directives(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- test: skip it needs a browser -->\n```sh\nfirefox\n```\n\n"
        "<!-- test: skip -->\n```python\nx\n```\n\n```console\n$ echo hi\nhi\n```\n"
    )
    found = blocks(page)
    assert [(b.language, b.directive, b.argument) for b in found] == [
        ("sh", "skip", "it needs a browser"),
        ("python", "skip", ""),
        ("console", "", ""),
    ]
    assert [p.split(": ", 1)[1] for b in found for p in problems(b)] == [
        "`test: skip` needs a reason"
    ]


def test_a_transcript_that_no_longer_matches_fails(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text("```console\n$ echo 1 2 3\n1 ... 3\n$ echo 4\n5\n```\n")
    (block,) = blocks(tmp_path / "page.md")
    with pytest.raises(AssertionError, match=r"`echo 4` printed\n4\n--- but the page shows\n5"):
        Session(tmp_path / "project").transcript(block, block.text)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", pages(), ids=_name)
def test_the_examples_of_the_page_run(page: Path, tmp_path: Path) -> None:
    runnable = [b for b in blocks(page) if b.language in RUN | CHECKED or b.directive]
    if not runnable:
        return  # a page without examples
    session = Session(tmp_path / "project")
    try:
        for block in runnable:
            session.run(block)
    finally:
        session.stop()


def test_the_notebook_page_names_the_magics_that_need_the_embedded_runtime() -> None:
    # "Every magic works the same either way", but %%knot sink and %%knot method save a file in
    # the embedded runtime's scripts folder; connected, they say where to save it instead.
    text = (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")
    claim = next(line for line in text.split(". ") if "either way" in line)
    assert "%%knot sink" in claim
    assert "%%knot method" in claim
