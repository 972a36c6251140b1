"""The pure parts of objectd, tested directly: the on-disk format, file choice, ranges,
conditionals, config and fault plans, and the command line.

Method: plain functions on bytes and strings; the on-disk format on real temp files; the command
line as a real subprocess (its exit code and its one-line error).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from objectd.conditions import conditional_status, etag_in
from objectd.config import ConfigError, Reserve, load_config, resolve_seed
from objectd.diskio import DiskIO, FaultPlan
from objectd.metadata import FOOTER_BYTES, CorruptFile, choose_files, encode_trailer, read_file
from objectd.ranges import MultipartPlan, parse_range, resolve_ranges
from ring.builder import RingBuilder
from ring.ring import Ring
from ring.ringfile import write_ring

METADATA = st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=300), max_size=20)


@given(METADATA, st.binary(max_size=5000))
@example({"X-Object-Meta-Big": "v" * 200_000}, b"")
@example({"k": "\udcff surrogate-escaped"}, b"x")
def test_a_trailer_round_trips_whatever_the_metadata(tmp_path_factory, metadata, body):
    path = tmp_path_factory.mktemp("trailer") / "f"
    path.write_bytes(body + encode_trailer(metadata, len(body)))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        whole = read_file(DiskIO(), fd, size, read_whole_max=size)
        tail_only = read_file(DiskIO(), fd, size)
    finally:
        os.close(fd)
    assert whole.metadata == metadata == tail_only.metadata
    assert whole.body == body and whole.body_bytes == len(body) and tail_only.body is None


@pytest.mark.parametrize("damage", ["truncate", "flip_metadata", "flip_magic", "append"])
def test_a_damaged_trailer_is_detected(tmp_path, damage):
    data = bytearray(b"body" + encode_trailer({"ETag": "x", "Content-Length": "4"}, 4))
    if damage == "truncate":
        data = data[:-5]
    elif damage == "flip_metadata":
        data[6] ^= 1
    elif damage == "flip_magic":
        data[-1] ^= 1
    else:
        data += b"junk"
    path = tmp_path / "f"
    path.write_bytes(bytes(data))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(CorruptFile):
            read_file(DiskIO(), fd, len(data))
    finally:
        os.close(fd)


def test_footer_size_is_documented():
    assert FOOTER_BYTES == 20


def test_choose_files_newest_data_or_tombstone_wins():
    files = choose_files(
        ["1.00000.data", "2.00000.ts", "3.00000.data", "4.00000.meta", "3.50000.meta", "x.tmp"]
    )
    assert files.data == "3.00000.data" and files.meta == "4.00000.meta"
    assert sorted(files.obsolete) == ["1.00000.data", "2.00000.ts", "3.50000.meta"]
    tomb = choose_files(["1.00000.data", "2.00000.ts", "3.00000.meta"])
    assert tomb.tombstone == "2.00000.ts" and tomb.data is None and tomb.meta is None
    assert sorted(tomb.obsolete) == ["1.00000.data", "3.00000.meta"]


def test_choose_files_orders_offsets_after_the_plain_timestamp():
    files = choose_files(["1.00000.data", "1.00000_0000000000000001.data"])
    assert files.data == "1.00000_0000000000000001.data"


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 1)]),
        ("bytes=-3", 10, [(7, 10)]),
        ("bytes=-30", 10, [(0, 10)]),
        ("bytes=8-", 10, [(8, 10)]),
        ("bytes=10-", 10, []),
        ("bytes=2-4, 6-7", 10, [(2, 5), (6, 8)]),
        ("bytes=0-1,-0", 10, [(0, 2)]),
        ("bytes=0-9,0-9,0-9", 10, []),  # three overlapping pairs: egregious
        ("bytes=1-2", 0, None),  # empty object: the whole (empty) object
    ],
)
def test_ranges_resolve_like_swift(header, size, expected):
    assert resolve_ranges(parse_range(header), size) == expected


@pytest.mark.parametrize(
    "header", ["bytes=5-3", "bytes=", "bytes=-", "bytes=a-b", "items=0-1", "bytes=1"]
)
def test_invalid_range_headers_are_ignored(header):
    assert parse_range(header) is None


def test_multipart_plan_length_matches_its_rendering():
    plan = MultipartPlan.build([(0, 3), (5, 9)], 10, "text/plain")
    body = plan.render(b"0123456789")
    assert len(body) == plan.length
    assert b"Content-Range: bytes 5-8/10\r\n\r\n5678\r\n--" in body


def test_etag_lists_and_conditionals():
    assert etag_in('"a", b, W/"c"', "b") and etag_in("*", "zz") and not etag_in('"a"', "b")
    assert conditional_status({"If-None-Match": '"e"'}, "e", 100) == 304
    assert conditional_status({"If-Match": '"x"'}, "e", 100) == 412
    assert (
        conditional_status({"If-Modified-Since": "Thu, 01 Jan 1970 00:01:40 GMT"}, "e", 100) == 304
    )
    assert (
        conditional_status({"If-Unmodified-Since": "Thu, 01 Jan 1970 00:01:39 GMT"}, "e", 100)
        == 412
    )
    assert conditional_status({"If-Modified-Since": "not a date"}, "e", 100) is None


def test_reserve_parses_bytes_and_percentages():
    assert Reserve.parse("1%").violated(free_bytes=0, total_bytes=100)
    assert not Reserve.parse("1%").violated(free_bytes=2, total_bytes=100)
    assert Reserve.parse("1000").violated(free_bytes=999, total_bytes=10**9)
    with pytest.raises(ValueError):
        Reserve.parse("lots")


def test_config_errors_name_the_option(tmp_path):
    path = tmp_path / "objectd.toml"
    path.write_text('[objectd]\nfallocate_reserve = "lots"\n')
    with pytest.raises(ConfigError, match="fallocate_reserve"):
        load_config(path)
    path.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(path)
    with pytest.raises(ConfigError, match="no hash seed"):
        resolve_seed(load_config(None, {"ring_dir": str(tmp_path)}))


def test_the_seed_is_read_from_the_object_ring(tmp_path):
    builder = RingBuilder(part_power=4, replicas=1, min_part_hours=0)
    device = {
        "region": 1,
        "zone": 1,
        "ip": "127.0.0.1",
        "port": 6200,
        "device": "sda",
        "weight": 1.0,
    }
    builder.add_dev(device)
    builder.rebalance()
    write_ring(builder, tmp_path / "object.ring")
    assert (
        resolve_seed(load_config(None, {"ring_dir": str(tmp_path)}))
        == Ring(tmp_path / "object.ring").seed
    )


def test_fault_plans():
    plan = FaultPlan("fsync@2=EIO,rename@3+=ENOSPC")
    plan.check("fsync")
    with pytest.raises(OSError) as raised:
        plan.check("fsync")
    assert raised.value.errno == errno.EIO
    plan.check("fsync")
    for _ in range(2):
        plan.check("rename")
    for _ in range(3):
        with pytest.raises(OSError):
            plan.check("rename")
    seeded = [FaultPlan("write%0.5=EIO,seed=7") for _ in range(2)]
    outcomes = [[_fails(plan, "write") for _ in range(20)] for plan in seeded]
    assert outcomes[0] == outcomes[1] and any(outcomes[0]) and not all(outcomes[0])
    with pytest.raises(ValueError):
        FaultPlan("fsync@x=EIO")
    with pytest.raises(ValueError):
        FaultPlan("teleport@1=EIO")


def _fails(plan: FaultPlan, operation: str) -> bool:
    try:
        plan.check(operation)
    except OSError:
        return True
    return False


def test_command_line_reports_a_bad_config_in_one_line(tmp_path):
    path = tmp_path / "objectd.toml"
    path.write_text("workers = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "objectd", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "workers" in result.stderr


def test_command_line_prints_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "objectd", "--print-defaults"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "[objectd]" in result.stdout and "fallocate_reserve" in result.stdout
