"""The object updater: replay container updates that objectd saved as async pendings.

Public: :class:`ObjectUpdater`, :class:`UpdaterReport`.

An object PUT or DELETE whose container update failed or was late left an async pending
(:mod:`objectd.async_pending`). Each pass lists them (bounded per device), sends each update to
every replica of its container (container ring, the recorded partition), at most
``concurrency`` at a time, and removes the file only when every replica accepted it (2xx). A
failure leaves the file for the next pass; replays are harmless because container rows merge
by timestamp. Updates for a container that no replica knows (404 everywhere) stay too: the
container may be on its way (replication), as in Swift.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from objectd.async_pending import list_async_pendings, load_async_pending, remove_async_pending
from objectd.client import BackendClient, BackendError
from objectd.daemon_config import DaemonConfig, daemon_seed
from objectd.daemon_loop import RingCache, run_passes
from objectd.layout import Layout
from objectd.local_devices import local_devices
from ring.ring import Ring
from shoal.clock import Clock

log = logging.getLogger("objectd.updater")


@dataclasses.dataclass(slots=True)
class UpdaterReport:
    pendings: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ObjectUpdater:
    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.layout = Layout(config.devices, daemon_seed(config))
        self._rings = RingCache(config.ring_dir)

    def container_ring(self) -> Ring:
        return self._rings.get("container.ring")

    async def run_once(self) -> UpdaterReport:
        started = time.monotonic()
        report = UpdaterReport()
        ring = await asyncio.to_thread(self.container_ring)
        config = self.config
        devices = await asyncio.to_thread(
            local_devices, None, config.devices, config.bind_ip, config.bind_port,
            mount_check=config.mount_check,
        )  # fmt: skip
        client = BackendClient(
            connect_timeout_s=config.conn_timeout_s, response_timeout_s=config.node_timeout_s,
            user_agent="shoal-updater",
        )  # fmt: skip
        limit = asyncio.Semaphore(config.concurrency)
        try:
            for device in devices:
                paths = await asyncio.to_thread(
                    lambda name=device.name: list(list_async_pendings(self.layout, name))
                )
                report.pendings += len(paths)
                async with asyncio.TaskGroup() as group:
                    for _policy, path in paths:
                        group.create_task(self._replay(limit, client, ring, path, report))
        finally:
            await client.close()
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes("updater", self.run_once, self.clock, self.config.interval_s, log)

    async def _replay(self, limit: asyncio.Semaphore, client: BackendClient, ring: Ring,
                      path: str, report: UpdaterReport) -> None:  # fmt: skip
        async with limit:
            try:
                update = await asyncio.to_thread(load_async_pending, path)
            except FileNotFoundError:
                return  # replayed by another pass meanwhile
            except Exception:
                report.errors += 1
                log.exception("unreadable async pending %s", path)
                return
            partition = update.container_partition
            if partition is None or partition >= ring.partition_count:
                partition = ring.get_part(update.account, update.container)
            nodes = ring.get_part_nodes(partition)
            results = await asyncio.gather(
                *(self._send(client, node, partition, update) for node in nodes)
            )
            if all(results):
                await asyncio.to_thread(remove_async_pending, path)
                report.succeeded += 1
            else:
                report.failed += 1

    async def _send(self, client: BackendClient, node: dict, partition: int, update) -> bool:
        try:
            response = await client.update_container(
                node, partition, update.account, update.container, update.obj, update.op,
                update.headers,
            )  # fmt: skip
        except BackendError as exc:
            log.info("update of /%s/%s: %s", update.account, update.container, exc)
            return False
        return response.ok
