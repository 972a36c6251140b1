"""Volume backends: where a volume's bytes live and how snapshots and clones are made.

Public: :class:`VolumeBackend` (the protocol), :func:`make_backend`.

A backend's own metadata (LV names and tags, file names and xattrs) is the only record of what
exists: there is no second database that could drift from the storage. Both implementations make
snapshots and clones copy-on-write and O(1): dm-thin snapshots (``lvm_thin``) or FICLONE
(``reflink``). Sizes are whole GiB at the API, bytes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from blockd.model import Capacity, Snapshot, Volume

if TYPE_CHECKING:
    from blockd.commands import Runner
    from blockd.config import BlockdConfig


class VolumeBackend(Protocol):
    #: True when a snapshot survives the deletion of its volume (then delete needs no 409).
    independent_snapshots: bool

    async def start(self) -> None:
        """Check the storage is usable (raise ConfigurationError with the fix) and recover."""

    async def capacity(self) -> Capacity: ...
    async def list_volumes(self) -> list[Volume]: ...
    async def get_volume(self, volume_id: str) -> Volume:
        """The volume; NotFound if it does not exist."""

    async def create_volume(self, volume_id: str, size_bytes: int) -> Volume: ...
    async def create_from_snapshot(
        self, volume_id: str, snapshot: Snapshot, size_bytes: int
    ) -> Volume: ...
    async def clone_volume(self, volume_id: str, source: Volume, size_bytes: int) -> Volume: ...
    async def extend_volume(self, volume: Volume, size_bytes: int) -> Volume: ...
    async def delete_volume(self, volume: Volume) -> None: ...
    async def revert_volume(self, volume: Volume, snapshot: Snapshot) -> Volume:
        """Make the volume's content the snapshot's; the size stays the volume's."""

    async def list_snapshots(self) -> list[Snapshot]: ...
    async def get_snapshot(self, snapshot_id: str) -> Snapshot: ...
    async def create_snapshot(self, snapshot_id: str, volume: Volume) -> Snapshot: ...
    async def delete_snapshot(self, snapshot: Snapshot) -> None: ...
    async def changed_ranges(self, old: Snapshot, new: Snapshot) -> list[tuple[int, int]] | None:
        """Byte ranges ``(offset, length)`` outside which ``new`` equals ``old``, or None when
        the backend cannot tell cheaply (lvm-thin: thin_delta; reflink: None)."""

    async def device_path(self, volume: Volume) -> str:
        """The block device or file a target exports (activated if needed)."""

    async def get_chap(self, volume: Volume) -> tuple[str, str] | None: ...
    async def set_chap(self, volume: Volume, username: str, password: str) -> None:
        """Keep the volume's CHAP pair with the volume itself, so it is generated only once."""


def make_backend(config: BlockdConfig, runner: Runner) -> VolumeBackend:
    if config.backend == "reflink":
        from blockd.backends.reflink import ReflinkBackend

        return ReflinkBackend(config.reflink_dir, config.max_over_subscription_ratio)
    from blockd.backends.lvm_thin import LvmThinBackend

    return LvmThinBackend(
        runner, config.lvm_vg, config.thin_pool, config.max_over_subscription_ratio
    )
