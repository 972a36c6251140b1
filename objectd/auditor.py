"""The object auditor: read every object at a bounded rate, check it, quarantine what is bad.

Public: :class:`ObjectAuditor`, :class:`AuditReport`.

For every object directory of the local devices (:mod:`objectd.object_walk`) the auditor reads
the files that decide its state: the ``.data`` trailer (footer, metadata checksum) and its whole
body, whose size and MD5 must match ``Content-Length`` and ``ETag`` (and its xxh3-64 the
recorded one, which readers verify with); the trailers of ``.meta`` and ``.ts``. Reads are paid
for at two token buckets, ``audit_bytes_per_s_max`` and ``audit_files_per_s_max`` (Swift's
defaults: 10 MB/s, 20 files/s), so client reads keep the disk.

A bad object's whole directory moves to ``<device>/quarantined/objects[-N]/<hash>`` (the same
place a reader quarantines to) and its suffix is marked stale, so the next replicator pass sees
the suffix differ from its peers' and a peer pushes a good copy back. Each object is audited
inside a failsafe: one unreadable object is counted and logged, the sweep goes on.

Each pass first removes crash leftovers from every device's ``tmp``: files older than
``tmp_reclaim_age_s`` (:mod:`objectd.tmp_reclaim` says why that age is safe while objectd runs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import time
from typing import Any

import xxhash

from objectd.config import Reserve
from objectd.daemon_config import DaemonConfig, daemon_seed
from objectd.daemon_loop import run_passes
from objectd.devices import Devices
from objectd.disk_read import quarantine
from objectd.diskio import DiskIO
from objectd.layout import Layout
from objectd.metadata import BODY_CHECKSUM_KEY, CorruptFile, choose_files, read_file
from objectd.object_walk import ObjectLocation, take, walk_objects
from objectd.rate_limit import RateLimiter
from objectd.suffix_hashes import invalidate_suffix
from objectd.tmp_reclaim import reclaim_devices
from shoal.clock import Clock

log = logging.getLogger("objectd.auditor")

AUDIT_READ_BYTES = 1024 * 1024
"""One read of a body being checked (and one payment at the byte bucket)."""

WALK_BATCH = 256
"""Object directories listed per thread hop of the walk."""


@dataclasses.dataclass(slots=True)
class AuditReport:
    objects: int = 0
    bytes_read: int = 0
    quarantined: int = 0
    tmp_reclaimed: int = 0  # stale temp files removed from <device>/tmp
    errors: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ObjectAuditor:
    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.bytes_rate = RateLimiter(config.audit_bytes_per_s_max, clock=self.clock)
        self.files_rate = RateLimiter(config.audit_files_per_s_max, clock=self.clock)
        self.io = DiskIO()
        self.layout = Layout(config.devices, daemon_seed(config))

    async def run_once(self) -> AuditReport:
        """One sweep of every local object, rate-limited."""
        started = time.monotonic()
        report = AuditReport()
        devices = Devices(
            self.io, self.layout, mount_check=self.config.mount_check, reserve=Reserve(),
            threads_per_device=1,
        )  # fmt: skip
        reclaimed = await asyncio.to_thread(
            reclaim_devices, self.config.devices, self.config.tmp_reclaim_age_s,
            mount_check=self.config.mount_check,
        )  # fmt: skip
        report.tmp_reclaimed = reclaimed.removed
        report.errors += reclaimed.errors
        walk = walk_objects(self.config.devices, mount_check=self.config.mount_check)
        try:
            while batch := await asyncio.to_thread(take, walk, WALK_BATCH):
                for location in batch:
                    await self.files_rate.acquire(1)
                    try:
                        await self.audit_one(devices, location, report)
                    except Exception:  # one bad object must not stop the sweep
                        report.errors += 1
                        log.exception("auditing %s failed", location.hash_dir)
        finally:
            await devices.close()
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes("audit", self.run_once, self.clock, self.config.interval_s, log)

    async def audit_one(self, devices: Devices, location: ObjectLocation,
                        report: AuditReport) -> None:  # fmt: skip
        names = await asyncio.to_thread(_listdir, location.hash_dir)
        files = choose_files(names)
        if files.data is None and files.tombstone is None and files.meta is None:
            return
        report.objects += 1
        problem = None
        for name in (files.data, files.tombstone, files.meta):
            if name is None:
                continue
            problem = await self._check_file(os.path.join(location.hash_dir, name), report)
            if problem:
                break
        if problem is not None:
            log.error("quarantining %s: %s", location.hash_dir, problem)
            await asyncio.to_thread(
                _quarantine, devices, location, os.path.basename(location.hash_dir)[-3:]
            )
            report.quarantined += 1

    async def _check_file(self, path: str, report: AuditReport) -> str | None:
        """Why the file at ``path`` is bad, or None if it is good (or gone meanwhile)."""
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            try:
                data = await asyncio.to_thread(read_file, self.io, fd, size)
            except CorruptFile as exc:
                return str(exc)
            if not path.endswith(".data"):
                return None
            recorded_etag = data.metadata.get("ETag")
            if data.metadata.get("Content-Length") != str(data.body_bytes):
                return f"body of {data.body_bytes} bytes, metadata says otherwise"
            digest = hashlib.md5()
            recorded_checksum = data.metadata.get(BODY_CHECKSUM_KEY)
            checksum = xxhash.xxh3_64()  # readers verify with this one: it must be right too
            offset = 0
            while offset < data.body_bytes:
                count = min(AUDIT_READ_BYTES, data.body_bytes - offset)
                await self.bytes_rate.acquire(count)
                piece = await asyncio.to_thread(os.pread, fd, count, offset)
                if not piece:
                    return "short read"
                digest.update(piece)
                checksum.update(piece)
                offset += len(piece)
                report.bytes_read += len(piece)
            if digest.hexdigest() != recorded_etag:
                return f"MD5 {digest.hexdigest()} does not match ETag {recorded_etag}"
            if recorded_checksum is not None and checksum.hexdigest() != recorded_checksum:
                return (
                    f"xxh3 {checksum.hexdigest()} does not match the recorded {recorded_checksum}"
                )
            return None
        finally:
            os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _quarantine(devices: Devices, location: ObjectLocation, suffix: str) -> None:
    """Mark the suffix stale first (a crash after it costs a rehash), then move the directory."""
    invalidate_suffix(location.partition_dir, suffix)
    quarantine(devices, location.device, location.policy, location.hash_dir)
