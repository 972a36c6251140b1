"""The object expirer: delete objects whose ``X-Delete-At`` has passed, and their listing rows.

Public: :class:`ObjectExpirer`, :class:`ExpirerReport`.

objectd already hides an expired object (GET/HEAD answer 404); the expirer reclaims its space
and removes its container row. Swift queues expiring objects in a hidden ``.expiring_objects``
account; Shoal's expirer instead walks the local objects of every storage policy (``objects``,
``objects-N``; the metadata trailer only, never the body), so nothing extra is written on the PUT
path and no queue can drift from the data. Every primary's expirer finds the object; the deletes
are idempotent.

For an expired object ``/a/c/o`` of policy N the expirer looks up its primaries in that policy's
ring (``object.ring`` for 0, ``object-N.ring`` for N) and sends each a ``DELETE`` with
``X-Backend-Storage-Policy-Index: N`` (so objectd writes the tombstone under ``objects-N`` and the
container row it removes is the policy-N row), ``X-Timestamp: <X-Delete-At>`` (so a newer PUT or
POST wins over the expiry), ``X-If-Delete-At: <X-Delete-At>`` (so an object whose expiry was
changed is left alone) and ``X-Container-Host/-Device/-Partition`` naming one container replica
per object replica: the object servers remove the listing row as for any DELETE, saving an async
pending if they must. The objects of a policy with no ring file here are left alone (counted in
``skipped_no_ring``, one warning per pass): without the ring their primaries are unknown, and
an expirer on a node that has the ring deletes them. At most ``expirer_batch_max`` objects are
deleted per pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

from objectd.client import BackendClient, BackendError
from objectd.daemon_config import DaemonConfig
from objectd.daemon_loop import RingCache, run_passes
from objectd.diskio import DiskIO
from objectd.metadata import CorruptFile, choose_files, read_file
from objectd.object_walk import take, walk_objects
from objectd.rate_limit import RateLimiter
from ring import Ring, ring_name
from shoal.clock import Clock
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.expirer")

WALK_BATCH = 256


@dataclasses.dataclass(slots=True)
class ExpirerReport:
    objects_checked: int = 0
    expired: int = 0
    deleted: int = 0
    failed: int = 0
    errors: int = 0
    skipped_no_ring: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ObjectExpirer:
    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.files_rate = RateLimiter(config.audit_files_per_s_max * 10, clock=self.clock)
        self.io = DiskIO()
        self.rings = RingCache(config.ring_dir)

    async def run_once(self) -> ExpirerReport:
        started = time.monotonic()
        report = ExpirerReport()
        container_ring = await asyncio.to_thread(self.rings.get, "container.ring")
        object_rings: dict[int, Ring | None] = {}  # by policy, looked up once per pass
        walk = walk_objects(self.config.devices, mount_check=self.config.mount_check)
        client = BackendClient(
            connect_timeout_s=self.config.conn_timeout_s,
            response_timeout_s=self.config.node_timeout_s,
            user_agent="shoal-expirer",
        )
        now = self.clock.time()
        try:
            while report.expired < self.config.expirer_batch_max and (
                batch := await asyncio.to_thread(take, walk, WALK_BATCH)
            ):
                for location in batch:
                    policy = location.policy
                    if policy not in object_rings:
                        object_rings[policy] = await asyncio.to_thread(
                            self.rings.get_if_present, ring_name("object", policy)
                        )
                    object_ring = object_rings[policy]
                    if object_ring is None:
                        report.skipped_no_ring += 1
                        continue
                    await self.files_rate.acquire(1)
                    report.objects_checked += 1
                    found = await asyncio.to_thread(self._expired, location.hash_dir, now)
                    if found is None:
                        continue
                    report.expired += 1
                    name, delete_at = found
                    if await self._delete(
                        client, object_ring, container_ring, policy, name, delete_at
                    ):
                        report.deleted += 1
                    else:
                        report.failed += 1
        finally:
            await client.close()
        missing = sorted(policy for policy, ring in object_rings.items() if ring is None)
        if missing:
            log.warning(
                "%d objects of policies %s not checked for expiry: no %s in %s",
                report.skipped_no_ring,
                missing,
                ", ".join(ring_name("object", policy) for policy in missing),
                self.config.ring_dir,
            )
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes("expirer", self.run_once, self.clock, self.config.interval_s, log)

    def _expired(self, hash_dir: str, now: float) -> tuple[str, str] | None:
        """``(name, X-Delete-At)`` of the object in ``hash_dir`` if it has expired (blocking)."""
        try:
            files = choose_files(os.listdir(hash_dir))
        except FileNotFoundError:
            return None
        if files.data is None:
            return None
        metadata: dict[str, str] = {}
        for name in (files.data, files.meta):  # a .meta replaces X-Delete-At
            if name is None:
                continue
            try:
                fd = os.open(os.path.join(hash_dir, name), os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                file_metadata = read_file(self.io, fd, os.fstat(fd).st_size).metadata
            except CorruptFile:
                return None  # the auditor quarantines it
            finally:
                os.close(fd)
            if name == files.meta:
                metadata.pop("X-Delete-At", None)
            metadata.update(file_metadata)
        delete_at = metadata.get("X-Delete-At", "")
        if not delete_at.isdigit() or int(delete_at) > now or "name" not in metadata:
            return None
        return metadata["name"], delete_at

    async def _delete(self, client: BackendClient, object_ring: Ring, container_ring: Ring,
                      policy: int, name: str, delete_at: str) -> bool:  # fmt: skip
        account, container, obj = name[1:].split("/", 2)
        part, nodes = object_ring.get_nodes(account, container, obj)
        container_part, container_nodes = container_ring.get_nodes(account, container)
        timestamp = Timestamp(int(delete_at)).internal
        results = []
        for index, node in enumerate(nodes):
            target = container_nodes[index % len(container_nodes)]
            headers = {
                "X-Timestamp": timestamp,
                "X-If-Delete-At": delete_at,
                "X-Backend-Storage-Policy-Index": str(policy),
                "X-Container-Host": f"{target['ip']}:{target['port']}",
                "X-Container-Device": target["device"],
                "X-Container-Partition": str(container_part),
            }
            try:
                response = await client.delete_object(node, part, account, container, obj, headers)
            except BackendError as exc:
                log.info("expiring %s: %s", name, exc)
                results.append(False)
                continue
            # 204/404 deleted (now or before); 409 a newer write; 412 the expiry changed
            results.append(response.status in (204, 404, 409, 412))
        return any(results) and sum(results) * 2 > len(results)
