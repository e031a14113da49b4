"""Old names kept working after a rename: one warning helper, so every alias says the same."""

from __future__ import annotations

import warnings

__all__ = ["count_keyword", "warn_renamed"]


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that `old` is now `new`, pointing at the alias's caller (stacklevel 3)."""
    # DeprecationWarning is hidden outside __main__ and test runs, so a user's program keeps
    # quiet; their tests say where to change the name.
    warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning, stacklevel=stacklevel)


def count_keyword(limit: int, n: int | None, where: str) -> int:
    """The count a read asked for: `limit=`, or the old `n=` it was spelt as (with a warning)."""
    if n is None:
        return limit
    warn_renamed(f"{where}(n=...)", f"{where}(limit=...)", stacklevel=4)
    return n
