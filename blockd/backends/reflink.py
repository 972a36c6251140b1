"""The reflink backend: a volume is a sparse file on XFS or btrfs; snapshot and clone = FICLONE.

Public: :class:`ReflinkBackend`, :func:`ficlone`.

For nodes without device-mapper. FICLONE shares every extent of the source (O(1) in the size,
measured 0.7 ms for a 4 GiB file on XFS); later writes to either file are copied on write by the
file system. Layout of ``reflink_dir``::

    volume-<uuid>        the volume (mode 0600), user.shoal.chap = "<user>:<password>"
    _snapshot-<uuid>     a snapshot, user.shoal.volume_id = "<uuid of its volume>"
    .tmp-<name>          a file being made; renamed into place when complete, removed at start

Snapshots are independent files, so a volume can be deleted while it has snapshots.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from pathlib import Path

from blockd.errors import ConfigurationError, Conflict, InsufficientCapacity, NotFound
from blockd.model import (
    SNAPSHOT_PREFIX,
    VOLUME_PREFIX,
    Capacity,
    Snapshot,
    Volume,
    id_from_name,
    snapshot_name,
    volume_name,
)

log = logging.getLogger("blockd.reflink")

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h
XATTR_VOLUME_ID = "user.shoal.volume_id"
XATTR_CHAP = "user.shoal.chap"
TMP_PREFIX = ".tmp-"
FILE_MODE = 0o600  # volume contents are tenant data


def ficlone(source: Path, target: Path) -> None:
    """Create ``target`` as a reflink copy of ``source`` (raises OSError, EOPNOTSUPP if none)."""
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            fcntl.ioctl(fd, FICLONE, src.fileno())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            target.unlink(missing_ok=True)
            raise
        os.close(fd)


def _space_error(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientCapacity(f"{what}: no space left in the volume directory")
    return exc


class ReflinkBackend:
    independent_snapshots = True

    def __init__(self, directory: Path, max_over_subscription_ratio: float):
        self.directory = Path(directory)
        self.max_over_subscription_ratio = max_over_subscription_ratio

    # --- paths ------------------------------------------------------------------------------
    def _volume_path(self, volume_id: str) -> Path:
        return self.directory / volume_name(volume_id)

    def _snapshot_path(self, snapshot_id: str) -> Path:
        return self.directory / snapshot_name(snapshot_id)

    def _tmp_path(self, name: str) -> Path:
        return self.directory / (TMP_PREFIX + name)

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(TMP_PREFIX + "*"):
            log.warning("removing %s left by an interrupted operation", leftover)
            leftover.unlink(missing_ok=True)
        probe = self._tmp_path("reflink-probe")
        probe.write_bytes(b"shoal reflink probe\n")
        try:
            ficlone(probe, self._tmp_path("reflink-probe-clone"))
        except OSError as exc:
            raise ConfigurationError(
                f"reflink_dir {str(self.directory)!r} does not support reflink (FICLONE: "
                f"{exc.strerror}); use XFS made with -m reflink=1 or btrfs, or backend = lvm-thin"
            ) from None
        finally:
            probe.unlink(missing_ok=True)
            self._tmp_path("reflink-probe-clone").unlink(missing_ok=True)

    async def capacity(self) -> Capacity:
        return await asyncio.to_thread(self._capacity_sync)

    def _capacity_sync(self) -> Capacity:
        st = os.statvfs(self.directory)
        volumes = self._list_volumes_sync()
        return Capacity(
            total_bytes=st.f_blocks * st.f_frsize,
            free_bytes=st.f_bavail * st.f_frsize,
            provisioned_bytes=sum(v.size_bytes for v in volumes),
            volume_count=len(volumes),
            max_over_subscription_ratio=self.max_over_subscription_ratio,
        )

    # --- volumes ----------------------------------------------------------------------------
    async def list_volumes(self) -> list[Volume]:
        return await asyncio.to_thread(self._list_volumes_sync)

    def _list_volumes_sync(self) -> list[Volume]:
        volumes = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                volume_id = id_from_name(entry.name, VOLUME_PREFIX)
                if volume_id is not None:
                    volumes.append(Volume(volume_id, entry.stat().st_size))
        return sorted(volumes, key=lambda v: v.id)

    async def get_volume(self, volume_id: str) -> Volume:
        return await asyncio.to_thread(self._get_volume_sync, volume_id)

    def _get_volume_sync(self, volume_id: str) -> Volume:
        try:
            return Volume(volume_id, self._volume_path(volume_id).stat().st_size)
        except FileNotFoundError:
            raise NotFound(f"volume {volume_id} not found") from None

    def _publish(self, tmp: Path, final: Path) -> None:
        """Rename a complete file into place; the name appears only once the content is there."""
        if final.exists():
            tmp.unlink(missing_ok=True)
            raise Conflict(f"{final.name} already exists")
        os.rename(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def create_volume(self, volume_id: str, size_bytes: int) -> Volume:
        return await asyncio.to_thread(self._create_sync, volume_id, None, size_bytes)

    async def create_from_snapshot(
        self, volume_id: str, snapshot: Snapshot, size_bytes: int
    ) -> Volume:
        source = self._snapshot_path(snapshot.id)
        return await asyncio.to_thread(self._create_sync, volume_id, source, size_bytes)

    async def clone_volume(self, volume_id: str, source: Volume, size_bytes: int) -> Volume:
        source_path = self._volume_path(source.id)
        return await asyncio.to_thread(self._create_sync, volume_id, source_path, size_bytes)

    def _create_sync(self, volume_id: str, source: Path | None, size_bytes: int) -> Volume:
        final = self._volume_path(volume_id)
        if final.exists():
            raise Conflict(f"volume {volume_id} already exists")
        tmp = self._tmp_path(final.name)
        tmp.unlink(missing_ok=True)
        try:
            if source is None:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                os.close(fd)
            else:
                ficlone(source, tmp)
            if tmp.stat().st_size < size_bytes:
                os.truncate(tmp, size_bytes)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _space_error(exc, f"create volume {volume_id}") from exc
        self._publish(tmp, final)
        return Volume(volume_id, final.stat().st_size)

    async def extend_volume(self, volume: Volume, size_bytes: int) -> Volume:
        path = self._volume_path(volume.id)
        await asyncio.to_thread(os.truncate, path, size_bytes)
        return Volume(volume.id, size_bytes)

    async def delete_volume(self, volume: Volume) -> None:
        await asyncio.to_thread(self._volume_path(volume.id).unlink, missing_ok=True)

    async def revert_volume(self, volume: Volume, snapshot: Snapshot) -> Volume:
        return await asyncio.to_thread(self._revert_sync, volume, snapshot)

    def _revert_sync(self, volume: Volume, snapshot: Snapshot) -> Volume:
        final = self._volume_path(volume.id)
        tmp = self._tmp_path(final.name)
        tmp.unlink(missing_ok=True)
        ficlone(self._snapshot_path(snapshot.id), tmp)
        if tmp.stat().st_size < volume.size_bytes:
            os.truncate(tmp, volume.size_bytes)
        chap = _get_xattr(final, XATTR_CHAP)
        if chap is not None:
            os.setxattr(tmp, XATTR_CHAP, chap)
        os.replace(tmp, final)  # atomic: a crash leaves either the old or the reverted content
        return Volume(volume.id, final.stat().st_size)

    # --- snapshots --------------------------------------------------------------------------
    async def list_snapshots(self) -> list[Snapshot]:
        return await asyncio.to_thread(self._list_snapshots_sync)

    def _list_snapshots_sync(self) -> list[Snapshot]:
        snapshots = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                snapshot_id = id_from_name(entry.name, SNAPSHOT_PREFIX)
                if snapshot_id is not None:
                    snapshots.append(self._snapshot_from(Path(entry.path), snapshot_id))
        return sorted(snapshots, key=lambda s: s.id)

    def _snapshot_from(self, path: Path, snapshot_id: str) -> Snapshot:
        volume_id = (_get_xattr(path, XATTR_VOLUME_ID) or b"").decode()
        return Snapshot(snapshot_id, volume_id, path.stat().st_size)

    async def get_snapshot(self, snapshot_id: str) -> Snapshot:
        path = self._snapshot_path(snapshot_id)
        try:
            return await asyncio.to_thread(self._snapshot_from, path, snapshot_id)
        except FileNotFoundError:
            raise NotFound(f"snapshot {snapshot_id} not found") from None

    async def create_snapshot(self, snapshot_id: str, volume: Volume) -> Snapshot:
        return await asyncio.to_thread(self._create_snapshot_sync, snapshot_id, volume)

    def _create_snapshot_sync(self, snapshot_id: str, volume: Volume) -> Snapshot:
        final = self._snapshot_path(snapshot_id)
        if final.exists():
            raise Conflict(f"snapshot {snapshot_id} already exists")
        tmp = self._tmp_path(final.name)
        tmp.unlink(missing_ok=True)
        try:
            ficlone(self._volume_path(volume.id), tmp)
        except FileNotFoundError:
            raise NotFound(f"volume {volume.id} not found") from None
        os.setxattr(tmp, XATTR_VOLUME_ID, volume.id.encode())
        self._publish(tmp, final)
        return Snapshot(snapshot_id, volume.id, final.stat().st_size)

    async def delete_snapshot(self, snapshot: Snapshot) -> None:
        await asyncio.to_thread(self._snapshot_path(snapshot.id).unlink, missing_ok=True)

    async def changed_ranges(self, old: Snapshot, new: Snapshot) -> list[tuple[int, int]] | None:
        """Unknown here (shared extents could tell, through FIEMAP; not done): content is compared."""
        return None

    # --- export support ---------------------------------------------------------------------
    async def device_path(self, volume: Volume) -> str:
        return str(self._volume_path(volume.id))

    async def get_chap(self, volume: Volume) -> tuple[str, str] | None:
        raw = await asyncio.to_thread(_get_xattr, self._volume_path(volume.id), XATTR_CHAP)
        if raw is None:
            return None
        username, _, password = raw.decode().partition(":")
        return username, password

    async def set_chap(self, volume: Volume, username: str, password: str) -> None:
        value = f"{username}:{password}".encode()
        await asyncio.to_thread(os.setxattr, self._volume_path(volume.id), XATTR_CHAP, value)


def _get_xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise
