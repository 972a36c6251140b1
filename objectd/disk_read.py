"""Reading an object from disk: find its files, read metadata (and small bodies), verify, and
quarantine what is corrupt.

Public: :class:`ObjectState`, :func:`read_state`, :func:`read_state_cached`,
:func:`digest_of_range`, :func:`quarantine`.

All functions here block and run on the device's threads (``Devices.run``), except
:func:`read_state_cached`, which never waits for the disk (:mod:`objectd.cached_io`) and runs on
the event loop.

A read lists the hash directory once, chooses the files that decide the object's state
(:func:`objectd.metadata.choose_files`), opens the ``.data`` and reads its trailer; a file of at
most ``SMALL_BODY_BYTES_MAX`` is read whole in the same ``pread`` and its checksum checked at
once (``objectd.metadata.body_hasher``: xxh3-64, or the MD5 of older files), so a corrupt small
object is quarantined before a byte of it is served. Larger bodies are checked while they are
sent (see ``object_get``). A file whose trailer is corrupt, or whose checksum is wrong, is
quarantined: its whole hash directory moves to ``<device>/quarantined/objects[-N]/`` and the
object reads as missing until the replicator brings a good copy back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from objectd.cached_io import CachedReads, WouldBlock
from objectd.devices import Devices
from objectd.diskio import DiskIO
from objectd.errors import DeviceUnavailable
from objectd.layout import data_dir_name
from objectd.limits import SMALL_BODY_BYTES_MAX, VERIFY_READ_BYTES
from objectd.metadata import (
    FOOTER_BYTES,
    CorruptFile,
    ObjectFile,
    OnDiskFiles,
    body_hasher,
    choose_files,
    read_file,
)
from objectd.object_headers import merge_meta
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.disk")

_READ_ATTEMPTS_MAX = 3  # a file replaced between listdir and open: list again, a few times


@dataclasses.dataclass(slots=True)
class ObjectState:
    """What is on disk for one object, as of one directory listing."""

    hash_dir: str
    files: OnDiskFiles
    metadata: dict[str, str] | None = None  # .data merged with .meta; None: no object
    data_metadata: dict[str, str] | None = None
    body_bytes: int = 0
    body: bytes | None = None  # whole body of a small object
    fd: int | None = None  # open .data, when asked for and the body was not read whole
    quarantined: bool = False

    @property
    def exists(self) -> bool:
        return self.metadata is not None

    @property
    def timestamp(self) -> Timestamp | None:
        """X-Timestamp of what a reader sees (the .meta's if there is one)."""
        return self.files.newest_timestamp if self.exists else self.files.state_timestamp

    @property
    def data_timestamp(self) -> Timestamp | None:
        return self.files.state_timestamp

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_state(
    devices: Devices,
    device: str,
    policy_index: int,
    hash_dir: str,
    allowed: frozenset[str],
    *,
    keep_open: bool = False,
    read_whole: bool = False,
) -> ObjectState:
    """The state of the object in ``hash_dir``.

    Args:
        keep_open: leave the ``.data`` open in ``state.fd`` (unless its body was read whole).
        read_whole: read and MD5-check the whole body when the file is small.

    Raises:
        DeviceUnavailable: the device is missing or unmounted.
    """
    devices.check(device)
    for _attempt in range(_READ_ATTEMPTS_MAX):
        try:
            names = devices.io.listdir(hash_dir)
        except FileNotFoundError:
            names = []
        state = ObjectState(hash_dir, choose_files(names))
        if state.files.data is None:
            return state
        try:
            _read_data(devices.io, state, allowed, keep_open=keep_open, read_whole=read_whole)
        except CorruptFile as exc:
            state.close()
            log.error("quarantining %s: %s", hash_dir, exc)
            quarantine(devices, device, policy_index, hash_dir)
            return ObjectState(hash_dir, OnDiskFiles(), quarantined=True)
        except FileNotFoundError:  # replaced under us by a newer write: list again
            state.close()
            continue
        return state
    raise OSError(f"{hash_dir} keeps changing under the reader")


def read_state_cached(
    devices: Devices,
    reads: CachedReads,
    device: str,
    hash_dir: str,
    allowed: frozenset[str],
    *,
    keep_open: bool = False,
    read_whole: bool = False,
) -> ObjectState | None:
    """:func:`read_state` from the kernel's caches alone, to run on the event loop.

    Returns None when that would wait for the disk, or when the files need the threaded path's
    care (a corrupt file to quarantine, a file replaced during the read): the caller then runs
    :func:`read_state` on the device's threads.

    Raises:
        DeviceUnavailable: the device is missing or unmounted.
    """
    if devices.mount_check:  # files under an unmounted mount point must not be served
        devices.check(device)  # stats of the device root and its parent: cached when in use
    try:
        try:
            names = reads.listdir(hash_dir)
        except FileNotFoundError:  # a cached negative entry: no such object
            names = []
        state = ObjectState(hash_dir, choose_files(names))
        if state.files.data is None:
            # Without mount_check a found object proves the device is there (one stat less per
            # GET); "not found" must still tell a missing object from a missing device (507).
            devices.check(device)
            return state
        try:
            _read_data(reads, state, allowed, keep_open=keep_open, read_whole=read_whole)
        except BaseException:
            state.close()
            raise
    except (WouldBlock, CorruptFile, OSError):
        return None
    return state


def _read_data(
    io: DiskIO | CachedReads,
    state: ObjectState,
    allowed: frozenset[str],
    *,
    keep_open: bool,
    read_whole: bool,
) -> None:
    assert state.files.data is not None
    fd = io.open(os.path.join(state.hash_dir, state.files.data), os.O_RDONLY)
    try:
        file_bytes = io.fstat(fd).st_size
        whole_max = SMALL_BODY_BYTES_MAX + FOOTER_BYTES if read_whole else 0
        data = read_file(io, fd, file_bytes, read_whole_max=whole_max)
        _check_data(data)
    except BaseException:
        os.close(fd)
        raise
    if data.body is not None or not keep_open:
        os.close(fd)
    else:
        state.fd = fd
    meta = _read_meta(io, state) if state.files.meta else None
    state.data_metadata = data.metadata
    state.metadata = merge_meta(data.metadata, meta, allowed)
    state.body_bytes = data.body_bytes
    state.body = data.body


def _check_data(data: ObjectFile) -> None:
    """Pair check of what the writer asserted: size and (for a whole body) its checksum as
    recorded (xxh3-64, or the MD5 of files written before it: ``body_hasher``)."""
    try:
        recorded_bytes = int(data.metadata["Content-Length"])
        new_hasher, expected = body_hasher(data.metadata)
    except (KeyError, ValueError):
        raise CorruptFile("data file without Content-Length or ETag") from None
    if recorded_bytes != data.body_bytes:
        raise CorruptFile(f"body of {data.body_bytes} bytes, metadata says {recorded_bytes}")
    if data.body is not None and new_hasher(data.body).hexdigest() != expected:
        raise CorruptFile("the body does not match its recorded checksum")


def _read_meta(io: DiskIO | CachedReads, state: ObjectState) -> dict[str, str] | None:
    assert state.files.meta is not None
    try:
        fd = io.open(os.path.join(state.hash_dir, state.files.meta), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return read_file(io, fd, io.fstat(fd).st_size).metadata
    finally:
        os.close(fd)


def digest_of_range(
    devices: Devices, fd: int, offset: int, count: int, new_hasher: Callable[[], Any]
) -> str:
    """Hex digest (``new_hasher``: hashlib.md5, xxhash.xxh3_64) of ``count`` bytes of ``fd``
    from ``offset`` (a short file hashes what it has)."""
    digest = new_hasher()
    end = offset + count
    while offset < end:
        chunk = devices.io.pread(fd, min(VERIFY_READ_BYTES, end - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def quarantine(devices: Devices, device: str, policy_index: int, hash_dir: str) -> str | None:
    """Move ``hash_dir`` under ``<device>/quarantined/objects[-N]/``; return the new path.

    Returns None when the directory is already gone (another reader quarantined it first).
    """
    kind = data_dir_name("objects", policy_index)
    target_dir = devices.layout.quarantine_dir(device, kind)
    try:
        devices.io.makedirs(target_dir)
    except FileNotFoundError:
        raise DeviceUnavailable(f"device {device!r} vanished") from None
    target = os.path.join(target_dir, os.path.basename(hash_dir))
    if os.path.exists(target):
        target = f"{target}-{uuid.uuid4().hex}"
    try:
        devices.io.rename_dir(hash_dir, target)
    except FileNotFoundError:
        return None
    return target
