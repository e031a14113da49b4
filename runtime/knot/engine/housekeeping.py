"""The running runtime's periodic chores: idle sinks' cursors move on, old rows are pruned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .._config import StoreSettings
from .delivery import DeliveryEngine
from .journal import Journal
from .storage import Storage

__all__ = ["Housekeeper"]

log = logging.getLogger("knot.events")
INTERVAL = 0.5  # seconds between rounds
PRUNE_EVERY = 60  # rounds between retention passes


class Housekeeper:
    """One background task per running runtime; `settings` is read each pass (knot.toml may
    change while it runs)."""

    def __init__(
        self, journal: Journal, delivery: DeliveryEngine, settings: Callable[[], StoreSettings]
    ) -> None:
        self.journal = journal
        self.delivery = delivery
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="knot-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(INTERVAL)
            self.delivery.advance_idle()
            rounds += 1
            if rounds % PRUNE_EVERY == 0:
                await self._prune()

    async def _prune(self) -> None:
        settings = self.settings()
        active = list(self.delivery.workers)

        def prune(store: Storage) -> int:
            return store.prune(
                keep_events=settings.retention_events,
                keep_audit=settings.retention_audit,
                active_sinks=active,
            )

        try:
            await self.journal.call(prune)
        except Exception:
            log.exception("retention pass failed")
