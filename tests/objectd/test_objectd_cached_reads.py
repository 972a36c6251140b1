"""Reads on the event loop from the kernel's caches (objectd.cached_io) and their fallback.

Method: real files on the test's filesystem. "Not cached" is made for real: a file's pages are
dropped with fsync + POSIX_FADV_DONTNEED, and a name that was never looked up has no dentry.
Over HTTP, a real objectd serves objects whose pages were dropped (the threaded path) and the
same objects once cached (the event-loop path): the bytes must be the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from objectd_harness import hash_dir_of, start_objectd
from objectd_helpers import md5, object_put_headers, ts

from objectd.cached_io import CachedReads, WouldBlock, cached_reads_for
from objectd.config import Reserve
from objectd.devices import Devices
from objectd.disk_read import read_state_cached
from objectd.disk_write import ObjectWriter
from objectd.diskio import DiskIO
from objectd.layout import Layout
from objectd.limits import DROP_BEHIND_BYTES
from shoal.timestamp import Timestamp

SMALL = os.urandom(10_000)  # read whole by a GET
LARGE = os.urandom(3 * 1024 * 1024 + 17)  # sent with sendfile by a GET


def _drop_pages(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture
def reads() -> CachedReads:
    found = cached_reads_for(DiskIO())
    if found is None:
        pytest.skip("this kernel has no openat2 RESOLVE_CACHED or RWF_NOWAIT")
    return found


def test_cached_bytes_are_read_and_dropped_pages_are_refused(reads, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(SMALL)
    fd = reads.open(str(path), os.O_RDONLY)
    try:
        assert reads.pread(fd, len(SMALL), 0) == SMALL
        with pytest.raises(WouldBlock):  # more than the file has: short read, let threads decide
            reads.pread(fd, len(SMALL) + 1, 0)
        _drop_pages(path)
        with pytest.raises(WouldBlock):
            reads.pread(fd, len(SMALL), 0)
        assert os.pread(fd, len(SMALL), 0) == SMALL  # a blocking read brings the pages back
        assert reads.pread(fd, len(SMALL), 0) == SMALL
    finally:
        os.close(fd)


def test_a_name_never_looked_up_is_refused_then_missing(reads, tmp_path):
    absent = str(tmp_path / "never-looked-up")
    with pytest.raises(WouldBlock):
        reads.listdir(absent)
    assert not os.path.exists(absent)  # the blocking lookup leaves a negative dentry
    with pytest.raises(FileNotFoundError):
        reads.listdir(absent)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.data").write_bytes(b"")
    assert reads.listdir(str(tmp_path / "d")) == ["x.data"]


def test_a_fault_plan_turns_cached_reads_off():
    assert cached_reads_for(DiskIO("open@1=EIO")) is None


@pytest.fixture
def stored(fresh_objectd):
    """A small and a large object in a fresh objectd, with their hash directories."""
    stamp = ts()
    dirs = {}
    for name, body in (("small", SMALL), ("large", LARGE)):
        path = f"/sda/7/AUTH_c/box/{name}"
        response = fresh_objectd.request("PUT", path, data=body, headers=object_put_headers(stamp))
        assert response.status_code == 201
        dirs[name] = hash_dir_of(fresh_objectd, "sda", 7, "AUTH_c", "box", name)
    return fresh_objectd, dirs


def _devices(process) -> Devices:
    return Devices(
        DiskIO(), process.layout, mount_check=False, reserve=Reserve.parse("0"),
        threads_per_device=1,
    )  # fmt: skip


def test_read_state_cached_reads_a_cached_object_and_gives_way_otherwise(reads, stored):
    process, dirs = stored
    devices = _devices(process)
    small_dir = str(dirs["small"])
    os.listdir(small_dir)  # the path is in the dentry cache from here on
    state = read_state_cached(
        devices, reads, "sda", small_dir, frozenset(), keep_open=True, read_whole=True
    )
    assert state is not None and state.body == SMALL and state.metadata["ETag"] == md5(SMALL)
    (data_file,) = dirs["small"].glob("*.data")
    _drop_pages(data_file)
    assert read_state_cached(devices, reads, "sda", small_dir, frozenset(), read_whole=True) is None

    data_file.read_bytes()  # the pages are cached again
    _flip_first_byte(data_file)
    assert read_state_cached(devices, reads, "sda", small_dir, frozenset(), read_whole=True) is None
    assert data_file.exists(), "quarantine is the threaded path's job, not the event loop's"


def _flip_first_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


def test_gets_serve_the_same_bytes_from_disk_and_from_cache(stored):
    process, dirs = stored
    for name, body in (("small", SMALL), ("large", LARGE)):
        (data_file,) = dirs[name].glob("*.data")
        _drop_pages(data_file)
        path = f"/sda/7/AUTH_c/box/{name}"
        for _attempt in ("dropped pages", "cached"):
            response = process.request("GET", path)
            assert response.status_code == 200
            assert response.content == body
            assert response.headers["ETag"] == md5(body)
        head = process.request("HEAD", path)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(body)


def test_a_corrupt_cached_small_object_is_still_quarantined(stored):
    process, dirs = stored
    (data_file,) = dirs["small"].glob("*.data")
    assert process.request("GET", "/sda/7/AUTH_c/box/small").status_code == 200  # now cached
    _flip_first_byte(data_file)
    assert process.request("GET", "/sda/7/AUTH_c/box/small").status_code == 404
    assert not data_file.exists()
    assert list((process.devices / "sda" / "quarantined").rglob("*.data"))


def _cached(reads: CachedReads, hash_dir: Path) -> bool:
    """Whether the first page of the object's ``.data`` file is in the page cache."""
    (data_file,) = hash_dir.glob("*.data")
    fd = os.open(data_file, os.O_RDONLY)
    try:
        reads.pread(fd, 4096, 0)
        return True
    except WouldBlock:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("keep_cache_bytes_max", [64 * 1024, -1])
def test_large_bodies_leave_the_page_cache_once_durable(reads, tmp_path, keep_cache_bytes_max):
    """As Swift, objectd drops what it wrote (above ``keep_cache_bytes_max``) after the fsync;
    small objects stay cached for the event loop's reads. -1 keeps everything."""
    process = start_objectd(tmp_path / "node", keep_cache_bytes_max=keep_cache_bytes_max)
    try:
        dirs = {}
        for name, body in (("small", SMALL), ("large", LARGE), ("streamed", LARGE)):
            path = f"/sda/7/AUTH_c/box/{name}"
            headers = object_put_headers(ts())
            if name == "streamed":  # the 100-continue path: several disk hops
                headers["Expect"] = "100-continue"
            response = process.request("PUT", path, data=body, headers=headers)
            assert response.status_code == 201, response.text
            dirs[name] = hash_dir_of(process, "sda", 7, "AUTH_c", "box", name)
        assert _cached(reads, dirs["small"])
        dropping = keep_cache_bytes_max >= 0
        assert _cached(reads, dirs["large"]) is not dropping
        assert _cached(reads, dirs["streamed"]) is not dropping
        assert process.request("GET", "/sda/7/AUTH_c/box/large").content == LARGE
    finally:
        process.stop()


@pytest.mark.parametrize("keep_cache_bytes_max", [64 * 1024, -1])
def test_a_long_upload_is_dropped_behind_the_writer(reads, tmp_path, keep_cache_bytes_max):
    """Every DROP_BEHIND_BYTES, what the writer wrote and the disk already has leaves the page
    cache (the kernel's writeback is made synchronous here with an fsync, so the check does not
    depend on its timing); with -1 the pages stay."""
    (tmp_path / "sda").mkdir()
    devices = Devices(
        DiskIO(), Layout(tmp_path, b"seed"), mount_check=False, reserve=Reserve.parse("0"),
        threads_per_device=1, keep_cache_bytes_max=keep_cache_bytes_max,
    )  # fmt: skip
    writer = ObjectWriter(devices, "sda", str(tmp_path / "sda" / "hash"), None)
    writer.open(Timestamp(1.0), False, precheck=False)
    try:
        fd = writer._temp.fd
        writer.write([b"a" * DROP_BEHIND_BYTES])
        os.fsync(fd)  # the first window is on the disk: its pages are clean
        writer.write([b"b" * 1024 * 1024])  # the next write drops behind (a whole window later)
        writer.write([b"c" * (DROP_BEHIND_BYTES - 1024 * 1024)])
        first_page_cached = _fd_cached(reads, fd, 0)
        assert first_page_cached is (keep_cache_bytes_max < 0)
    finally:
        writer.abort()


def _fd_cached(reads: CachedReads, fd: int, offset: int) -> bool:
    """Whether a page of the (write-only, unnamed) temp file is cached: read through a second
    descriptor, opened by way of /proc."""
    reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    try:
        reads.pread(reader, 4096, offset)
        return True
    except WouldBlock:
        return False
    finally:
        os.close(reader)
