"""The one seam between objectd and the kernel's file syscalls, so tests can inject faults.

Public: :class:`DiskIO`, :class:`FaultPlan`, :data:`OPERATIONS`.

Every disk operation of the object and database layers goes through a :class:`DiskIO`. With no
fault plan its methods are thin wrappers over ``os``. A fault plan makes chosen calls fail with a
chosen errno while still using real files, so a test can, for example, fail the second
``fsync`` with EIO or every tenth ``rename`` with ENOSPC and check that nothing partial becomes
visible. Plans are text (they come from the ``fault_injection`` option of a real objectd):

``fsync@2=EIO``        the 2nd fsync fails (calls are counted per operation, from 1)
``write@3+=ENOSPC``    the 3rd write and every later one fail
``rename%0.25=EIO``    each rename fails with probability 0.25 (``seed=N`` fixes the draw)

Items are separated by commas. Faults are raised before the real call, so a failed call has no
effect on disk: the fault models an operation that the kernel refused.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import threading

OPERATIONS = (
    "open",
    "write",
    "read",
    "fsync",
    "fallocate",
    "statvfs",
    "rename",
    "link",
    "unlink",
    "mkdir",
    "listdir",
)

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_IOV_MAX = 1024  # Linux limit of buffers per writev


@dataclasses.dataclass(frozen=True, slots=True)
class _Rule:
    operation: str
    errno_value: int
    nth: int = 0  # 0: not count-based
    and_later: bool = False
    probability: float = 0.0


class FaultPlan:
    """Which calls fail, parsed from text (see the module docstring). Thread-safe."""

    def __init__(self, text: str = ""):
        self.rules: list[_Rule] = []
        seed = 0
        for item in filter(None, (part.strip() for part in text.split(","))):
            if item.startswith("seed="):
                seed = int(item[5:])
                continue
            self.rules.append(_parse_rule(item))
        self._counts: dict[str, int] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def check(self, operation: str) -> None:
        """Raise the configured OSError if this call of ``operation`` is to fail."""
        with self._lock:
            count = self._counts.get(operation, 0) + 1
            self._counts[operation] = count
            for rule in self.rules:
                if rule.operation != operation:
                    continue
                if rule.nth and (count == rule.nth or (rule.and_later and count > rule.nth)):
                    break
                if rule.probability and self._random.random() < rule.probability:
                    break
            else:
                return
        raise OSError(rule.errno_value, f"injected fault: {os.strerror(rule.errno_value)}")


def _parse_rule(item: str) -> _Rule:
    head, sep, errno_name = item.partition("=")
    errno_value = getattr(errno, errno_name.strip(), None)
    if not sep or not isinstance(errno_value, int):
        raise ValueError(f"fault {item!r}: expected OP@N=ERRNO or OP%P=ERRNO")
    if "@" in head:
        operation, _, nth_text = head.partition("@")
        and_later = nth_text.endswith("+")
        rule = _Rule(
            operation.strip(), errno_value, nth=int(nth_text.rstrip("+")), and_later=and_later
        )
    elif "%" in head:
        operation, _, probability = head.partition("%")
        rule = _Rule(operation.strip(), errno_value, probability=float(probability))
    else:
        raise ValueError(f"fault {item!r}: expected OP@N=ERRNO or OP%P=ERRNO")
    if rule.operation not in OPERATIONS:
        raise ValueError(f"fault {item!r}: unknown operation (known: {', '.join(OPERATIONS)})")
    return rule


class DiskIO:
    """File syscalls, optionally failing per a :class:`FaultPlan`. Safe to share between threads."""

    def __init__(self, faults: FaultPlan | str = ""):
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan(faults)
        self._check = self.faults.check if self.faults else None

    # --- files ----------------------------------------------------------------------------------
    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if self._check:
            self._check("open")
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def open_tmpfile(self, directory: str) -> int:
        """An unnamed file in ``directory`` (O_TMPFILE): it vanishes if we crash before linking.

        Raises OSError (EOPNOTSUPP, EISDIR, EINVAL) where the filesystem cannot do it.
        """
        if not _O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not available")
        if self._check:
            self._check("open")
        return os.open(directory, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (retrying short writes)."""
        if self._check:
            self._check("write")
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def writev(self, fd: int, buffers: list[bytes]) -> None:
        """Write all of ``buffers`` in order with as few ``writev`` calls as the kernel allows
        (no joining copy of the network chunks)."""
        if self._check:
            self._check("write")
        pending = [memoryview(b) for b in buffers if b]
        while pending:
            written = os.writev(fd, pending[:_IOV_MAX])
            while written and pending:
                if written >= len(pending[0]):
                    written -= len(pending.pop(0))
                else:
                    pending[0] = pending[0][written:]
                    written = 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        if self._check:
            self._check("read")
        return os.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        if self._check:
            self._check("fsync")
        os.fsync(fd)

    def drop_cache(self, fd: int) -> None:
        """Drop ``fd``'s clean pages from the page cache and start writing back its dirty ones,
        which stay (a hint: errors are ignored)."""
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):
            pass

    def fallocate(self, fd: int, size: int) -> None:
        """Reserve ``size`` bytes (so ENOSPC comes now, not half-way); ignored where unsupported."""
        if self._check:
            self._check("fallocate")
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise

    def trim_after_eof(self, fd: int) -> None:
        """Free the blocks allocated past the end of ``fd`` (``ftruncate`` to its own size).

        Why: XFS marks a file that was ever ``fallocate``d as preallocated and then keeps the
        speculative preallocation of later extending writes for good; a 1 MiB object whose
        trailer extends its fallocated body would hold 3 MiB on disk. A truncate to the same
        size frees what lies past the end (on ext4 it is a no-op).
        """
        os.ftruncate(fd, os.fstat(fd).st_size)

    def fstatvfs(self, fd: int) -> os.statvfs_result:
        if self._check:
            self._check("statvfs")
        return os.fstatvfs(fd)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    # --- names ----------------------------------------------------------------------------------
    def rename(self, source: str, target: str) -> None:
        if self._check:
            self._check("rename")
        os.rename(source, target)

    def link_fd(self, fd: int, directory_fd: int, name: str) -> None:
        """Give the unnamed file ``fd`` (from :meth:`open_tmpfile`) the name ``name`` in the
        directory open as ``directory_fd`` (linkat with AT_SYMLINK_FOLLOW on /proc/self/fd)."""
        if self._check:
            self._check("link")
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory_fd, follow_symlinks=True)

    def open_dir(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def unlink(self, path: str) -> None:
        if self._check:
            self._check("unlink")
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        if self._check:
            self._check("listdir")
        return os.listdir(path)

    def mkdir(self, path: str) -> None:
        if self._check:
            self._check("mkdir")
        os.mkdir(path, 0o755)

    def makedirs(self, path: str) -> list[str]:
        """Create ``path`` and missing parents; return the directories created, outermost first.

        The caller fsyncs the parent of each created directory, so that the new names are as
        durable as the file that is linked into the innermost one.
        """
        missing: list[str] = []
        current = path
        while not os.path.isdir(current):
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        created: list[str] = []
        for directory in reversed(missing):
            try:
                self.mkdir(directory)
            except FileExistsError:
                continue
            created.append(directory)
        return created

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def rename_dir(self, source: str, target: str) -> None:
        self.rename(source, target)

    # --- devices --------------------------------------------------------------------------------
    def ismount(self, path: str) -> bool:
        return os.path.ismount(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def statvfs(self, path: str) -> os.statvfs_result:
        if self._check:
            self._check("statvfs")
        return os.statvfs(path)
