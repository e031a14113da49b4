"""The pure half of hot reload: which notifications matter, and what to do about them."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from knot.scripts.reload import Action, Seen, Step, checks, classify, is_script_name

PROJECT = Path("/p")
SCRIPTS = PROJECT / "scripts"
SINKS = SCRIPTS / "sinks"


def found(*changes: tuple[Change, str], config: bool = True) -> tuple[dict[Path, str], set[str]]:
    result = checks(
        changes, project=PROJECT, scripts=SCRIPTS, kinds=("sinks", "methods"), config=config
    )
    return dict(result.files), set(result.rescan)


@pytest.mark.parametrize(
    "name",
    ["deploy.py", "a1.py", "_private.py"],
)
def test_script_names(name: str) -> None:
    assert is_script_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        ".hidden.py",
        ".deploy.py.swp",
        "deploy.py~",
        "4913",
        ".#deploy.py",
        "#deploy.py#",
        "deploy.py.tmp",
        "deploy.py___jb_tmp___",
        "deploy.pyc",
        ".py",
        "deploy.PY.swx",
    ],
)
def test_editor_leftovers_and_other_files_are_not_scripts(name: str) -> None:
    assert not is_script_name(name)


def test_checks_keep_scripts_of_known_folders_and_knot_toml() -> None:
    files, rescan = found(
        (Change.modified, f"{SINKS}/deploy.py"),
        (Change.added, f"{SCRIPTS}/methods/tools.py"),
        (Change.added, f"{SINKS}/4913"),
        (Change.deleted, f"{SINKS}/deploy.py~"),
        (Change.added, f"{SINKS}/__pycache__/deploy.cpython-311.pyc"),
        (Change.added, f"{SINKS}/nested/deep.py"),
        (Change.added, f"{SCRIPTS}/other/x.py"),
        (Change.modified, f"{PROJECT}/knot.toml"),
        (Change.modified, f"{PROJECT}/README.md"),
    )
    assert files == {
        SINKS / "deploy.py": "sinks",
        SCRIPTS / "methods" / "tools.py": "methods",
        PROJECT / "knot.toml": "config",
    }
    assert rescan == set()


def test_knot_toml_is_ignored_when_settings_do_not_come_from_it() -> None:
    files, _ = found((Change.modified, f"{PROJECT}/knot.toml"), config=False)
    assert files == {}


def test_a_folder_event_rescans_that_folder_and_a_parent_event_rescans_all() -> None:
    assert found((Change.deleted, str(SINKS)))[1] == {"sinks"}
    assert found((Change.added, str(SCRIPTS)))[1] == {"sinks", "methods"}
    assert found((Change.added, f"{SINKS}/__pycache__"))[1] == set()


def seen(text: str | None, digest: str) -> Seen:
    return Seen("sinks", text, digest)


A = SINKS / "a.py"
B = SINKS / "b.py"


def test_new_file_loads_with_its_source() -> None:
    assert classify({A: seen("x = 1", "d1")}, {}) == [Step(Action.LOAD, "sinks", A, "x = 1", "d1")]


def test_same_content_is_no_step() -> None:
    assert classify({A: seen("x = 1", "d1")}, {A: "d1"}) == []


def test_changed_content_loads_again() -> None:
    assert classify({A: seen("x = 2", "d2")}, {A: "d1"}) == [
        Step(Action.LOAD, "sinks", A, "x = 2", "d2")
    ]


def test_a_gone_file_unloads_only_when_it_was_applied() -> None:
    assert classify({A: Seen("sinks")}, {A: "d1"}) == [Step(Action.UNLOAD, "sinks", A)]
    assert classify({A: Seen("sinks")}, {}) == []


def test_rename_is_unload_then_load() -> None:
    steps = classify({B: seen("x = 1", "d1"), A: Seen("sinks")}, {A: "d1"})
    assert steps == [
        Step(Action.UNLOAD, "sinks", A),
        Step(Action.LOAD, "sinks", B, "x = 1", "d1"),
    ]


def test_unreadable_text_still_loads_so_the_loader_can_say_why() -> None:
    assert classify({A: seen(None, "d3")}, {A: "d1"}) == [Step(Action.LOAD, "sinks", A, None, "d3")]
