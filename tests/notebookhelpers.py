"""Helpers for the tests of the %knot magics in a real in-process IPython shell (the shell
itself is conftest's `shell` fixture)."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import ExecutionResult, InteractiveShell


def knot_magic(ip: InteractiveShell, line: str) -> Any:
    return ip.run_line_magic("knot", line)


def knot_cell(ip: InteractiveShell, line: str, cell: str) -> Any:
    return ip.run_cell_magic("knot", line, cell)  # type: ignore[no-untyped-call]


def run_cell(ip: InteractiveShell, source: str) -> ExecutionResult:
    result: ExecutionResult = ip.run_cell(source)  # type: ignore[no-untyped-call]
    return result


def formats(ip: InteractiveShell, obj: object) -> dict[str, str]:
    formatter: Any = ip.display_formatter  # IPython leaves DisplayFormatter.format untyped
    data, _ = formatter.format(obj)
    return dict(data)
