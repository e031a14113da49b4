"""Old names kept working after a rename: one warning helper, so every alias says the same."""

from __future__ import annotations

import warnings

__all__ = ["warn_renamed"]


def warn_renamed(old: str, new: str) -> None:
    """Warn once per call site that `old` is now `new` (stacklevel: the alias's caller)."""
    # DeprecationWarning is hidden outside __main__ and test runs, so a user's program keeps
    # quiet; their tests say where to change the name.
    warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning, stacklevel=3)
