"""Error limiting: a node that keeps failing is skipped for a while (Swift's error suppression).

Public: :class:`ErrorLimiter`.

Each worker counts the failures of each node (connect refused, timeout, 5xx, 507). After
``limit`` failures, the node is *error-limited*: request paths put it last (after the handoffs)
until ``interval_s`` has passed since its last failure, so one dead node costs one connect
timeout per ``interval_s`` rather than one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("proxy.error_limiting")

NodeKey = tuple[str, int, str]  # ip, port, device


class ErrorLimiter:
    """Failure counts per node, with a time window."""

    def __init__(
        self, limit: int, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or interval_s <= 0:
            raise ValueError(f"limit must be >= 1 and interval_s > 0, got {limit}, {interval_s}")
        self.limit = limit
        self.interval_s = interval_s
        self._clock = clock
        self._errors: dict[NodeKey, tuple[int, float]] = {}  # count, time of the last error

    def record_error(self, key: NodeKey, why: str) -> None:
        now = self._clock()
        count, last = self._errors.get(key, (0, now))
        if now - last > self.interval_s:
            count = 0
        count += 1
        self._errors[key] = (count, now)
        if count == self.limit + 1:
            log.warning("node %s:%d/%s error-limited: %s", *key, why)

    def record_success(self, key: NodeKey) -> None:
        if key in self._errors:
            del self._errors[key]

    def is_limited(self, key: NodeKey) -> bool:
        entry = self._errors.get(key)
        if entry is None:
            return False
        count, last = entry
        if self._clock() - last > self.interval_s:
            del self._errors[key]
            return False
        return count > self.limit
