"""An injectable clock, so background daemons and tests can advance time instead of sleeping.

Public: :class:`Clock` (real time), :class:`ManualClock` (virtual time for tests).
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Wall-clock time and asyncio sleeps."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock(Clock):
    """Virtual time: ``advance()`` moves it; ``sleep()`` returns at once after advancing."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)
