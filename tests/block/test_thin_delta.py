"""thin_delta's report turned into backup chunks: what an incremental backup on lvm-thin reads.

Goal: the changed ranges and the chunk indexes they touch are exact at the edges (a block that
ends on a chunk boundary does not pull in the next chunk; one that crosses it does). Method: the
XML is thin_delta 0.9.0's own output, recorded in the test guest (a 64 KiB-block pool: 8 MiB
written, snapshot, 64 KiB rewritten at block 100 and 4 KiB written at 20,480,000 bytes,
snapshot); the end-to-end check on a real pool is tests/block/guest/test_in_guest_backup.py.
"""

from __future__ import annotations

from blockd.backends.lvm_thin import parse_thin_delta
from blockd.backup import CHUNK_BYTES, changed_chunk_indexes
from shoal.units import KiB, MiB

RECORDED = """<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">
  <diff left="2" right="3">
    <same begin="0" length="100"/>
    <different begin="100" length="1"/>
    <same begin="101" length="27"/>
    <right_only begin="312" length="1"/>
  </diff>
</superblock>
"""


def test_the_recorded_report_gives_the_written_blocks_in_bytes():
    block = 64 * KiB  # data_block_size 128 sectors
    assert parse_thin_delta(RECORDED) == [(100 * block, block), (312 * block, block)]
    # the writes that made it: 64 KiB at 6.25 MiB, 4 KiB at 20,480,000 bytes (inside block 312)
    assert 100 * block == 6 * MiB + 256 * KiB
    assert 312 * block <= 20_480_000 < 313 * block


def test_left_only_is_a_change_too():
    report = """<superblock data_block_size="2048"><diff left="1" right="2">
      <left_only begin="3" length="2"/><same begin="5" length="1"/></diff></superblock>"""
    assert parse_thin_delta(report) == [(3 * MiB, 2 * MiB)]


def test_ranges_map_to_the_chunks_they_touch():
    assert changed_chunk_indexes(parse_thin_delta(RECORDED)) == {1, 4}
    assert changed_chunk_indexes([(0, CHUNK_BYTES)]) == {0}  # ends on the boundary
    assert changed_chunk_indexes([(CHUNK_BYTES - 1, 2)]) == {0, 1}  # crosses it
    assert changed_chunk_indexes([(3 * CHUNK_BYTES, 0)]) == set()
    assert changed_chunk_indexes([(10 * CHUNK_BYTES + 5, 3 * CHUNK_BYTES)]) == {10, 11, 12, 13}
