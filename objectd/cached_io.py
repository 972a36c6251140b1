"""File reads that are served from the kernel's caches or not at all: never a wait for the disk.

Public: :class:`CachedReads`, :class:`WouldBlock`, :func:`cached_reads_for`.

Why: a GET of a small object that is in the page cache costs ~20 µs of syscalls, and the hop
to a disk thread and back costs more than that (a future, a wake-up of the event loop, two GIL
hand-overs). The event loop may do such a read itself if it is certain not to wait for the
disk, the way io_uring tries a non-blocking attempt before it punts work to its threads:

- path lookups use ``openat2(..., RESOLVE_CACHED)`` (Linux 5.12+): the kernel fails the open with
  EAGAIN unless every component of the path is already in its dentry cache;
- reads use ``preadv2(..., RWF_NOWAIT)``: EAGAIN (or a short read) unless the bytes are in the
  page cache.

Either refusal raises :class:`WouldBlock`, and the caller redoes the whole read on the device's
threads (:meth:`objectd.devices.Devices.run`). The remaining calls (``getdents`` of a hash
directory whose dentry is cached, ``fstat`` of an open file, ``close`` of a read-only file) do not
wait for the disk on XFS (a small directory lives in its inode) and seldom on ext4 (a directory
block evicted while its dentry stays cached).

The methods mirror :class:`objectd.diskio.DiskIO`'s read side, so the object read code runs
unchanged over either. A fault plan disables cached reads altogether (see
:func:`cached_reads_for`): tests that inject faults count the threaded path's calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from objectd.diskio import DiskIO

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64 (the unified syscall table)
_RESOLVE_CACHED = 0x20
_AT_FDCWD = -100
_OPEN_HOW = struct.Struct("QQQ")  # struct open_how {u64 flags; u64 mode; u64 resolve;}
_REFUSALS = (errno.EAGAIN, errno.EWOULDBLOCK)
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.E2BIG, errno.EPERM)


class WouldBlock(Exception):
    """The call would have waited for the disk (or the kernel cannot promise it would not)."""


class CachedReads:
    """The read calls of :class:`objectd.diskio.DiskIO`, refused with :class:`WouldBlock` when
    they would wait for the disk. Safe to share between threads; holds no file descriptors."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self.enabled = True  # cleared for good once the kernel refuses RWF_NOWAIT
        self._how: dict[int, bytes] = {}  # open flags -> packed struct open_how

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return self._openat2(path, flags | os.O_CLOEXEC)

    def listdir(self, path: str) -> list[str]:
        fd = self._openat2(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        buffer = bytearray(size)
        try:
            count = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            raise WouldBlock("not in the page cache") from None
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                self.enabled = False
                raise WouldBlock(f"RWF_NOWAIT refused: {exc}") from None
            raise
        if count != size:  # partly cached, or a short file: the threaded path decides which
            raise WouldBlock(f"{count} of {size} bytes in the page cache")
        return bytes(buffer)

    def _openat2(self, path: str, flags: int) -> int:
        how = self._how.get(flags)
        if how is None:
            how = self._how[flags] = _OPEN_HOW.pack(flags, 0, _RESOLVE_CACHED)
        fd = self._syscall(_SYS_OPENAT2, _AT_FDCWD, os.fsencode(path), how, len(how))
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code in _REFUSALS:
            raise WouldBlock(f"{path} is not in the dentry cache")
        if code in _UNSUPPORTED:
            self.enabled = False
            raise WouldBlock(f"openat2 refused: {os.strerror(code)}")
        raise OSError(code, os.strerror(code), path)


def cached_reads_for(io: DiskIO) -> CachedReads | None:
    """Cached reads next to ``io``, or None where they cannot be used: a fault plan is active,
    or the kernel lacks ``openat2`` with ``RESOLVE_CACHED`` or ``RWF_NOWAIT``."""
    if io.faults or not hasattr(os, "RWF_NOWAIT") or not hasattr(os, "preadv"):
        return None
    reads = CachedReads()
    try:
        os.close(reads.open("/", os.O_RDONLY | os.O_DIRECTORY))
    except (WouldBlock, OSError):
        return None
    return reads if reads.enabled else None
