"""A bounded LRU + TTL cache for token validations.

Public: :class:`TokenCache`, :class:`CacheEntry`.

Why a cache at all: one validation costs Keystone 5-130 ms of CPU (see the reference notes), and a
Swift client sends the same token with every request. Why bounded: the keys come from clients, so
an unbounded cache is a memory leak an attacker can drive; the least recently used entry goes
first. Why two clocks: the freshness TTL is measured on the monotonic clock (a wall-clock jump
must not keep an entry alive), but a token's ``expires_at`` is a wall-clock instant chosen by
Keystone, so it is compared with the wall clock. An entry is served only while both hold.

The cache is generic in its value (the validator stores an ``Identity``, or ``None`` for a
negative result), so it does not depend on the Keystone module.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from shoal.clock import Clock

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheEntry(Generic[V]):
    """One cached result; ``value`` is None for a cached negative result."""

    value: V | None
    fresh_until_monotonic: float
    expires_at: float  # wall clock (epoch seconds); math.inf when the value has no expiry


class TokenCache(Generic[V]):
    """LRU + TTL map from a token digest to a validation result.

    Args:
        entries_max: most entries kept; 0 disables caching.
        clock: time source (``ManualClock`` in tests).
    """

    def __init__(self, entries_max: int, clock: Clock):
        if entries_max < 0:
            raise ValueError(f"entries_max must be >= 0, got {entries_max!r}")
        self.entries_max = entries_max
        self._clock = clock
        self._entries: OrderedDict[bytes, CacheEntry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> CacheEntry[V] | None:
        """The entry for ``key`` if it is still fresh and unexpired; stale entries are dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            self._clock.monotonic() >= entry.fresh_until_monotonic
            or self._clock.time() >= entry.expires_at
        ):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, value: V | None, ttl_s: float, expires_at: float = math.inf) -> None:
        """Cache ``value`` for at most ``ttl_s`` seconds and never at or past ``expires_at``.

        Nothing is stored when the entry would already be stale (ttl 0, or expired).
        """
        if self.entries_max == 0 or ttl_s <= 0 or self._clock.time() >= expires_at:
            self._entries.pop(key, None)
            return
        self._entries[key] = CacheEntry(value, self._clock.monotonic() + ttl_s, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.entries_max:
            self._entries.popitem(last=False)

    def discard(self, key: bytes) -> None:
        """Forget ``key`` (no error if absent)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def check_valid(self) -> None:
        """Assert the cache's invariants (for tests; cheap enough to call after every step)."""
        assert len(self._entries) <= self.entries_max, (len(self._entries), self.entries_max)
        for key, entry in self._entries.items():
            assert isinstance(key, bytes), key
            assert not math.isnan(entry.fresh_until_monotonic), entry
            assert not math.isnan(entry.expires_at), entry
