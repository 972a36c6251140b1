"""A token bucket for the background daemons: bytes or files per second, with a short burst.

Public: :class:`RateLimiter`.

Background work must leave the disks and the network to client requests, so every byte the
replicator sends and every byte the auditor reads first passes :meth:`RateLimiter.acquire`.
The bucket holds at most ``burst_s`` seconds of allowance: after a pause the daemon may catch up
briefly, never flood. The clock is injected (``shoal.clock``) so tests can use virtual time.
"""

from __future__ import annotations

from shoal.clock import Clock

BURST_S = 1.0
"""Allowance saved up while idle: one second's worth."""


class RateLimiter:
    """``acquire(n)`` returns once ``n`` units fit under ``rate_per_s``."""

    def __init__(self, rate_per_s: float, *, clock: Clock | None = None, burst_s: float = BURST_S):
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        self.rate_per_s = float(rate_per_s)
        self.clock = clock or Clock()
        self.burst_s = burst_s
        self._available = self.rate_per_s * burst_s
        self._updated = self.clock.monotonic()

    async def acquire(self, amount: float) -> None:
        """Wait until ``amount`` units may be used, then use them (an amount larger than the
        burst is allowed: it leaves the bucket in debt, and the next caller waits longer)."""
        now = self.clock.monotonic()
        self._available = min(
            self.rate_per_s * self.burst_s,
            self._available + (now - self._updated) * self.rate_per_s,
        )
        self._updated = now
        self._available -= amount
        if self._available < 0:
            await self.clock.sleep(-self._available / self.rate_per_s)
