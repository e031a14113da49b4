"""A node's own records, on its own disk: its id and its spaces (they run where they were made).

The state folder is locked while a node runs: two nodes sharing one folder would share an id,
and the cluster would take them for one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from .._exceptions import StoreError, StoreLocked
from .._json import JSONObject
from ..engine.pidlock import LockHeld, hold, let_go

__all__ = ["NodeRecords"]


class NodeRecords:
    """Scopes kept in `<state folder>/node.json`, written whole on each change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "node.json"
        self._lock_fd: int | None = None
        self._data: dict[str, dict[str, JSONObject]] = {}

    def open(self) -> None:
        self._lock()
        self._data = self._read()
        if not self.node_id:
            self.put("node", "id", {"id": str(uuid.uuid4())})

    @property
    def node_id(self) -> str:
        return str(self._data.get("node", {}).get("id", {}).get("id", ""))

    def all(self, scope: str) -> dict[str, JSONObject]:
        return dict(sorted(self._data.get(scope, {}).items()))

    def put(self, scope: str, key: str, value: JSONObject) -> None:
        self._data.setdefault(scope, {})[key] = value
        self._write()

    def delete(self, scope: str, key: str) -> bool:
        found = self._data.get(scope, {}).pop(key, None) is not None
        self._write()
        return found

    def close(self) -> None:
        let_go(self._lock_fd)
        self._lock_fd = None

    def _lock(self) -> None:
        folder = self.folder
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(folder / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"The node's state folder {folder} cannot be used: {exc.strerror}.",
                path=str(folder),
            ) from None
        try:
            hold(fd)
        except LockHeld as held:
            raise StoreLocked(
                f"The node state folder {folder} is in use by another knot node "
                f"(pid {held.pid or 'another process'}); run each node from its own project "
                "folder.",
                path=str(folder),
                pid=held.pid,
            ) from None
        except OSError as exc:
            let_go(fd)
            raise StoreError(
                f"The node's state folder {folder} cannot be used: {exc.strerror}.",
                path=str(folder),
            ) from None
        self._lock_fd = fd

    def _read(self) -> dict[str, dict[str, JSONObject]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"The node's records {self.path} cannot be read ({exc}); move the file aside "
                "to start this node afresh.",
                path=str(self.path),
            ) from None
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        temp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f)
            os.replace(temp, self.path)
        except OSError as exc:
            raise StoreError(
                f"The node's records {self.path} cannot be written: {exc.strerror}.",
                path=str(self.path),
            ) from None
