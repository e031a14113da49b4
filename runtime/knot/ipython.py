"""`%load_ext knot`: the notebook extension (also preloaded by `knot kernel install`).

The extension keeps one KnotSession per kernel (`knot.notebook.session`): the runtime the
`%knot` magics and `knot.event.emit` use. This module only wires it into IPython.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

from . import event as knot_event
from ._exceptions import InvalidInput
from .notebook.complete import KnotCompleter
from .notebook.magics import KnotMagics
from .notebook.session import KnotSession

if TYPE_CHECKING:
    from types import SimpleNamespace

    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["KnotSession", "load_ipython_extension", "session", "unload_ipython_extension"]


_session: KnotSession | None = None
_COMPLETED = ("%knot", "%%knot")  # IPython's completer hook is keyed by the command word


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
    magics = KnotMagics(ip, _session)
    ip.register_magics(magics)
    completer = KnotCompleter(_session, magics.parser)

    def complete(shell: InteractiveShell, event: SimpleNamespace) -> list[str]:
        return completer(str(event.text_until_cursor))

    complete.knot_completer = True  # type: ignore[attr-defined]  # found again on unload
    for key in _COMPLETED:
        ip.set_hook("complete_command", complete, str_key=key)  # type: ignore[no-untyped-call]
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
    _remove_completer(ip)
    current.close()


def _remove_completer(ip: InteractiveShell) -> None:
    """Take our completer hook out again (IPython has no call for it)."""
    dispatch = ip.strdispatchers.get("complete_command")
    if dispatch is None:
        return
    for key in _COMPLETED:
        chain = dispatch.strs.get(key)
        if chain is None:
            continue
        chain.chain = [
            (priority, hook)
            for priority, hook in chain.chain
            if not getattr(getattr(hook, "__func__", None), "knot_completer", False)
        ]
        if not chain.chain:
            del dispatch.strs[key]
