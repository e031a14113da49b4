"""What the crash suites share: reading a killed runtime's store, and the at-least-once check.

The rule every crash test asserts, per sink: each acknowledged event is delivered at least once
across the kill, and the only repeats are the deliveries the store had not yet recorded when the
process died. A sink's progress is one cursor (every matching event up to seq N is handled),
committed by the journal shortly after each delivery; so after a SIGKILL exactly the events a
sink delivered with a seq above its committed cursor are delivered again, once. That set is
read from the store between the kill and the restart, so the bound is exact, not a guess.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "Delivery",
    "Stream",
    "check_at_least_once",
    "committed_cursors",
    "event_seqs",
    "jsonl_deliveries",
]


class Stream:
    """Threads POSTing `custom.<type>` events to a runtime until stopped or the runtime dies.

    `acked` holds the ids answered 202: the events the runtime promised not to lose.
    """

    def __init__(self, url: str, event_type: str = "stream.tick", *, threads: int = 4) -> None:
        self.url = url
        self.event_type = event_type
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post("/event", json={"type": self.event_type, "payload": {"i": i}})
                except httpx.HTTPError:
                    return  # the runtime died under us: that request was never acknowledged
                if r.status_code == 202:
                    self.acked.append(r.json()["id"])
                i += 1

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        return list(self.acked)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    seq: int


def jsonl_deliveries(path: Path) -> list[Delivery]:
    """What a recording sink with `path` wrote: one line per delivery, in order."""
    if not path.exists():
        return []
    return [
        Delivery(str(r["id"]), int(r["seq"]))
        for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    ]


def committed_cursors(store: Path) -> dict[str, int]:
    """The cursors a killed runtime left in its store (read before anything restarts)."""
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT sink, seq FROM cursors").fetchall())


def event_seqs(store: Path) -> dict[str, int]:
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT id, seq FROM events").fetchall())


def check_at_least_once(
    sink: str,
    acked: Iterable[str],
    before: list[Delivery],
    after: list[Delivery],
    cursor: int,
) -> int:
    """Assert the rule above for one sink; return the number of repeated deliveries."""
    wanted = set(acked)
    delivered = Counter(d.id for d in [*before, *after])
    lost = wanted - set(delivered)
    assert not lost, f"{sink}: {len(lost)} acknowledged events never delivered"
    assert max(delivered.values(), default=0) <= 2, f"{sink}: an event was delivered 3 times"
    repeated = {i for i, n in delivered.items() if n == 2}
    in_flight = {d.id for d in before if d.seq > cursor}
    assert repeated == in_flight, (
        f"{sink}: repeated {len(repeated)} deliveries, but {len(in_flight)} were past the "
        f"committed cursor {cursor} at the kill"
    )
    assert not {d.id for d in after if d.seq <= cursor} & {d.id for d in before}, (
        f"{sink}: an event at or below the committed cursor was delivered again"
    )
    return len(repeated)
