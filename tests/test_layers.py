"""The house rules the import graph must keep (also run by `make check`, with import-linter).

Built with grimp (import-linter's graph), which reads every import statement: those inside
functions and under `if TYPE_CHECKING:` count too, so a cycle cannot hide in a type hint.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "runtime" / "knot"
MAX_LINES = 560  # "about 500": a module past this is doing two jobs
WORKER = "knot.sandbox.worker"
WORKER_MAY_IMPORT = ("knot._json", "knot._jsonrpc")  # the JSON aliases and the framing: leaves


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("knot", cache_dir=None)


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def internal_imports() -> dict[str, set[str]]:
    g = graph()
    modules = {m for m in g.modules if m == "knot" or m.startswith("knot.")}
    return {m: g.find_modules_directly_imported_by(m) & modules for m in modules}


def test_there_is_no_import_cycle_not_even_through_type_hints() -> None:
    assert cycles(internal_imports()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_sandbox_worker_imports_nothing_of_the_runtime() -> None:
    g = graph()
    reached = set()
    for module in g.find_descendants(WORKER) | {WORKER}:
        reached |= g.find_upstream_modules(module)
    outside = sorted(
        m
        for m in reached
        if m.startswith("knot") and not m.startswith(WORKER) and m not in WORKER_MAY_IMPORT
    )
    assert outside == [], "the worker must boot with only its own package and knot._json"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_much_over_five_hundred_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"
