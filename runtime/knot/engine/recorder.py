"""One sink's delivery attempts on their way to the journal (see `attempts.py` for the records).

The delivery worker calls this around its attempts. The common attempt, a first try that
succeeded at once and said nothing, costs one `run.append(seq)` on the worker's hot path; the
recorder keeps the time the run spent delivering (not the time it waited for events) and
hands the run to the journal, with the records of every other attempt, when a record comes
(the run ends there), when 1,024 records wait, when the worker goes idle with records
pending, or when asked (every housekeeping round, so at most 0.5 s of runs wait; and before a
read).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from time import time

from .attempts import Attempt, AttemptBatch
from .hooks import Hooks
from .journal import Journal

__all__ = ["RUN_MAX", "AttemptRecorder", "spread"]

RUN_MAX = 1024  # records a worker keeps before handing them to the journal


class AttemptRecorder:
    __slots__ = (
        "busy",
        "hooks",
        "idle",
        "journal",
        "name",
        "paused",
        "records",
        "resumed",
        "run",
        "run_started",
        "version",
    )

    def __init__(self, name: str, journal: Journal, hooks: Hooks) -> None:
        self.name = name
        self.journal = journal
        self.hooks = hooks
        self.run: list[int] = []  # positions of the open run (a list: the fastest to append to)
        self.records: list[Attempt] = []
        self.run_started = 0.0  # when the run's first attempt began
        self.busy = 0.0  # seconds the run's attempts took, up to `resumed`
        self.resumed = 0.0  # when the worker last woke (its attempts ran back to back since)
        self.paused = 0.0  # when it last went idle
        self.idle = True
        self.version = ""  # the script version of the open run's attempts

    def resume(self) -> None:
        """The worker woke up to deliver."""
        self.resumed = time()
        if not self.run:
            self.run_started = self.resumed
        self.idle = False

    def pause(self) -> None:
        """The worker has nothing left to deliver. The run stays open (a run per wake-up would
        be a row per few events); its time counts only what was spent delivering."""
        self.paused = time()
        self.busy += self.paused - self.resumed
        self.idle = True
        if self.records:
            self.flush()

    def switch(self, version: str) -> None:
        """The next quick success ran another version of the script (it was reloaded): the
        open run, all of the version before, is handed over first."""
        if self.run:
            self.flush()
            self.restart(time())  # between attempts: the next one starts the new run
        self.version = version

    def keep(self, record: Attempt) -> None:
        """An attempt with something to say (a failure, a retry, output, a status)."""
        self.records.append(record)
        if len(self.records) >= RUN_MAX:
            self.flush()

    def flush(self, *, one_more: bool = False) -> tuple[float, float]:
        """Hand the attempts recorded so far to the journal; with `one_more`, also return the
        time window of the attempt that just ended: its share of the time since the worker
        woke when a run is open, or all of it."""
        now = time()
        run, records = self.run, self.records
        last = self.paused if self.idle else now
        busy = self.busy if self.idle else self.busy + now - self.resumed
        started = ended = self.resumed
        if run:
            share = busy / (len(run) + one_more) if one_more else 0.0
            started = ended = last - share
            busy -= share
        if run or records:
            self._hand_over(ended, busy)
        if one_more or self.idle or run:
            self.restart(now)
        # else: asked from outside (the housekeeper, a reader) while an attempt may be in
        # flight: it started at `resumed`, which must stay (it was reset here, and a slow
        # webhook's attempt across a housekeeping round was recorded as taking microseconds).
        return started, now

    def split(self, started: float, ended: float) -> None:
        """An attempt timed on its own (one of a batch) ran from `started` to `ended`: the open
        run ends where it began and the next one starts where it ended, so the run's times and
        the record's stay apart and in order."""
        if self.run:
            self._hand_over(started, self.busy + started - self.resumed)
        self.restart(ended)

    def _hand_over(self, ended: float, busy: float) -> None:
        run = self.run
        # Never below 0: a flush from outside during a batch hands over time a later split
        # counts again from `resumed`.
        batch = AttemptBatch(
            self.name,
            self.run_started,
            ended,
            max(busy, 0.0),
            array("q", run),
            tuple(self.records),
            self.version,
        )
        run.clear()
        self.records = []
        self.journal.attempts(batch)
        if self.hooks.attempt_listeners:
            self.hooks.attempted(batch)

    def restart(self, now: float) -> None:
        """The next attempt starts now: a run opened from here counts from this time (so a
        retry's backoff or a batch never counts as a run's delivery time)."""
        self.busy = 0.0
        self.resumed = now
        if not self.run:
            self.run_started = now


def spread(started: float, ended: float, count: int, finished: Sequence[float]) -> list[float]:
    """`count + 1` boundaries: attempt i of a batch ran from boundary i to boundary i + 1.

    From the times the sink saw each event finish when it gives them all, else the batch's
    time divided evenly (the events ran one after another)."""
    if len(finished) >= count:
        return [started, *finished[:count]]
    step = (ended - started) / count if count else 0.0
    return [started + step * i for i in range(count)] + [ended]
