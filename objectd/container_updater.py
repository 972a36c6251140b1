"""The container updater: report each container's object count and bytes to its account.

Public: :class:`ContainerUpdater`, :class:`ContainerUpdaterReport`.

Swift's container-updater, for the same reason: object PUTs and DELETEs change a container's
counts many times a second, and sending each change on to the account servers would double the
write load of every object write. Instead each pass walks the local container databases and,
for every container whose state (put and delete timestamps, object count, bytes) differs from what
it last reported, sends one account update to every account replica (account ring). The state is
marked reported only when a majority accepted it; otherwise the next pass tries again. Account
rows merge by ``X-Backend-Stats-Timestamp``, so reports from several container replicas in any
order converge. Account HEAD counts are therefore eventually consistent, within ``interval_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import time
from typing import Any

from objectd import container_db
from objectd.client import BackendClient, BackendError
from objectd.daemon_config import DaemonConfig
from objectd.daemon_loop import RingCache, run_passes
from objectd.db_replicator import _connect, _databases
from objectd.local_devices import local_devices
from ring.ring import Ring
from shoal.clock import Clock
from shoal.timestamp import now

log = logging.getLogger("objectd.container_updater")

_STATE = ("put_timestamp", "delete_timestamp", "object_count", "bytes_used")


@dataclasses.dataclass(slots=True)
class ContainerUpdaterReport:
    containers: int = 0
    reported: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ContainerUpdater:
    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self._rings = RingCache(config.ring_dir)

    async def run_once(self) -> ContainerUpdaterReport:
        """One pass over every local container database."""
        started = time.monotonic()
        report = ContainerUpdaterReport()
        config = self.config
        container_ring = await asyncio.to_thread(self._rings.get, "container.ring")
        account_ring = await asyncio.to_thread(self._rings.get, "account.ring")
        devices = await asyncio.to_thread(
            local_devices, container_ring, config.devices, config.bind_ip, config.bind_port,
            mount_check=config.mount_check,
        )  # fmt: skip
        client = BackendClient(
            connect_timeout_s=config.conn_timeout_s, response_timeout_s=config.node_timeout_s,
            user_agent="shoal-container-updater",
        )  # fmt: skip
        limit = asyncio.Semaphore(config.concurrency)
        try:
            for device in devices:
                databases = await asyncio.to_thread(
                    _databases, os.path.join(device.path, "containers")
                )
                report.containers += len(databases)
                async with asyncio.TaskGroup() as group:
                    for _partition, db_path in databases:
                        group.create_task(self._one(limit, client, account_ring, db_path, report))
        finally:
            await client.close()
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes(
            "container updater", self.run_once, self.clock, self.config.interval_s, log
        )

    async def _one(self, limit: asyncio.Semaphore, client: BackendClient, account_ring: Ring,
                   db_path: str, report: ContainerUpdaterReport) -> None:  # fmt: skip
        async with limit:
            try:
                found = await asyncio.to_thread(_read_state, db_path)
            except sqlite3.Error:
                report.errors += 1
                log.exception("unreadable container database %s", db_path)
                return
            if found is None:
                return
            info, reported = found
            current = tuple(getattr(info, field) for field in _STATE)
            if current == reported:
                report.unchanged += 1
                return
            partition, nodes = account_ring.get_nodes(info.account)
            headers = {
                "X-Put-Timestamp": info.put_timestamp,
                "X-Delete-Timestamp": info.delete_timestamp,
                "X-Object-Count": str(info.object_count),
                "X-Bytes-Used": str(info.bytes_used),
                "X-Backend-Storage-Policy-Index": str(info.storage_policy_index),
                "X-Backend-Stats-Timestamp": now().internal,
            }
            results = await asyncio.gather(
                *(self._send(client, node, partition, info, headers) for node in nodes)
            )
            if sum(results) * 2 > len(nodes):
                await asyncio.to_thread(_mark_reported, db_path, current)
                report.reported += 1
            else:
                report.failed += 1

    async def _send(self, client: BackendClient, node: dict, partition: int, info,
                    headers: dict[str, str]) -> bool:  # fmt: skip
        try:
            response = await client.update_account(
                node, partition, info.account, info.container, headers
            )
        except BackendError as exc:
            log.info("account update for /%s/%s: %s", info.account, info.container, exc)
            return False
        return response.ok


# --- blocking helpers (run in threads) -----------------------------------------------------------
def _read_state(db_path: str) -> tuple[container_db.ContainerInfo, tuple] | None:
    connection = _connect(db_path)
    if connection is None:
        return None
    try:
        info = container_db.get_info(connection)
        reported = connection.execute(
            "SELECT reported_put_timestamp, reported_delete_timestamp, reported_object_count,"
            " reported_bytes_used FROM container_info"
        ).fetchone()
        return info, tuple(reported)
    finally:
        connection.close()


def _mark_reported(db_path: str, state: tuple) -> None:
    connection = _connect(db_path)
    if connection is None:
        return
    try:
        connection.execute(
            "UPDATE container_info SET reported_put_timestamp = ?, reported_delete_timestamp = ?,"
            " reported_object_count = ?, reported_bytes_used = ?",
            state,
        )
    finally:
        connection.close()
