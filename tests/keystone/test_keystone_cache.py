"""The validation cache's contract, on virtual time: bounded, LRU, TTL, never past expires_at.

Method: a real TokenCache driven by ManualClock, plus a Hypothesis state machine that compares it
with a plain-dict model after every step and calls check_valid().
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shoal.clock import ManualClock
from shoal.keystone_cache import TokenCache


def make(entries_max: int = 4) -> tuple[TokenCache[str], ManualClock]:
    clock = ManualClock()
    return TokenCache(entries_max, clock), clock


def test_entry_is_served_until_its_ttl_then_dropped():
    cache, clock = make()
    cache.put(b"k", "alice", ttl_s=10)
    clock.advance(9.9)
    assert cache.get(b"k").value == "alice"
    clock.advance(0.1)
    assert cache.get(b"k") is None
    assert len(cache) == 0


def test_entry_is_never_served_at_or_past_expires_at_even_with_a_long_ttl():
    cache, clock = make()
    cache.put(b"k", "alice", ttl_s=300, expires_at=clock.time() + 5)
    clock.advance(4.99)
    assert cache.get(b"k").value == "alice"
    clock.advance(0.01)
    assert cache.get(b"k") is None


def test_already_expired_value_is_not_stored():
    cache, clock = make()
    cache.put(b"k", "alice", ttl_s=300, expires_at=clock.time())
    assert cache.get(b"k") is None and len(cache) == 0


def test_negative_entry_is_a_hit_with_value_none():
    cache, clock = make()
    cache.put(b"bad", None, ttl_s=3)
    entry = cache.get(b"bad")
    assert entry is not None and entry.value is None
    clock.advance(3)
    assert cache.get(b"bad") is None


def test_least_recently_used_entry_is_evicted_first():
    cache, _ = make(entries_max=2)
    cache.put(b"a", "A", ttl_s=60)
    cache.put(b"b", "B", ttl_s=60)
    assert cache.get(b"a").value == "A"  # a is now the most recent
    cache.put(b"c", "C", ttl_s=60)
    assert cache.get(b"b") is None
    assert cache.get(b"a").value == "A" and cache.get(b"c").value == "C"


def test_zero_entries_max_disables_the_cache():
    cache, _ = make(entries_max=0)
    cache.put(b"a", "A", ttl_s=60)
    assert cache.get(b"a") is None


class CacheAgainstModel(RuleBasedStateMachine):
    """Every answer of the cache is what a dict of (value, deadline, expires_at) says."""

    ENTRIES_MAX = 3

    def __init__(self):
        super().__init__()
        self.cache, self.clock = make(self.ENTRIES_MAX)
        self.model: dict[bytes, tuple[str | None, float, float]] = {}

    keys = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])

    @rule(
        key=keys,
        value=st.one_of(st.none(), st.text(max_size=3)),
        ttl_s=st.floats(0, 20),
        expires_in_s=st.one_of(st.just(math.inf), st.floats(-1, 20)),
    )
    def put(self, key, value, ttl_s, expires_in_s):
        expires_at = self.clock.time() + expires_in_s
        self.cache.put(key, value, ttl_s, expires_at)
        self.model.pop(key, None)
        if ttl_s > 0 and self.clock.time() < expires_at:
            self.model[key] = (value, self.clock.monotonic() + ttl_s, expires_at)

    @rule(key=keys)
    def get(self, key):
        entry = self.cache.get(key)
        expected = self.model.get(key)
        live = (
            expected is not None
            and self.clock.monotonic() < expected[1]
            and self.clock.time() < expected[2]
        )
        if entry is not None:
            # the cache may have evicted (LRU), never served something stale
            assert live and entry.value == expected[0]
        if not live:
            self.model.pop(key, None)
        if entry is None:
            self.model.pop(key, None)

    @rule(seconds=st.floats(0, 10))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @invariant()
    def valid(self):
        self.cache.check_valid()
        assert len(self.cache) <= self.ENTRIES_MAX


TestCacheAgainstModel = CacheAgainstModel.TestCase
TestCacheAgainstModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
