"""`%load_ext knot`: the notebook extension (also preloaded by `knot kernel install`).

The extension keeps one KnotSession per kernel (`knot.notebook.session`): the runtime the
`%knot` magics and `knot.event.emit` use. This module only wires it into IPython.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

from . import event as knot_event
from ._exceptions import InvalidInput
from .notebook.magics import KnotMagics
from .notebook.session import KnotSession

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["KnotSession", "load_ipython_extension", "session", "unload_ipython_extension"]


_session: KnotSession | None = None


def session() -> KnotSession:
    """The extension's session in this kernel (load the extension first)."""
    if _session is None:
        raise InvalidInput("The knot extension is not loaded; run `%load_ext knot` first.")
    return _session


def load_ipython_extension(ip: InteractiveShell) -> None:
    global _session
    if _session is not None:
        return
    _session = KnotSession()
    ip.register_magics(KnotMagics(ip, _session))
    knot_event.use(_session)
    atexit.register(_session.close_at_exit)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    global _session
    if _session is None:
        return
    current, _session = _session, None
    atexit.unregister(current.close_at_exit)
    knot_event.use(None)
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("knot", None)
    current.close()
