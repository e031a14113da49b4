"""The notebook session: which runtime this kernel uses, and the live views following it.

By default that is an embedded runtime on a background loop, started at first use on the
kernel's working folder (so a kernel that never raises an event creates no store, and
`%knot connect` can come first); `%knot project DIR` starts it on another folder and
`%knot connect URL` attaches to a running `knot serve` instead.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from .._config import Config, load_config
from .._exceptions import InvalidInput, KnotError
from .._json import JSONObject
from .backends import Backend, ConnectedBackend, EmbeddedBackend
from .display import LiveTail

__all__ = ["KnotSession"]


class KnotSession:
    """Which runtime this kernel uses, and the live views following it."""

    def __init__(self) -> None:
        self._backend: Backend | None = None
        self._tails: list[LiveTail] = []
        self._lock = threading.RLock()

    @property
    def backend(self) -> Backend:
        """The runtime in use; the embedded one starts here on first use."""
        with self._lock:
            if self._backend is None:
                self._backend = EmbeddedBackend(Path.cwd())
            return self._backend

    @property
    def current(self) -> Backend | None:
        """The runtime in use, without starting one (None before the first command)."""
        return self._backend

    def describe(self) -> str:
        with self._lock:
            if self._backend is None:
                return (
                    f"no runtime started yet: the first command starts an embedded runtime on "
                    f"{Path.cwd()} (or use %knot project DIR / %knot connect URL)"
                )
            return self._backend.describe()

    def use_project(self, folder: str | Path) -> Backend:
        path = Path(folder).expanduser()
        if not path.exists():
            raise InvalidInput(f"The project folder {str(path)!r} does not exist.")
        if not path.is_dir():
            raise InvalidInput(
                f"{str(path)!r} is not a folder: give %knot project the project folder "
                "(the one holding knot.toml and scripts/)."
            )
        with self._lock:
            current = self._backend
            if isinstance(current, EmbeddedBackend) and current.project == path.resolve():
                self._release()  # its own store: it must let go before it starts again
                self._backend = EmbeddedBackend(path)
                return self._backend
            # Start the new one before letting go of the current one: a project that cannot
            # start (its store held by a knot serve, say) leaves the kernel where it was.
            backend = EmbeddedBackend(path)
            self._release()
            self._backend = backend
            return backend

    def connect(self, url: str | None = None, *, token: str | None = None) -> Backend:
        backend = ConnectedBackend(url, token=token)  # fails before the current one is let go
        with self._lock:
            self._release()
            self._backend = backend
            return backend

    def dry_run_settings(self, project: str | None = None) -> tuple[Config, Path]:
        """The settings a dry run applies (limits, http_allow, secrets) and the project they
        belong to: PROJECT's, else those of the runtime in use.

        A dry run needs no runtime, so none is started for it: without one, the kernel
        folder's knot.toml counts, as for `knot run`.
        """
        if project is not None:
            return load_config(project).raise_for_errors(), Path(project)
        with self._lock:
            if self._backend is not None:
                return self._backend.dry_run_settings()
        return load_config(Path.cwd()).raise_for_errors(), Path.cwd()

    def emit(self, event_type: str, payload: JSONObject | None = None) -> str:
        """`knot.event.emit` in this kernel lands here."""
        return self.backend.emit(event_type, payload)

    def call_method(self, method: str, params: Any = None) -> Any:
        """`knot.methods.call` in this kernel lands here."""
        return self.backend.call_method(method, params)

    def add_tail(self, tail: LiveTail) -> None:
        with self._lock:
            self._tails = [t for t in self._tails if t.running]
            self._tails.append(tail)

    def stop_tails(self) -> int:
        with self._lock:
            tails, self._tails = self._tails, []
        for tail in tails:
            tail.stop()
        return len(tails)

    def _release(self) -> None:
        self.stop_tails()
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def close(self) -> None:
        with self._lock:
            self._release()

    def close_at_exit(self) -> None:
        # By the time atexit handlers run, Python has shut down the thread pools a clean stop
        # uses. Nothing is lost when it is cut short: every event was committed before its id
        # was returned, and the store's write-ahead log survives an unclean end.
        with contextlib.suppress(RuntimeError, KnotError):
            self.close()
