"""Helpers for the tests of the %knot magics in a real in-process IPython shell (the shell
itself is conftest's `shell` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
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


def one_error_line(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], source: str) -> str:
    """Run a cell that must fail as the extension fails: one `knot:` line on stderr, no result,
    no traceback; that line."""
    result = run_cell(ip, source)
    out, err = capsys.readouterr()
    assert result.success, result.error_in_exec
    assert result.result is None
    assert err.count("\n") == 1, err
    assert err.startswith("knot: ")
    assert "Traceback" not in out + err
    return err
