"""The journal: grouped commits, and an event journaled before its emitter gets the id."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from knot import Runtime

pytestmark = pytest.mark.anyio


async def test_concurrent_emits_share_commits(project: Path) -> None:
    async with Runtime(project) as rt:
        before = rt.journal.commits
        ids = await asyncio.gather(*(rt.emit("burst.x", {"i": i}) for i in range(200)))
        commits = rt.journal.commits - before
    # 200 emitters waiting at once: a handful of commits, not one (and one fsync) per event.
    assert 1 <= commits <= 10, commits
    assert len(set(ids)) == 200


async def test_an_event_is_in_the_file_when_emit_returns(project: Path) -> None:
    async with Runtime(project) as rt:
        event_id = await rt.emit("durable.x", {"k": 1})
        # Another connection to the same file, as a reader after a crash would see it.
        with sqlite3.connect(project / ".knot" / "knot.db") as db:
            rows = db.execute("SELECT type FROM events WHERE id = ?", (event_id,)).fetchall()
    assert rows == [("custom.durable.x",)]
