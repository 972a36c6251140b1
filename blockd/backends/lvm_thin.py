"""The lvm-thin backend (production): thin LVs in one pool; snapshots and clones are thin snapshots.

Public: :class:`LvmThinBackend`, :func:`parse_lvs`, :func:`parse_thin_delta`.

Command lines follow Cinder's LVM driver (``lvcreate -T -V``, ``lvcreate --snapshot`` with no size,
``lvchange -a y -K``, ``lvextend -L``), so a node can be inspected with the same habits. What blockd
knows about an LV beyond its name lives in LV tags (``shoal_vol.<uuid>`` on a snapshot: its volume;
``shoal_chapu.<user>`` / ``shoal_chapp.<password>``: the volume's CHAP pair), read back with
``lvs --reportformat json``. dm-thin snapshots are independent of their origin, so deleting a
volume keeps its snapshots.

Revert (which Cinder's LVM driver cannot do on thin LVs): a thin snapshot of the snapshot is made
under ``volume-<uuid>.revert``, the volume LV is removed and the new one renamed into its place.
A crash between those two steps is repaired at start (the ``.revert`` LV is renamed).

Changed blocks between two snapshots (for incremental backups): ``thin_delta`` (from
thin-provisioning-tools) compares the two thin devices' block mappings in the pool's metadata. It
reads a metadata snapshot, so the live pool is untouched: ``dmsetup message <pool>-tpool 0
reserve_metadata_snap``, ``thin_delta --metadata-snap --snap1 <thin id> --snap2 <thin id>
<pool>_tmeta``, ``release_metadata_snap``. A pool has one metadata snapshot at a time, so the
three steps hold a lock; a snapshot left reserved by a crash is released and reserved again.
Blocks that map to the same data block in both are equal (copy-on-write shares them); any other
block (remapped, only in one, discarded) is reported as changed. Measured with
thin-provisioning-tools 0.9.0 (Debian 12): ``begin``/``length`` count pool data blocks of
``data_block_size`` sectors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET

from blockd.commands import CommandFailed, Runner
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

log = logging.getLogger("blockd.lvm")

LVS_FIELDS = "lv_name,lv_size,lv_attr,origin,pool_lv,lv_tags,data_percent"
REPORT = ("--reportformat", "json", "--units", "b", "--nosuffix")
TAG_VOLUME = "shoal_vol."
TAG_CHAP_USER = "shoal_chapu."
TAG_CHAP_PASSWORD = "shoal_chapp."
REVERT_SUFFIX = ".revert"
POOL_SHARE_OF_VG = "95%FREE"  # Cinder's LVM driver also leaves 5% for pool metadata growth
TOOLS_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # thin_delta lives in /usr/sbin
SECTOR_BYTES = 512  # thin_delta's data_block_size is in sectors
CHANGED_KINDS = ("different", "left_only", "right_only")  # thin_delta's elements for a change


def parse_lvs(stdout: str) -> list[dict]:
    """The rows of ``lvs --reportformat json``: dicts of strings, sizes in bytes, tags split."""
    rows = json.loads(stdout)["report"][0]["lv"]
    for row in rows:
        if "lv_size" in row:
            row["lv_size"] = int(row["lv_size"])
        if "lv_tags" in row:
            row["lv_tags"] = [t for t in row["lv_tags"].split(",") if t]
    return rows


def _tag_value(tags: list[str], prefix: str) -> str | None:
    return next((t[len(prefix) :] for t in tags if t.startswith(prefix)), None)


class LvmThinBackend:
    independent_snapshots = True

    def __init__(self, runner: Runner, vg: str, pool: str, max_over_subscription_ratio: float):
        self.runner = runner
        self.vg = vg
        self.pool = pool
        self.max_over_subscription_ratio = max_over_subscription_ratio
        self._metadata_snap = asyncio.Lock()  # the pool has one metadata snapshot at a time

    def _lv(self, name: str) -> str:
        return f"{self.vg}/{name}"

    async def _lvs(self, target: str | None = None) -> list[dict]:
        argv = ["lvs", *REPORT, "-o", LVS_FIELDS, target or self.vg]
        result = await self.runner.run(*argv, check=target is None)
        if result.returncode != 0:
            return []  # a named LV that does not exist (rc 5, empty report)
        return parse_lvs(result.stdout)

    async def _thin_lvs(self) -> list[dict]:
        return [row for row in await self._lvs() if row.get("pool_lv") == self.pool]

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        vgs = await self.runner.run("vgs", *REPORT, "-o", "vg_name", self.vg, check=False)
        if vgs.returncode != 0:
            raise ConfigurationError(
                f"volume group {self.vg!r} not found (option blockd.lvm_vg); make it with vgcreate"
            )
        if not await self._lvs(self._lv(self.pool)):
            log.info("creating thin pool %s/%s on %s", self.vg, self.pool, POOL_SHARE_OF_VG)
            await self.runner.run(
                "lvcreate", "-y", "--type", "thin-pool", "-l", POOL_SHARE_OF_VG,
                "-n", self.pool, self.vg,
            )  # fmt: skip
        await self._repair_reverts()

    async def _repair_reverts(self) -> None:
        names = {row["lv_name"] for row in await self._thin_lvs()}
        for name in names:
            if not name.endswith(REVERT_SUFFIX):
                continue
            final = name[: -len(REVERT_SUFFIX)]
            if final in names:
                log.warning("removing %s left by an interrupted revert", name)
                await self.runner.run("lvremove", "-y", "-f", self._lv(name))
            else:
                log.warning("completing an interrupted revert: %s -> %s", name, final)
                await self.runner.run("lvrename", self.vg, name, final)

    async def capacity(self) -> Capacity:
        rows = await self._lvs()
        pool = next((r for r in rows if r["lv_name"] == self.pool), None)
        if pool is None:
            raise ConfigurationError(f"thin pool {self.vg}/{self.pool} is gone")
        total = pool["lv_size"]
        used = int(total * float(pool["data_percent"] or 0) / 100)
        volumes = [r for r in rows if id_from_name(r["lv_name"], VOLUME_PREFIX)]
        return Capacity(
            total_bytes=total,
            free_bytes=total - used,
            provisioned_bytes=sum(r["lv_size"] for r in volumes),
            volume_count=len(volumes),
            max_over_subscription_ratio=self.max_over_subscription_ratio,
        )

    # --- volumes ----------------------------------------------------------------------------
    async def list_volumes(self) -> list[Volume]:
        volumes = []
        for row in await self._thin_lvs():
            volume_id = id_from_name(row["lv_name"], VOLUME_PREFIX)
            if volume_id is not None:
                volumes.append(Volume(volume_id, row["lv_size"]))
        return sorted(volumes, key=lambda v: v.id)

    async def _row(self, name: str, what: str) -> dict:
        rows = await self._lvs(self._lv(name))
        if not rows:
            raise NotFound(f"{what} not found")
        return rows[0]

    async def get_volume(self, volume_id: str) -> Volume:
        row = await self._row(volume_name(volume_id), f"volume {volume_id}")
        return Volume(volume_id, row["lv_size"])

    async def _create(self, *argv: str) -> None:
        try:
            await self.runner.run(*argv)
        except CommandFailed as exc:
            stderr = exc.result.stderr
            if "already exists" in stderr:
                raise Conflict(stderr.strip().splitlines()[-1].strip()) from None
            if "Insufficient" in stderr or "free space" in stderr:
                raise InsufficientCapacity(stderr.strip().splitlines()[-1].strip()) from None
            raise

    async def create_volume(self, volume_id: str, size_bytes: int) -> Volume:
        name = volume_name(volume_id)
        await self._create(
            "lvcreate", "-y", "-T", "-V", f"{size_bytes}b", "-n", name, self._lv(self.pool)
        )
        return Volume(volume_id, size_bytes)

    async def _snapshot_as_volume(self, volume_id: str, origin: str, size_bytes: int) -> Volume:
        name = volume_name(volume_id)
        await self._create("lvcreate", "-y", "-s", "-n", name, self._lv(origin))
        # A thin snapshot carries the activation-skip flag; a volume must not (Cinder: -k n).
        await self.runner.run("lvchange", "-a", "y", "--yes", "-k", "n", self._lv(name))
        volume = await self.get_volume(volume_id)
        if volume.size_bytes < size_bytes:
            volume = await self.extend_volume(volume, size_bytes)
        return volume

    async def create_from_snapshot(
        self, volume_id: str, snapshot: Snapshot, size_bytes: int
    ) -> Volume:
        return await self._snapshot_as_volume(volume_id, snapshot.name, size_bytes)

    async def clone_volume(self, volume_id: str, source: Volume, size_bytes: int) -> Volume:
        volume = await self._snapshot_as_volume(volume_id, source.name, size_bytes)
        await self._drop_shoal_tags(volume.name)  # a clone gets its own CHAP pair
        return volume

    async def _drop_shoal_tags(self, name: str) -> None:
        row = await self._row(name, name)
        for tag in row["lv_tags"]:
            if tag.startswith("shoal_"):
                await self.runner.run("lvchange", "--deltag", tag, self._lv(name))

    async def extend_volume(self, volume: Volume, size_bytes: int) -> Volume:
        await self.runner.run("lvextend", "-y", "-L", f"{size_bytes}b", self._lv(volume.name))
        return Volume(volume.id, size_bytes)

    async def _remove(self, name: str) -> None:
        try:
            await self.runner.run(
                "lvremove", "--config", "activation { retry_deactivation = 1 }", "-y", "-f",
                self._lv(name),
            )  # fmt: skip
        except CommandFailed as exc:
            if "Failed to find" in exc.result.stderr:
                return  # already gone: delete is idempotent
            if "in use" in exc.result.stderr:
                raise Conflict(f"{name} is in use (open by a target or a process)") from None
            raise

    async def delete_volume(self, volume: Volume) -> None:
        await self._remove(volume.name)

    async def revert_volume(self, volume: Volume, snapshot: Snapshot) -> Volume:
        temp = volume.name + REVERT_SUFFIX
        if await self._lvs(self._lv(temp)):  # left by a revert that failed half-way
            await self._remove(temp)
        await self._create("lvcreate", "-y", "-s", "-n", temp, self._lv(snapshot.name))
        await self.runner.run("lvchange", "-a", "y", "--yes", "-k", "n", self._lv(temp))
        row = await self._row(temp, temp)
        if row["lv_size"] < volume.size_bytes:
            await self.runner.run("lvextend", "-y", "-L", f"{volume.size_bytes}b", self._lv(temp))
        await self._drop_shoal_tags(temp)
        for tag in (await self._row(volume.name, volume.name))["lv_tags"]:
            if tag.startswith((TAG_CHAP_USER, TAG_CHAP_PASSWORD)):
                await self.runner.run("lvchange", "--addtag", tag, self._lv(temp))
        await self._remove(volume.name)
        await self.runner.run("lvrename", self.vg, temp, volume.name)
        return await self.get_volume(volume.id)

    # --- snapshots --------------------------------------------------------------------------
    def _snapshot_from(self, row: dict, snapshot_id: str) -> Snapshot:
        volume_id = _tag_value(row["lv_tags"], TAG_VOLUME) or ""
        return Snapshot(snapshot_id, volume_id, row["lv_size"])

    async def list_snapshots(self) -> list[Snapshot]:
        snapshots = []
        for row in await self._thin_lvs():
            snapshot_id = id_from_name(row["lv_name"], SNAPSHOT_PREFIX)
            if snapshot_id is not None:
                snapshots.append(self._snapshot_from(row, snapshot_id))
        return sorted(snapshots, key=lambda s: s.id)

    async def get_snapshot(self, snapshot_id: str) -> Snapshot:
        row = await self._row(snapshot_name(snapshot_id), f"snapshot {snapshot_id}")
        return self._snapshot_from(row, snapshot_id)

    async def create_snapshot(self, snapshot_id: str, volume: Volume) -> Snapshot:
        name = snapshot_name(snapshot_id)
        await self._create(
            "lvcreate", "-y", "-s", "-n", name, "--addtag", TAG_VOLUME + volume.id,
            self._lv(volume.name),
        )  # fmt: skip
        return Snapshot(snapshot_id, volume.id, volume.size_bytes)

    async def delete_snapshot(self, snapshot: Snapshot) -> None:
        await self._remove(snapshot.name)

    # --- export support ---------------------------------------------------------------------
    async def device_path(self, volume: Volume) -> str:
        await self.runner.run("lvchange", "-a", "y", "--yes", "-K", self._lv(volume.name))
        return f"/dev/{self.vg}/{volume.name}"

    async def get_chap(self, volume: Volume) -> tuple[str, str] | None:
        tags = (await self._row(volume.name, f"volume {volume.id}"))["lv_tags"]
        username = _tag_value(tags, TAG_CHAP_USER)
        password = _tag_value(tags, TAG_CHAP_PASSWORD)
        return (username, password) if username and password else None

    async def set_chap(self, volume: Volume, username: str, password: str) -> None:
        await self.runner.run(
            "lvchange", "--addtag", TAG_CHAP_USER + username,
            "--addtag", TAG_CHAP_PASSWORD + password, self._lv(volume.name),
        )  # fmt: skip

    # --- changed blocks -----------------------------------------------------------------------
    async def changed_ranges(self, old: Snapshot, new: Snapshot) -> list[tuple[int, int]] | None:
        """Byte ranges ``(offset, length)`` where ``new`` may differ from ``old``, from
        ``thin_delta``; None when it cannot tell (no thin_delta, a snapshot gone, a failure):
        the caller then compares content instead."""
        thin_delta = shutil.which("thin_delta", path=TOOLS_PATH)
        if thin_delta is None:
            return None
        result = await self.runner.run(
            "lvs", "-a", *REPORT, "-o", "lv_name,thin_id,lv_dm_path", self.vg, check=False
        )
        if result.returncode != 0:
            return None
        rows = {row["lv_name"]: row for row in parse_lvs(result.stdout)}
        old_row, new_row = rows.get(old.name), rows.get(new.name)
        pool, tmeta = rows.get(self.pool), rows.get(f"[{self.pool}_tmeta]")
        if not (old_row and new_row and pool and tmeta):
            return None
        if not (old_row.get("thin_id") and new_row.get("thin_id")):
            return None
        tpool = pool["lv_dm_path"].removeprefix("/dev/mapper/") + "-tpool"
        try:
            async with self._metadata_snap:
                await self._reserve_metadata_snap(tpool)
                try:
                    delta = await self.runner.run(
                        thin_delta, "--metadata-snap", "--snap1", old_row["thin_id"],
                        "--snap2", new_row["thin_id"], tmeta["lv_dm_path"],
                    )  # fmt: skip
                finally:
                    await self.runner.run(
                        "dmsetup", "message", tpool, "0", "release_metadata_snap", check=False
                    )
            return parse_thin_delta(delta.stdout)
        except (CommandFailed, OSError, ValueError, KeyError, ET.ParseError) as exc:
            log.warning("thin_delta %s -> %s failed, comparing content instead: %s",
                        old.name, new.name, exc)  # fmt: skip
            return None

    async def _reserve_metadata_snap(self, tpool: str) -> None:
        reserve = ("dmsetup", "message", tpool, "0", "reserve_metadata_snap")
        if (await self.runner.run(*reserve, check=False)).returncode == 0:
            return
        log.warning("releasing a metadata snapshot of %s left by an interrupted backup", tpool)
        await self.runner.run(
            "dmsetup", "message", tpool, "0", "release_metadata_snap", check=False
        )
        await self.runner.run(*reserve)


def parse_thin_delta(stdout: str) -> list[tuple[int, int]]:
    """The changed byte ranges in ``thin_delta``'s XML (see the module docstring for units)."""
    root = ET.fromstring(stdout)
    block_bytes = int(root.attrib["data_block_size"]) * SECTOR_BYTES
    ranges = []
    for element in root.iter():
        if element.tag in CHANGED_KINDS:
            begin, length = int(element.attrib["begin"]), int(element.attrib["length"])
            ranges.append((begin * block_bytes, length * block_bytes))
    return ranges
