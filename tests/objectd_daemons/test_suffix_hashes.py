"""Suffix hashes and the rate limiter, on real files and virtual time: the cache is used until a
write invalidates its suffix, a full walk happens when the cache is too old, obsolete files and
old tombstones go while hashing, and the token bucket paces work to its rate.

Method: object files written with objectd's own trailer encoder in a temp directory; the
hashing functions are called directly; the rate limiter runs on a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import os

from objectd.metadata import encode_trailer
from objectd.rate_limit import RateLimiter
from objectd.suffix_hashes import get_hashes, invalidate_suffix
from shoal.clock import ManualClock

HASH = "0123456789abcdef0123456789abcabc"  # suffix "abc"


def _write(part_dir, name_hash: str, file_name: str, body: bytes = b"") -> str:
    directory = os.path.join(part_dir, name_hash[-3:], name_hash)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, file_name)
    with open(path, "wb") as f:
        f.write(body + encode_trailer({"name": "/a/c/o"}, len(body)))
    return path


def test_cached_hash_is_reused_until_the_suffix_is_invalidated(tmp_path):
    part_dir = str(tmp_path / "0")
    _write(part_dir, HASH, "1700000000.00000.data", b"x")
    first = get_hashes(part_dir)
    assert set(first) == {"abc"}
    _write(part_dir, HASH, "1700000001.00000.meta")
    assert get_hashes(part_dir) == first  # nobody said the suffix changed: the cache answers
    invalidate_suffix(part_dir, "abc")
    second = get_hashes(part_dir)
    assert second["abc"] != first["abc"]
    assert get_hashes(part_dir, recalculate=["abc"]) == second  # same files, same hash


def test_a_cache_older_than_max_age_is_rebuilt_from_a_full_walk(tmp_path):
    part_dir = str(tmp_path / "0")
    _write(part_dir, HASH, "1700000000.00000.data", b"x")
    get_hashes(part_dir, now=1000.0)
    other = "0123456789abcdef0123456789abc123"
    _write(part_dir, other, "1700000000.00000.data", b"y")  # an unannounced new suffix
    assert set(get_hashes(part_dir, max_age_s=60.0, now=1010.0)) == {"abc"}
    assert set(get_hashes(part_dir, max_age_s=60.0, now=1100.0)) == {"abc", "123"}


def test_hashing_removes_obsolete_files_and_reclaims_old_tombstones(tmp_path):
    part_dir = str(tmp_path / "0")
    old_data = _write(part_dir, HASH, "1700000000.00000.data", b"x")
    _write(part_dir, HASH, "1700000005.00000.ts")
    assert set(get_hashes(part_dir)) == {"abc"}
    assert not os.path.exists(old_data)  # older than the tombstone: obsolete
    invalidate_suffix(part_dir, "abc")
    assert get_hashes(part_dir, reclaim_before=1700000010.0) == {}
    assert not os.path.exists(os.path.join(part_dir, "abc"))  # empty directories go too


def test_replicas_with_the_same_files_have_the_same_hash(tmp_path):
    left, right = str(tmp_path / "left" / "0"), str(tmp_path / "right" / "0")
    for part_dir in (left, right):
        _write(part_dir, HASH, "1700000000.00000.data", b"same")
    assert get_hashes(left) == get_hashes(right)
    _write(right, HASH, "1700000001.00000.data", b"newer")
    invalidate_suffix(right, "abc")
    assert get_hashes(left) != get_hashes(right)


def test_rate_limiter_paces_work_to_its_rate_after_one_burst():
    clock = ManualClock(0.0)
    limiter = RateLimiter(100.0, clock=clock)  # 100 units/s, 1 s of burst

    async def spend() -> None:
        for _ in range(30):
            await limiter.acquire(10)  # 300 units in all

    asyncio.run(spend())
    assert 1.9 <= clock.now <= 2.1  # 100 from the burst, 200 at 100/s
