"""The object replicator: make every partition's replicas converge on its primaries.

Public: :class:`ObjectReplicator`, :class:`ReplicationReport`.

One pass (:meth:`ObjectReplicator.run_once`) walks every object partition of every local
device; partitions are worked on ``concurrency`` at a time and every byte sent is paid for at
one :class:`~objectd.rate_limit.RateLimiter` (``io_bytes_per_s_max``).

- **Primary partition** (the ring places a replica on this device): the local suffix hashes
  (:mod:`objectd.suffix_hashes`; tombstones older than ``reclaim_age_s`` are reclaimed while
  hashing) are compared with each other primary's (the ``hashes`` op). Suffixes that differ are
  rehashed locally (the cache may be stale), then synced: every object in them is offered, and
  the files the peer lacks or holds older are streamed to it (:mod:`objectd.ssync_sender`).
  The peer then rehashes those suffixes. Newer files on the peer are not pulled: the peer's own
  replicator pushes them (push only, as Swift's ssync).
- **Handoff partition** (the ring does not place it here: a proxy wrote to a handoff while a
  primary was down, or a rebalance moved the partition away): every object is synced to every
  primary; the files that all primaries then hold are removed here, and the partition directory
  once it is empty. A file written meanwhile has a new name, is not removed, and goes next pass.

Read-path quarantines (a GET that found a corrupt object) are noticed at the start of each pass
(:mod:`objectd.quarantine_scan`) and their suffixes marked stale, so a peer pushes a good copy.

Ring changes: the ring reloads itself when its file changes, so after ``ringctl rebalance`` a
partition that moved away becomes a handoff partition here and is pushed to its new primaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from typing import Any

from objectd.daemon_config import DaemonConfig, daemon_seed
from objectd.daemon_loop import run_passes
from objectd.layout import Layout
from objectd.local_devices import LocalDevice, local_devices, object_partitions, object_rings
from objectd.quarantine_scan import invalidate_quarantined
from objectd.rate_limit import RateLimiter
from objectd.ssync_sender import PeerError, ReplicationClient, SyncResult
from objectd.suffix_hashes import (
    HASHES_FILE,
    INVALID_FILE,
    LOCK_FILE,
    get_hashes,
    hash_suffix_dir,
    invalidate_suffix,
    list_suffixes,
)
from ring.ring import Ring
from shoal.clock import Clock

log = logging.getLogger("objectd.replicator")

JOB_QUEUE_MAX = 64
"""Partitions queued ahead of the workers: the walk never gets far ahead of the work."""


@dataclasses.dataclass(slots=True)
class ReplicationReport:
    """What one pass did."""

    partitions: int = 0
    primary_partitions: int = 0
    handoff_partitions: int = 0
    handoffs_removed: int = 0
    handoff_pushes: int = 0  # partitions pushed to a handoff in place of an unmounted primary
    quarantines_noticed: int = 0  # read-path quarantines whose suffixes were marked stale
    suffixes_synced: int = 0
    files_sent: int = 0
    peer_failures: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    device: LocalDevice
    policy: int
    partition: int
    partition_dir: str
    ring: Ring


class ObjectReplicator:
    """Object replication for the devices of one node (see the module docstring)."""

    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.rate = RateLimiter(config.io_bytes_per_s_max, clock=self.clock)
        self.layout = Layout(config.devices, daemon_seed(config))
        self._rings: dict[int, Ring] | None = None

    def rings(self) -> dict[int, Ring]:
        if self._rings is None:
            self._rings = object_rings(self.config.ring_dir)
        for ring in self._rings.values():
            ring.reload_if_changed()
        return self._rings

    async def run_once(self) -> ReplicationReport:
        """One pass over every local object partition (bounded: one job per partition)."""
        started = time.monotonic()
        report = ReplicationReport()
        rings = await asyncio.to_thread(self.rings)
        jobs, report.quarantines_noticed = await asyncio.to_thread(self._jobs, rings)
        client = ReplicationClient(
            conn_timeout_s=self.config.conn_timeout_s,
            node_timeout_s=self.config.node_timeout_s,
            rate=self.rate,
        )
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=JOB_QUEUE_MAX)
        try:
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._worker(queue, client, report))
                    for _ in range(self.config.concurrency)
                ]
                for job in jobs:
                    await queue.put(job)
                for _ in workers:
                    await queue.put(None)
        finally:
            await client.close()
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes("replication", self.run_once, self.clock, self.config.interval_s, log)

    def _jobs(self, rings: dict[int, Ring]) -> tuple[list[_Job], int]:
        """The partitions to work on, and how many read-path quarantines were noticed."""
        ring0 = rings.get(0)
        config = self.config
        jobs = []
        noticed = 0
        devices = local_devices(
            ring0, config.devices, config.bind_ip, config.bind_port, mount_check=config.mount_check
        )
        for device in devices:
            if device.ring_dev is None:  # a drained device, or a wrong bind_ip/bind_port
                log.warning(
                    "device %s is not in the ring at %s:%s: all its partitions are handoffs "
                    "and move to their primaries",
                    device.name,
                    config.bind_ip,
                    config.bind_port,
                )
            noticed += invalidate_quarantined(self.layout, device.name, rings)
            for policy, partition, part_dir in object_partitions(device.path):
                ring = rings.get(policy)
                if ring is None or partition >= ring.partition_count:
                    continue  # no ring for the policy: nothing to compare with
                jobs.append(_Job(device, policy, partition, part_dir, ring))
        return jobs, noticed

    async def _worker(self, queue: asyncio.Queue, client: ReplicationClient,
                      report: ReplicationReport) -> None:  # fmt: skip
        while (job := await queue.get()) is not None:
            report.partitions += 1
            try:
                await self.replicate_partition(job, client, report)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad partition must not stop the pass
                report.errors += 1
                log.exception("replicating partition %s of %s failed", job.partition, job.device)

    async def replicate_partition(self, job: _Job, client: ReplicationClient,
                                  report: ReplicationReport) -> None:  # fmt: skip
        nodes = job.ring.get_part_nodes(job.partition)
        local_id = job.device.ring_dev["id"] if job.device.ring_dev else None
        if local_id is not None and any(node["id"] == local_id for node in nodes):
            report.primary_partitions += 1
            peers = [node for node in nodes if node["id"] != local_id]
            await self._sync_primary(job, peers, client, report)
        else:
            report.handoff_partitions += 1
            await self._revert_handoff(job, nodes, client, report)

    def _reclaim_before(self) -> float:
        return self.clock.time() - self.config.reclaim_age_s

    async def _local_hashes(self, job: _Job, recalculate: list[str] = ()) -> dict[str, str]:
        return await asyncio.to_thread(
            get_hashes,
            job.partition_dir,
            recalculate=recalculate,
            max_age_s=self.config.hashes_max_age_s,
            reclaim_before=self._reclaim_before(),
            now=self.clock.time(),
        )

    async def _sync_primary(self, job: _Job, peers: list[dict[str, Any]],
                            client: ReplicationClient, report: ReplicationReport) -> None:  # fmt: skip
        """Sync to each other primary; for each that answers 507 (device unmounted or gone),
        sync to a handoff instead, so the partition keeps its replica count (as Swift does; an
        unreachable node is not replaced: it is most likely coming back)."""
        local = await self._local_hashes(job)
        unmounted = 0
        for peer in peers:
            try:
                local = await self._sync_peer(job, peer, local, client, report)
            except PeerError as exc:
                report.peer_failures += 1
                unmounted += exc.status == 507
                log.warning("partition %s: %s", job.partition, exc)
        if not unmounted:
            return
        local_id = job.device.ring_dev["id"] if job.device.ring_dev else None
        handoffs = (n for n in job.ring.get_more_nodes(job.partition) if n["id"] != local_id)
        for handoff in itertools.islice(handoffs, unmounted):
            try:
                local = await self._sync_peer(job, handoff, local, client, report)
                report.handoff_pushes += 1
            except PeerError as exc:
                report.peer_failures += 1
                log.warning("partition %s to handoff: %s", job.partition, exc)

    async def _sync_peer(self, job: _Job, peer: dict[str, Any], local: dict[str, str],
                         client: ReplicationClient,
                         report: ReplicationReport) -> dict[str, str]:  # fmt: skip
        """Push the suffixes whose hashes differ at ``peer``; the (maybe rehashed) local hashes.

        Raises:
            PeerError: the peer is unreachable or refused a request.
        """
        remote = await client.hashes(
            peer, job.partition, job.policy, max_age_s=self.config.hashes_max_age_s
        )
        differ = [s for s in local if local[s] != remote.get(s)]
        if not differ:
            return local
        local = await self._local_hashes(job, differ)
        differ = [s for s in differ if s in local and local[s] != remote.get(s)]
        if not differ:
            return local
        result = await client.sync(peer, job.partition, job.policy, job.partition_dir, differ)
        report.suffixes_synced += len(differ)
        report.files_sent += result.sent
        if not result.ok:
            log.warning("sync to %s: failed files %s", peer["ip"], result.failed[:5])
        await client.hashes(peer, job.partition, job.policy, recalculate=differ)
        return local

    async def _revert_handoff(self, job: _Job, primaries: list[dict[str, Any]],
                              client: ReplicationClient, report: ReplicationReport) -> None:  # fmt: skip
        await self._local_hashes(job)  # reclaims old tombstones, drops empty suffixes
        suffixes = await asyncio.to_thread(list_suffixes, job.partition_dir)
        results: list[SyncResult] = []
        for primary in primaries:
            try:
                result = await client.sync(
                    primary, job.partition, job.policy, job.partition_dir, suffixes
                )
            except PeerError as exc:
                report.peer_failures += 1
                log.warning("revert of partition %s: %s", job.partition, exc)
                return  # keep everything: a primary may still need it
            report.files_sent += result.sent
            results.append(result)
            if not result.ok:
                return
        report.suffixes_synced += len(suffixes)
        everywhere = set.intersection(*(r.in_sync for r in results)) if results else set()
        removed = await asyncio.to_thread(_remove_reverted, job.partition_dir, everywhere)
        if removed:
            report.handoffs_removed += 1


def _remove_reverted(partition_dir: str, files: set[tuple[str, str]]) -> bool:
    """Remove ``files`` (held by every primary), then empty directories; the partition
    directory goes too when nothing else is left. True when it is gone."""
    touched = set()
    for name_hash, name in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(partition_dir, name_hash[-3:], name_hash, name))
            touched.add(name_hash[-3:])
    for suffix in touched:
        hash_suffix_dir(os.path.join(partition_dir, suffix))  # removes emptied directories
    if list_suffixes(partition_dir):
        for suffix in touched:
            invalidate_suffix(partition_dir, suffix)
        return False
    for name in (HASHES_FILE, INVALID_FILE, LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(partition_dir, name))
    try:
        os.rmdir(partition_dir)
    except OSError:  # a write arrived meanwhile: leave it for the next pass
        return False
    return True
