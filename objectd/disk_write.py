"""Writing objects durably: temp file → write → fsync → link into place → fsync directories.

Public: :class:`ObjectWriter`, :func:`put_small`, :func:`write_marker`, :class:`TempFile`,
:func:`link_into`.

All functions here block and run on the device's threads (``Devices.run``).

The durable write path, and why each step is there:

1. **Temp file on the same device.** ``O_TMPFILE`` in ``<device>/tmp``: an unnamed inode that the
   kernel frees if we crash, so an interrupted PUT leaves *nothing* behind, not even a temp name.
   Filesystems without ``O_TMPFILE`` get a named ``<device>/tmp/<uuid>.tmp`` instead (removed on
   abort; a crash can leave one there, never inside ``objects/``, and ``objectd.tmp_reclaim``
   removes it once it is older than ``tmp_reclaim_age_s``).
2. **Space first.** ``fstatvfs`` against ``fallocate_reserve`` (507 when the write would break it),
   and ``fallocate`` for bodies larger than one hop, so ENOSPC comes before the data, not after.
   The trailer is then written past the fallocated body, so blocks allocated beyond the end are
   trimmed before the fsync (XFS would otherwise keep ~2 MiB of speculative preallocation per
   object for good).
3. **Stream and hash.** Body buffers are written and hashed on the disk thread (MD5 for the ETag,
   xxh3-64 for readers' verification: ``objectd.metadata.BODY_CHECKSUM_KEY``); the ETag and size
   are checked against what the client announced (422 / 499) before anything is visible.
4. **Trailer, then fsync.** The metadata trailer is appended and the file fsynced: body and
   metadata are now durable together (``objectd.metadata``). A body larger than
   ``keep_cache_bytes_max`` is then dropped from the page cache, as Swift drops every object it
   writes: the next writes reuse those pages instead of taking fresh ones (on this project's VMs,
   filling a never-used page-cache page costs ~10x a reused one: 2.4 vs 0.2 ms per MiB).
5. **Newest wins.** The hash directory is listed; if it already holds a ``.data`` or ``.ts`` as new
   as ours, the write is refused with 409 and the newer file stays.
6. **Link into place, fsync the directory.** ``linkat`` (or ``rename``) to ``<timestamp>.data`` is
   the single moment the object becomes visible; the directory fsync makes that name durable, and
   every directory created on the way has its parent fsynced too.
7. **Clean up.** Files made obsolete by the new one (older ``.data``/``.ts``/``.meta``) are removed.
8. **Mark the suffix stale** in the partition's hash cache (``objectd.suffix_hashes``), so the
   replicator rehashes it; for PUT, POST and DELETE alike, in the same disk-thread hop.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Callable

import xxhash

from objectd.devices import Devices
from objectd.digest_footer import DigestFooter
from objectd.disk_read import ObjectState, read_state
from objectd.errors import (
    ClientDisconnect,
    Conflict,
    EtagMismatch,
    InvariantViolation,
    PreconditionFailed,
)
from objectd.limits import DROP_BEHIND_BYTES, SMALL_BODY_BYTES_MAX
from objectd.metadata import (
    BODY_CHECKSUM_KEY,
    DATA,
    OnDiskFiles,
    choose_files,
    encode_trailer,
    parse_file_name,
)
from objectd.suffix_hashes import invalidate_suffix
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.disk")

_NO_TMPFILE_ERRNOS = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)


class TempFile:
    """An open temp file on a device: unnamed (O_TMPFILE) or named in ``<device>/tmp``."""

    __slots__ = ("devices", "fd", "path")

    def __init__(self, devices: Devices, device: str):
        self.devices = devices
        self.path: str | None = None
        tmp_dir = devices.layout.tmp_dir(device)
        if not devices.named_temp_files and device not in devices.no_tmpfile:
            try:
                self.fd = self._open_unnamed(tmp_dir)
                return
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE_ERRNOS:
                    raise
                devices.no_tmpfile.add(device)
        self.path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            self.fd = devices.io.open(self.path, flags)
        except FileNotFoundError:
            devices.io.makedirs(tmp_dir)
            self.fd = devices.io.open(self.path, flags)

    def _open_unnamed(self, tmp_dir: str) -> int:
        try:
            return self.devices.io.open_tmpfile(tmp_dir)
        except FileNotFoundError:
            self.devices.io.makedirs(tmp_dir)
            return self.devices.io.open_tmpfile(tmp_dir)

    def publish(self, directory: str, directory_fd: int, name: str) -> None:
        """Give the file its final name (raises FileExistsError if a file has it already)."""
        if self.path is None:
            self.devices.io.link_fd(self.fd, directory_fd, name)
        else:
            target = os.path.join(directory, name)
            if os.path.exists(target):
                raise FileExistsError(errno.EEXIST, "exists", target)
            self.devices.io.rename(self.path, target)
            self.path = None

    def close(self) -> None:
        """Close; a named temp file that was not published is removed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            try:
                self.devices.io.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def _refuse_older(files: OnDiskFiles, timestamp: Timestamp, if_none_match_star: bool) -> None:
    if files.state_timestamp is not None and files.state_timestamp >= timestamp:
        raise Conflict(timestamp=files.state_timestamp)
    if if_none_match_star and files.data is not None:
        raise PreconditionFailed("If-None-Match: * and the object exists")


def link_into(devices: Devices, temp: TempFile, directory: str, name: str) -> None:
    """Make ``temp`` durable as ``directory/name``: create missing directories, link, fsync the
    directory and the parent of every directory created (raises FileExistsError if taken)."""
    io = devices.io
    created = io.makedirs(directory)
    directory_fd = io.open_dir(directory)
    try:
        temp.publish(directory, directory_fd, name)
        io.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    for created_dir in reversed(created):
        io.fsync_dir(os.path.dirname(created_dir))


def _publish(
    devices: Devices, temp: TempFile, hash_dir: str, name: str, names_before: list[str]
) -> None:
    """Link ``temp`` as ``hash_dir/name`` durably, then remove the files it made obsolete."""
    io = devices.io
    try:
        link_into(devices, temp, hash_dir, name)
    except FileExistsError:
        parsed = parse_file_name(name)
        raise Conflict(timestamp=parsed[0] if parsed else None) from None
    for obsolete in choose_files([*names_before, name]).obsolete:
        try:
            io.unlink(os.path.join(hash_dir, obsolete))
        except FileNotFoundError:
            pass
    _mark_suffix_stale(hash_dir)


def _mark_suffix_stale(hash_dir: str) -> None:
    """Tell the replicator's hash cache that this object's suffix changed (in the same disk-thread
    hop as the write). A failure is logged, never raised: the write is already durable, and the
    cache's age bound rehashes the suffix later anyway."""
    suffix_dir = os.path.dirname(hash_dir)
    try:
        invalidate_suffix(os.path.dirname(suffix_dir), os.path.basename(suffix_dir))
    except OSError:
        log.exception("cannot mark the suffix of %s stale", hash_dir)


def _list(devices: Devices, hash_dir: str) -> list[str]:
    try:
        return devices.io.listdir(hash_dir)
    except FileNotFoundError:
        return []


class ObjectWriter:
    """One PUT: :meth:`open`, then :meth:`write` any number of times, then :meth:`commit` or
    :meth:`abort`. Each call blocks and runs on the device's threads, one call at a time."""

    def __init__(
        self,
        devices: Devices,
        device: str,
        hash_dir: str,
        expected_bytes: int | None,
        *,
        md5_from_footer: bool = False,
    ):
        """``md5_from_footer``: the proxy sends the body's MD5 in a digest footer
        (:mod:`objectd.digest_footer`), so this writer hashes with xxh3-64 only."""
        self.md5_from_footer = md5_from_footer
        self.devices = devices
        self.device = device
        self.hash_dir = hash_dir
        self.expected_bytes = expected_bytes
        self.bytes_written = 0
        self._md5 = hashlib.md5()
        self._checksum = xxhash.xxh3_64()  # for readers' verification (BODY_CHECKSUM_KEY)
        self._temp: TempFile | None = None
        self._fallocated = False
        self._dropped_at = 0  # bytes_written at the last drop behind (DROP_BEHIND_BYTES)

    def open(self, timestamp: Timestamp, if_none_match_star: bool, *, precheck: bool) -> None:
        """Check the device and space (and, with ``precheck``, the timestamp); open the temp file.

        Raises:
            DeviceUnavailable, DiskFull, Conflict, PreconditionFailed.
        """
        self.devices.check(self.device)
        if precheck:
            _refuse_older(
                choose_files(_list(self.devices, self.hash_dir)), timestamp, if_none_match_star
            )
        self._temp = TempFile(self.devices, self.device)
        try:
            announced = self.expected_bytes or 0
            self.devices.check_space(self._temp.fd, announced)
            if announced > SMALL_BODY_BYTES_MAX:
                self.devices.io.fallocate(self._temp.fd, announced)
                self._fallocated = True
        except BaseException:
            self.abort()
            raise

    def write(self, chunks: list[bytes]) -> None:
        """Append ``chunks`` (network chunks, written with one writev, never joined)."""
        assert self._temp is not None, "write before open"
        self.devices.io.writev(self._temp.fd, chunks)
        for chunk in chunks:
            if not self.md5_from_footer:
                self._md5.update(chunk)
            self._checksum.update(chunk)
            self.bytes_written += len(chunk)
        if self._leaves_cache() and self.bytes_written - self._dropped_at >= DROP_BEHIND_BYTES:
            self.devices.io.drop_cache(self._temp.fd)  # writes back the new, frees the written
            self._dropped_at = self.bytes_written

    def commit(
        self,
        last: list[bytes],
        metadata: dict[str, str],
        timestamp: Timestamp,
        client_etag: str | None,
        if_none_match_star: bool,
        footer: DigestFooter | None = None,
    ) -> str:
        """Write ``last``, check size and ETag (and the proxy's digests, when it sent a
        ``footer``), make the object durable and visible; return the ETag. On any error the temp
        file is gone and nothing is visible.

        Raises:
            ClientDisconnect, EtagMismatch, Conflict, PreconditionFailed, DiskFull, OSError.
        """
        assert self._temp is not None, "commit before open"
        try:
            for chunk in last:
                if not self.md5_from_footer:
                    self._md5.update(chunk)
                self._checksum.update(chunk)
                self.bytes_written += len(chunk)
            etag = self._check_body(client_etag, footer)
            metadata["ETag"] = etag
            metadata[BODY_CHECKSUM_KEY] = self._checksum.hexdigest()  # computed here, never copied
            metadata["Content-Length"] = str(self.bytes_written)
            trailer = encode_trailer(metadata, self.bytes_written)
            self.devices.io.writev(self._temp.fd, [*last, trailer])  # tail and trailer: one call
            if self._fallocated:  # the trailer went past the fallocated body
                self.devices.io.trim_after_eof(self._temp.fd)
            self.devices.io.fsync(self._temp.fd)
            if self._leaves_cache():  # after the fsync: every page is clean
                self.devices.io.drop_cache(self._temp.fd)
            names = _list(self.devices, self.hash_dir)
            _refuse_older(choose_files(names), timestamp, if_none_match_star)
            _publish(self.devices, self._temp, self.hash_dir, timestamp.internal + DATA, names)
            return etag
        finally:
            self.abort()

    def _leaves_cache(self) -> bool:
        """Whether this body (so far) is too large to keep cached (``keep_cache_bytes_max``)."""
        keep_max = self.devices.keep_cache_bytes_max
        return 0 <= keep_max < self.bytes_written

    def _check_body(self, client_etag: str | None, footer: DigestFooter | None) -> str:
        if self.expected_bytes is not None and self.bytes_written != self.expected_bytes:
            if self.bytes_written < self.expected_bytes:
                raise ClientDisconnect(f"got {self.bytes_written} of {self.expected_bytes} bytes")
            raise InvariantViolation(
                f"wrote {self.bytes_written} bytes, more than the {self.expected_bytes} announced"
            )
        if self.md5_from_footer:
            if footer is None:
                raise InvariantViolation("a writer told to take the MD5 from a footer got none")
            if self._checksum.hexdigest() != footer.xxh3:
                raise EtagMismatch(
                    f"body xxh3 is {self._checksum.hexdigest()}, the proxy sent {footer.xxh3}"
                )
            etag = footer.md5
        else:
            etag = self._md5.hexdigest()
        if client_etag is not None and client_etag != etag:
            raise EtagMismatch(f"body MD5 is {etag}, client sent {client_etag}")
        return etag

    def abort(self) -> None:
        """Drop the temp file (idempotent)."""
        if self._temp is not None:
            self._temp.close()
            self._temp = None


def put_small(
    writer: ObjectWriter,
    body: list[bytes],
    metadata: dict[str, str],
    timestamp: Timestamp,
    client_etag: str | None,
    if_none_match_star: bool,
    footer: DigestFooter | None = None,
) -> str:
    """A whole PUT received before this hop, as its network chunks, in one thread hop: open,
    write, fsync, link, fsync dirs, clean up."""
    writer.open(timestamp, if_none_match_star, precheck=False)
    return writer.commit(body, metadata, timestamp, client_etag, if_none_match_star, footer)


def write_marker(
    devices: Devices,
    device: str,
    policy_index: int,
    hash_dir: str,
    allowed: frozenset[str],
    extension: str,
    metadata: dict[str, str],
    timestamp: Timestamp,
    decide: Callable[[ObjectState], None],
) -> ObjectState:
    """Write a ``.ts`` (DELETE) or ``.meta`` (POST) after ``decide`` accepts the current state.

    ``decide`` sees the state before the write and raises to refuse it (409, 404, 412). Returns
    that state, so the caller can tell whether there was an object.
    """
    state = read_state(devices, device, policy_index, hash_dir, allowed)
    decide(state)
    temp = TempFile(devices, device)
    try:
        devices.io.write(temp.fd, encode_trailer(metadata, 0))
        devices.io.fsync(temp.fd)
        names = _list(devices, hash_dir)
        newest = choose_files(names).newest_timestamp
        if newest is not None and newest >= timestamp:
            raise Conflict(timestamp=newest)
        _publish(devices, temp, hash_dir, timestamp.internal + extension, names)
    finally:
        temp.close()
    return state
