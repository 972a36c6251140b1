"""What blockd does, independent of HTTP: the rules around the backend and the target.

Public: :class:`BlockService`.

The handlers in :mod:`blockd.api.app` parse requests and call one method here. This layer owns
the checks that need both halves (no delete or revert of an exported volume), capacity admission
(507 beyond the over-subscription ratio), the per-volume locks that keep two requests from
changing one volume at once, and the CHAP pair generated at a volume's first export.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import string

from blockd.backends import VolumeBackend
from blockd.errors import Conflict, InsufficientCapacity, InvalidRequest, NotFound
from blockd.model import Capacity, Chap, Export, Snapshot, Volume
from blockd.targets import Target
from shoal.units import GiB

log = logging.getLogger("blockd.service")

CHAP_USERNAME_CHARS = 20  # Cinder's generate_username()
CHAP_PASSWORD_CHARS = 16  # Cinder's generate_password(); RFC 3720 wants >= 12 bytes of secret
_CHAP_ALPHABET = string.ascii_letters + string.digits  # also safe in LV tags and tgt configs


def _random_text(length: int) -> str:
    """Random letters and digits, starting with a letter: LIO parses a CHAP_N that begins with
    "0x"/"0b" as hex/base64 and strips the prefix, so such a user name could never log in."""
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(_CHAP_ALPHABET) for _ in range(length - 1))


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it (bounded memory)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: collections.Counter[str] = collections.Counter()

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str):
        ordered = sorted(set(keys))  # a fixed order: two requests on the same pair cannot deadlock
        async with contextlib.AsyncExitStack() as stack:
            for key in ordered:
                self._users[key] += 1
                stack.callback(self._release, key)
                await stack.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
            yield

    def _release(self, key: str) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self._locks.pop(key, None)


class BlockService:
    def __init__(self, backend: VolumeBackend, target: Target, portals: list[str]):
        self.backend = backend
        self.target = target
        self.portals = tuple(portals)
        self.locks = KeyedLocks()

    async def start(self) -> None:
        await self.backend.start()
        await self.target.start()

    # --- capacity ---------------------------------------------------------------------------
    async def capacity(self) -> Capacity:
        return await self.backend.capacity()

    async def _admit(self, extra_bytes: int) -> None:
        """507 when ``extra_bytes`` more would pass the over-subscription limit."""
        capacity = await self.backend.capacity()
        limit = capacity.total_bytes * capacity.max_over_subscription_ratio
        if capacity.provisioned_bytes + extra_bytes > limit:
            raise InsufficientCapacity(
                f"{extra_bytes // GiB} GiB more would provision "
                f"{(capacity.provisioned_bytes + extra_bytes) / GiB:.0f} GiB, over the limit of "
                f"{limit / GiB:.0f} GiB ({capacity.max_over_subscription_ratio} x total)"
            )

    # --- volumes ----------------------------------------------------------------------------
    async def list_volumes(self) -> list[Volume]:
        return await self.backend.list_volumes()

    async def get_volume(self, volume_id: str) -> Volume:
        return await self.backend.get_volume(volume_id)

    async def _absent(self, volume_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.backend.get_volume(volume_id)
            raise Conflict(f"volume {volume_id} already exists")

    async def create_volume(
        self,
        volume_id: str,
        size_gib: int,
        *,
        snapshot_id: str | None = None,
        source_volume_id: str | None = None,
    ) -> Volume:
        if snapshot_id and source_volume_id:
            raise InvalidRequest("give snapshot_id or source_volume_id, not both")
        size_bytes = size_gib * GiB
        keys = [volume_id] + [k for k in (snapshot_id, source_volume_id) if k]
        async with self.locks.hold(*keys):
            await self._absent(volume_id)
            await self._admit(size_bytes)
            if snapshot_id:
                snapshot = await self.backend.get_snapshot(snapshot_id)
                self._check_not_smaller(size_bytes, snapshot.size_bytes, f"snapshot {snapshot_id}")
                return await self.backend.create_from_snapshot(volume_id, snapshot, size_bytes)
            if source_volume_id:
                source = await self.backend.get_volume(source_volume_id)
                self._check_not_smaller(size_bytes, source.size_bytes, f"volume {source_volume_id}")
                return await self.backend.clone_volume(volume_id, source, size_bytes)
            return await self.backend.create_volume(volume_id, size_bytes)

    @staticmethod
    def _check_not_smaller(size_bytes: int, source_bytes: int, what: str) -> None:
        if size_bytes < source_bytes:
            raise InvalidRequest(
                f"size_gib {size_bytes // GiB} is smaller than {what} ({source_bytes // GiB} GiB)"
            )

    async def delete_volume(self, volume_id: str) -> None:
        async with self.locks.hold(volume_id):
            volume = await self.backend.get_volume(volume_id)
            initiators = await self.target.initiators(volume.name)
            if initiators:
                raise Conflict(f"volume {volume_id} is exported to {', '.join(initiators)}")
            if not self.backend.independent_snapshots:
                snapshots = await self.list_snapshots(volume_id)
                if snapshots:
                    raise Conflict(f"volume {volume_id} has {len(snapshots)} snapshot(s)")
            await self.target.remove(volume.name)  # a target left without initiators, if any
            await self.backend.delete_volume(volume)

    async def extend_volume(self, volume_id: str, size_gib: int) -> Volume:
        size_bytes = size_gib * GiB
        async with self.locks.hold(volume_id):
            volume = await self.backend.get_volume(volume_id)
            if size_bytes <= volume.size_bytes:
                raise InvalidRequest(
                    f"size_gib {size_gib} is not larger than the volume's "
                    f"{volume.size_bytes // GiB} GiB (volumes only grow)"
                )
            await self._admit(size_bytes - volume.size_bytes)
            volume = await self.backend.extend_volume(volume, size_bytes)
            if await self.target.initiators(volume.name):
                await self.target.resized(volume.name, await self.backend.device_path(volume))
            return volume

    async def revert_volume(self, volume_id: str, snapshot_id: str) -> Volume:
        async with self.locks.hold(volume_id, snapshot_id):
            volume = await self.backend.get_volume(volume_id)
            snapshot = await self.backend.get_snapshot(snapshot_id)
            if snapshot.volume_id != volume_id:
                raise InvalidRequest(f"snapshot {snapshot_id} is not a snapshot of {volume_id}")
            if await self.target.initiators(volume.name):
                raise Conflict(f"volume {volume_id} is exported; detach it before a revert")
            return await self.backend.revert_volume(volume, snapshot)

    # --- snapshots --------------------------------------------------------------------------
    async def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        snapshots = await self.backend.list_snapshots()
        if volume_id is not None:
            snapshots = [s for s in snapshots if s.volume_id == volume_id]
        return snapshots

    async def get_snapshot(self, snapshot_id: str) -> Snapshot:
        return await self.backend.get_snapshot(snapshot_id)

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> Snapshot:
        async with self.locks.hold(snapshot_id, volume_id):
            with contextlib.suppress(NotFound):
                await self.backend.get_snapshot(snapshot_id)
                raise Conflict(f"snapshot {snapshot_id} already exists")
            volume = await self.backend.get_volume(volume_id)
            return await self.backend.create_snapshot(snapshot_id, volume)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        async with self.locks.hold(snapshot_id):
            snapshot = await self.backend.get_snapshot(snapshot_id)
            await self.backend.delete_snapshot(snapshot)

    # --- exports ----------------------------------------------------------------------------
    async def _chap(self, volume: Volume) -> Chap:
        pair = await self.backend.get_chap(volume)
        if pair is None:
            pair = (_random_text(CHAP_USERNAME_CHARS), _random_text(CHAP_PASSWORD_CHARS))
            await self.backend.set_chap(volume, *pair)
        return Chap(*pair)

    async def export_volume(self, volume_id: str, initiator: str) -> Export:
        async with self.locks.hold(volume_id):
            volume = await self.backend.get_volume(volume_id)
            chap = await self._chap(volume)
            device = await self.backend.device_path(volume)
            iqn = await self.target.export(volume.name, device, initiator, chap)
            return Export(iqn, self.portals, self.target.lun, chap)

    async def unexport_volume(self, volume_id: str, initiator: str) -> None:
        async with self.locks.hold(volume_id):
            volume = await self.backend.get_volume(volume_id)
            await self.target.unexport(volume.name, initiator)

    async def list_exports(self, volume_id: str) -> list[str]:
        volume = await self.backend.get_volume(volume_id)
        return await self.target.initiators(volume.name)

    async def device_path(self, volume: Volume) -> str:
        return await self.backend.device_path(volume)
