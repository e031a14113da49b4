"""The Clock seam: what the delivery engine waits on between attempts (a leaf: no imports).

The runtime uses `asyncio.sleep` itself; `knot.testing.FakeClock` stands in so retry tests
never wait on the wall clock (`Runtime(clock=...)`).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed, by this clock."""
        ...
