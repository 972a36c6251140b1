"""Ring files and lookups: what the proxy and objectd rely on.

Method: real builders written to real files in a temp dir, then read back through Ring.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ring import Ring, RingBuilder, RingFileError, read_ring, write_ring
from ring.hashing import object_hash, partition_of, path_key
from tests.ring.conftest import clusters


def make_ring(tmp_path, devs, part_power=8, replicas=3, name="object.ring"):
    builder = RingBuilder(part_power, replicas, 0)
    for dev in devs:
        builder.add_dev(dict(dev))
    builder.rebalance(seed=7)
    path = tmp_path / name
    write_ring(builder, path)
    return builder, path


NAMES = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/"), min_size=1, max_size=20
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(devs=clusters(min_zones=3), account=NAMES, container=NAMES, obj=NAMES)
def test_primaries_are_distinct_and_handoffs_are_never_primaries(
    tmp_path, devs, account, container, obj
):
    builder, path = make_ring(tmp_path, devs)
    ring = Ring(path)
    part, primaries = ring.get_nodes(account, container, obj)
    assert part == ring.get_part(account, container, obj)
    assert 0 <= part < ring.partition_count
    assert len({d["id"] for d in primaries}) == ring.replica_count == 3
    handoffs = list(ring.get_more_nodes(part))
    ids = [d["id"] for d in handoffs]
    assert len(ids) == len(set(ids))
    assert not set(ids) & {d["id"] for d in primaries}
    weighted = {d["id"] for d in builder.live_devs() if d["weight"] > 0}
    assert set(ids) | {d["id"] for d in primaries} == weighted  # every other device, eventually
    assert Ring(path).get_nodes(account, container, obj) == (
        part,
        primaries,
    )  # reloaded file agrees


def test_first_handoff_is_in_a_region_no_primary_uses(tmp_path):
    devs = [
        {
            "region": r,
            "zone": z,
            "ip": f"10.{r}.{z}.1",
            "port": 6200,
            "device": "d",
            "weight": 100.0,
        }
        for r in (1, 2, 3, 4)
        for z in (1, 2)
    ]
    _, path = make_ring(tmp_path, devs)
    ring = Ring(path)
    for part in range(0, ring.partition_count, 17):
        used = {d["region"] for d in ring.get_part_nodes(part)}
        first = next(ring.get_more_nodes(part))
        assert first["region"] not in used


def test_partition_is_the_top_bits_of_xxh3_of_seed_and_path(tmp_path):
    devs = [
        {"region": 1, "zone": z, "ip": f"10.0.0.{z}", "port": 6200, "device": "d", "weight": 1.0}
        for z in (1, 2, 3)
    ]
    builder, path = make_ring(tmp_path, devs, part_power=10)
    ring = Ring(path)
    import xxhash

    expected = xxhash.xxh3_64_intdigest(builder.hash_seed + b"/AUTH_a/c/o") >> (64 - 10)
    assert ring.get_part("AUTH_a", "c", "o") == expected
    assert partition_of(builder.hash_seed, path_key("AUTH_a", "c", "o"), 10) == expected
    assert len(object_hash(builder.hash_seed, "AUTH_a", "c", "o")) == 32


def test_ring_reloads_when_the_file_changes(tmp_path):
    devs = [
        {"region": 1, "zone": z, "ip": f"10.0.0.{z}", "port": 6200, "device": "d", "weight": 1.0}
        for z in (1, 2, 3)
    ]
    builder, path = make_ring(tmp_path, devs)
    ring = Ring(path, reload_interval_s=0.0)
    assert ring.version == 1
    builder.add_dev(
        {"region": 1, "zone": 4, "ip": "10.0.0.4", "port": 6200, "device": "d", "weight": 1.0}
    )
    builder.rebalance(seed=1)
    write_ring(builder, path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    ring.get_part_nodes(0)
    assert ring.version == 2
    assert len([d for d in ring.devs if d]) == 4


def test_a_corrupt_ring_file_is_kept_out_and_the_old_ring_stays_in_use(tmp_path):
    devs = [
        {"region": 1, "zone": z, "ip": f"10.0.0.{z}", "port": 6200, "device": "d", "weight": 1.0}
        for z in (1, 2, 3)
    ]
    _, path = make_ring(tmp_path, devs)
    ring = Ring(path, reload_interval_s=0.0)
    before = ring.get_part_nodes(5)
    path.write_bytes(path.read_bytes()[:-20])  # truncated
    with pytest.raises(RingFileError, match="corrupt or truncated"):
        read_ring(path)
    assert ring.get_part_nodes(5) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (b"SHOALRNG\x00\x00\x00\x09rest", "format version 9"),
        (b"NOTARING\x00\x00\x00\x01", "not a Shoal ring"),
        (b"SHOALRNG\x00\x00\x00\x01garbage", "corrupt"),
    ],
)
def test_bad_ring_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "x.ring"
    path.write_bytes(content)
    with pytest.raises(RingFileError, match=message):
        Ring(path)


def test_missing_ring_file_is_a_clear_error(tmp_path):
    with pytest.raises(RingFileError, match="does not exist"):
        Ring(tmp_path / "nope.ring")


def test_same_builder_writes_the_same_ring_bytes(tmp_path):
    devs = [
        {"region": 1, "zone": z, "ip": f"10.0.0.{z}", "port": 6200, "device": "d", "weight": 1.0}
        for z in (1, 2, 3)
    ]
    builder, path = make_ring(tmp_path, devs)
    write_ring(builder, tmp_path / "again.ring")
    assert path.read_bytes() == (tmp_path / "again.ring").read_bytes()
