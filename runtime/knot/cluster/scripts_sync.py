"""Saved scripts, cluster-wide: a good save on any node reaches every node's scripts folder.

The SCRIPTS bucket holds, per script (`sinks/x.py`, `methods/y.py`), its source, digest, the
node that saved it and when. When this node's reloader loads a save, it is published; when
another node's save arrives, it is written into this node's scripts folder (atomically), and
this node's own reloader loads it as if it had been saved here, so hot reload works on every
node. A refused save (a sandbox rule) is never published: every node keeps the last good
version. A deleted script is deleted everywhere.

Two nodes holding different files for one script at start-up: the newer save wins (the
bucket's save time against the file's modification time); the log and the audit say which.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .._audit import AuditEntry, AuditKind
from ..scripts.reload import Reload, Reloader, ReloadStatus, is_script_name, listing
from ..types import Auditor
from ._codec import decode_key, encode_key
from .storage import NatsStorage

__all__ = ["ScriptSync"]

log = logging.getLogger("knot.cluster")
KINDS = ("sinks", "methods")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _valid(rel: str) -> bool:
    kind, _, name = rel.partition("/")
    return kind in KINDS and "/" not in name and is_script_name(name)


class ScriptSync:
    def __init__(self, storage: NatsStorage, reloader: Reloader, auditor: Auditor) -> None:
        self.storage = storage
        self.reloader = reloader
        self.auditor = auditor
        self.node = storage.node_id
        self.bucket = storage.names.stream("SCRIPTS")
        self.entries: dict[str, dict[str, Any]] = {}  # rel → the bucket's value
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: Any = None
        self._tasks: set[Any] = set()  # futures on either loop, kept until done
        self._unsubscribe: Any = None

    @property
    def folder(self) -> Path:
        return self.reloader.scripts

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.storage.link.run(self._open())
        await self._settle_at_start()
        self._unsubscribe = self.reloader.on_reload(self._reloaded)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self.storage.link.run(self._watcher.stop())

    # -- the bucket (on the NATS loop) ------------------------------------------------------------

    async def _open(self) -> None:
        await self.storage._ensure_bucket(self.bucket)
        kv = await self.storage.link.js.key_value(self.bucket)
        self._watcher = await kv.watchall()
        while (entry := await self._watcher.updates(timeout=10)) is not None:  # initial values
            self._seen(entry)
        task = asyncio.ensure_future(self._follow())
        self._tasks.add(task)

    async def _follow(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for entry in self._watcher:
                if entry is not None and self._seen(entry) and self._loop is not None:
                    rel = decode_key(entry.key)
                    with contextlib.suppress(RuntimeError):
                        self._loop.call_soon_threadsafe(self._arrived, rel)

    def _seen(self, entry: Any) -> bool:
        rel = decode_key(entry.key)
        if not _valid(rel):
            return False
        if entry.operation is not None or not entry.value:
            self.entries.pop(rel, None)
        else:
            self.entries[rel] = json.loads(entry.value)
        return True

    async def _put(self, rel: str, source: str) -> None:
        value: dict[str, Any] = {"path": rel, "source": source, "hash": _digest(source)}
        value.update(node=self.node, ts=time.time())
        self.entries[rel] = value
        kv = await self.storage.link.js.key_value(self.bucket)
        await kv.put(encode_key(rel), json.dumps(value).encode())

    async def _delete(self, rel: str) -> None:
        self.entries.pop(rel, None)
        kv = await self.storage.link.js.key_value(self.bucket)
        await kv.delete(encode_key(rel))

    def _spawn(self, coro: Any) -> None:
        future = self.storage.link.submit(coro)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    # -- this node's folder (on the runtime's loop) ----------------------------------------------

    def _local(self) -> dict[str, tuple[str, float]]:
        """rel → (source, modification time) of every script in this node's folder."""
        out: dict[str, tuple[str, float]] = {}
        for kind in KINDS:
            for path in listing(self.folder / kind):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    out[f"{kind}/{path.name}"] = (path.read_text("utf-8"), path.stat().st_mtime)
        return out

    async def _settle_at_start(self) -> None:
        local = self._local()
        link = self.storage.link
        for rel in sorted(set(local) | set(self.entries)):
            entry = self.entries.get(rel)
            mine = local.get(rel)
            if mine is None and entry is not None:
                self._write(rel, entry)
            elif entry is None and mine is not None:
                await link.run(self._put(rel, mine[0]))
            elif entry is not None and mine is not None and _digest(mine[0]) != entry["hash"]:
                theirs = entry.get("node", "?")[:8]
                if float(entry.get("ts", 0)) > mine[1]:
                    self._write(rel, entry)
                    self._conflict(rel, f"took node {theirs}'s newer save over this node's file")
                else:
                    await link.run(self._put(rel, mine[0]))
                    self._conflict(rel, f"this node's newer file replaced node {theirs}'s save")

    def _conflict(self, rel: str, what: str) -> None:
        message = f"Two nodes held different versions of scripts/{rel}: {what}."
        log.warning("%s", message)
        self.auditor.record_audit(AuditEntry.new(AuditKind.SCRIPT_REPLACED, message))

    def _reloaded(self, reload: Reload) -> None:
        """This node's reloader applied a script: publish a good save, or a deletion."""
        if reload.kind not in KINDS:
            return
        rel = f"{reload.kind}/{reload.path.name}"
        if reload.status is ReloadStatus.REMOVED:
            if rel in self.entries:
                self._spawn(self._delete(rel))
            return
        if not reload.ok:
            return  # a refused save stays here; every node keeps the last good version
        try:
            source = reload.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            return
        entry = self.entries.get(rel)
        if entry is None or entry["hash"] != _digest(source):
            self._spawn(self._put(rel, source))

    def _arrived(self, rel: str) -> None:
        """Another node's save or deletion: make this node's folder say the same."""
        entry = self.entries.get(rel)
        path = self.folder / rel
        if entry is None:
            if path.exists():
                with contextlib.suppress(OSError):
                    path.unlink()
                log.info("scripts/%s: deleted on another node", rel)
            return
        if entry.get("node") == self.node:
            return
        self._write(rel, entry)

    def _write(self, rel: str, entry: dict[str, Any]) -> None:
        path = self.folder / rel
        source = str(entry.get("source", ""))
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if path.read_text("utf-8") == source:
                return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.parent / f".{path.name}.{os.getpid()}.tmp"  # a dotfile: not a script
            temp.write_text(source, encoding="utf-8")
            os.replace(temp, path)
        except OSError as exc:
            log.error("scripts/%s from node %s cannot be written: %s", rel, entry.get("node"), exc)
            return
        log.info("scripts/%s: the save from node %s", rel, str(entry.get("node", "?"))[:8])
