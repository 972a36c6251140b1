"""The database replicator: make container and account DB replicas converge.

Public: :class:`DatabaseReplicator`, :class:`DatabaseReplicationReport`.

For every local database (``<device>/{containers,accounts}/<part>/<suffix>/<hash>/<hash>.db``)
and every other primary of its partition (all primaries when this device is a handoff):

1. ``get_info`` (the existing DB replication op, see objectd/PROTOCOL.md). **404**: the peer has
   no replica, so it gets a whole copy: a consistent snapshot (SQLite's backup API) streamed as
   ``db_file`` (:mod:`objectd.db_receiver`); the sync point is set to the snapshot's last row.
2. Otherwise the rows changed since the last sync point with that peer's DB (ROWID order: a
   replaced row gets a new ROWID, so "rows since n" is exact) are pushed in ``merge_items``
   batches of ``MERGE_ITEMS_MAX``; the peer merges them by timestamp. The sync point advances
   after each acknowledged batch and is kept in ``<hash>.db.sync`` (msgpack ``{peer key:
   rowid}``, the peer key naming the node and the peer DB's id).
3. After the rows (a whole copy carries its info) the info is pushed with ``merge_info``:
   put/delete timestamps, metadata (``X-*-Meta-*``, sysmeta) and, for accounts, the status;
   the peer merges it field by field and key by key, newest timestamp winning
   (:func:`objectd.container_db.merge_info`, :func:`objectd.account_db.merge_info`).

Push only, like the object replicator: rows the peer has and we lack come with the peer's pass.
A handoff database is removed once every primary acknowledged it. Work is bounded: at most
``concurrency`` databases at once; whole copies are paid for at ``io_bytes_per_s_max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack

from objectd import account_db, container_db
from objectd.client import BackendClient, BackendError, Node, backend_path
from objectd.daemon_config import DaemonConfig
from objectd.daemon_loop import RingCache, run_passes
from objectd.db_receiver import OP_DB_FILE
from objectd.limits import DB_BUSY_TIMEOUT_S, MERGE_ITEMS_MAX
from objectd.local_devices import local_devices
from objectd.rate_limit import RateLimiter
from objectd.ssync_wire import OP_HEADER
from objectd.suffix_hashes import HASH_LENGTH, is_suffix
from ring.ring import Ring
from shoal.clock import Clock

log = logging.getLogger("objectd.db_replicator")

KINDS = (("containers", "container.ring"), ("accounts", "account.ring"))
SEND_READ_BYTES = 256 * 1024
SYNC_SUFFIX = ".sync"


@dataclasses.dataclass(slots=True)
class DatabaseReplicationReport:
    databases: int = 0
    rows_pushed: int = 0
    whole_copies: int = 0
    handoffs_removed: int = 0
    peer_failures: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    kind: str
    device: str
    device_path: str
    local_id: int | None
    partition: int
    db_path: str
    ring: Ring


class DatabaseReplicator:
    def __init__(self, config: DaemonConfig, *, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.rate = RateLimiter(config.io_bytes_per_s_max, clock=self.clock)
        self._rings = RingCache(config.ring_dir)

    async def run_once(self) -> DatabaseReplicationReport:
        started = time.monotonic()
        report = DatabaseReplicationReport()
        jobs = await asyncio.to_thread(self._jobs)
        client = BackendClient(
            connect_timeout_s=self.config.conn_timeout_s,
            response_timeout_s=self.config.node_timeout_s,
            user_agent="shoal-db-replicator",
        )
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.conn_timeout_s,
                sock_read=self.config.node_timeout_s,
            )
        )
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(job: _Job) -> None:
            async with limit:
                report.databases += 1
                try:
                    await self.replicate_db(job, client, session, report)
                except Exception:  # one bad database must not stop the pass
                    report.errors += 1
                    log.exception("replicating %s failed", job.db_path)

        try:
            for start in range(0, len(jobs), 256):  # bounded number of tasks at once
                async with asyncio.TaskGroup() as group:
                    for job in jobs[start : start + 256]:
                        group.create_task(one(job))
        finally:
            await client.close()
            await session.close()
        report.duration_s = time.monotonic() - started
        return report

    async def run_forever(self) -> None:
        await run_passes("db replication", self.run_once, self.clock, self.config.interval_s, log)

    def _jobs(self) -> list[_Job]:
        config = self.config
        jobs = []
        for kind, ring_name in KINDS:
            ring = self._rings.get_if_present(ring_name)
            if ring is None:
                continue
            for device in local_devices(
                ring, config.devices, config.bind_ip, config.bind_port,
                mount_check=config.mount_check,
            ):  # fmt: skip
                local_id = device.ring_dev["id"] if device.ring_dev else None
                for partition, db_path in _databases(os.path.join(device.path, kind)):
                    if partition < ring.partition_count:
                        jobs.append(
                            _Job(kind, device.name, device.path, local_id, partition, db_path, ring)
                        )
        return jobs

    async def replicate_db(self, job: _Job, client: BackendClient, session: aiohttp.ClientSession,
                           report: DatabaseReplicationReport) -> None:  # fmt: skip
        info = await asyncio.to_thread(_local_info, job.kind, job.db_path)
        if info is None:
            return  # removed meanwhile
        nodes = job.ring.get_part_nodes(job.partition)
        primary = job.local_id is not None and any(n["id"] == job.local_id for n in nodes)
        targets = [n for n in nodes if n["id"] != job.local_id] if primary else nodes
        results = []
        for node in targets:
            try:
                results.append(await self._sync_to(node, job, info, client, session, report))
            except BackendError as exc:
                report.peer_failures += 1
                log.warning("db sync of %s to %s: %s", job.db_path, node["ip"], exc)
                results.append(False)
        if not primary and results and all(results):
            await asyncio.to_thread(_remove_db, job.db_path)
            report.handoffs_removed += 1

    async def _sync_to(self, node: dict[str, Any], job: _Job, info: dict[str, Any],
                       client: BackendClient, session: aiohttp.ClientSession,
                       report: DatabaseReplicationReport) -> bool:  # fmt: skip
        account, container = info["account"], info.get("container")
        response = await client.replicate_db(
            node, job.partition, account, container, {"op": "get_info"}
        )
        if response.status == 404:
            status, last_rowid = await self._send_whole(node, job, account, container, session)
            if status == 201:
                report.whole_copies += 1
                await asyncio.to_thread(
                    _save_point, job.db_path, _peer_key(node, info["id"]), last_rowid
                )
                return True
            if status != 409:
                report.peer_failures += 1
                return False
            response = await client.replicate_db(  # a DB appeared meanwhile: push rows
                node, job.partition, account, container, {"op": "get_info"}
            )
        if not response.ok:
            report.peer_failures += 1
            return False
        key = _peer_key(node, json.loads(response.body)["id"])
        point = await asyncio.to_thread(_load_point, job.db_path, key)
        while True:
            rows = await asyncio.to_thread(_rows_since, job.kind, job.db_path, point)
            if not rows:
                break
            items = [{k: v for k, v in row.items() if k != "rowid"} for row in rows]
            merged = await client.replicate_db(
                node, job.partition, account, container, {"op": "merge_items", "items": items}
            )
            if not merged.ok:
                report.peer_failures += 1
                return False
            report.rows_pushed += len(rows)
            point = rows[-1]["rowid"]
            await asyncio.to_thread(_save_point, job.db_path, key, point)
        merged = await client.replicate_db(
            node, job.partition, account, container, {"op": "merge_info", "info": info}
        )
        if not merged.ok:
            report.peer_failures += 1
            return False
        return True

    async def _send_whole(self, node: dict[str, Any], job: _Job, account: str,
                          container: str | None,
                          session: aiohttp.ClientSession) -> tuple[int, int]:  # fmt: skip
        """Stream a snapshot as ``db_file``: ``(status, last rowid of the snapshot)``."""
        tmp_dir = os.path.join(job.device_path, "tmp")
        snapshot, last_rowid = await asyncio.to_thread(_snapshot, job.kind, job.db_path, tmp_dir)
        try:
            node_ref = Node.of(node)
            url = node_ref.base_url + backend_path(
                node_ref.device, job.partition, account, container
            )
            headers = {OP_HEADER: OP_DB_FILE}
            try:
                async with session.post(
                    url, data=self._file_chunks(snapshot), headers=headers
                ) as r:
                    await r.read()
                    return r.status, last_rowid
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("whole copy of %s to %s: %s", job.db_path, url, exc)
                return 0, last_rowid
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(snapshot)

    async def _file_chunks(self, path: str) -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            while True:
                await self.rate.acquire(SEND_READ_BYTES)
                piece = await asyncio.to_thread(f.read, SEND_READ_BYTES)
                if not piece:
                    return
                yield piece


# --- blocking helpers (run in threads) -----------------------------------------------------------
def _databases(kind_dir: str) -> list[tuple[int, str]]:
    found = []
    try:
        partitions = os.listdir(kind_dir)
    except FileNotFoundError:
        return found
    for partition in sorted(p for p in partitions if p.isdigit()):
        part_dir = os.path.join(kind_dir, partition)
        for suffix in sorted(s for s in _listdir(part_dir) if is_suffix(s)):
            for name_hash in _listdir(os.path.join(part_dir, suffix)):
                if len(name_hash) == HASH_LENGTH:
                    db_path = os.path.join(part_dir, suffix, name_hash, name_hash + ".db")
                    if os.path.exists(db_path):
                        found.append((int(partition), db_path))
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _connect(db_path: str) -> sqlite3.Connection | None:
    if not os.path.exists(db_path):
        return None
    connection = sqlite3.connect(
        f"file:{db_path}?mode=rw", uri=True, timeout=DB_BUSY_TIMEOUT_S, isolation_level=None
    )
    return connection


def _local_info(kind: str, db_path: str) -> dict[str, Any] | None:
    connection = _connect(db_path)
    if connection is None:
        return None
    try:
        if kind == "containers":
            info = container_db.get_info(connection)
        else:
            info = account_db.get_info(connection)
        return {f: getattr(info, f) for f in info.__dataclass_fields__}
    finally:
        connection.close()


def _rows_since(kind: str, db_path: str, since_rowid: int) -> list[dict]:
    connection = _connect(db_path)
    if connection is None:
        return []
    try:
        module = container_db if kind == "containers" else account_db
        return module.get_items(connection, since_rowid, MERGE_ITEMS_MAX)
    finally:
        connection.close()


def _snapshot(kind: str, db_path: str, tmp_dir: str) -> tuple[str, int]:
    """A consistent copy of ``db_path`` in ``tmp_dir`` and the largest ROWID it holds."""
    os.makedirs(tmp_dir, exist_ok=True)
    target = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.snapshot.db")
    source = _connect(db_path)
    if source is None:
        raise FileNotFoundError(db_path)
    table = "object" if kind == "containers" else "container"
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
            destination.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            (last_rowid,) = destination.execute(
                f"SELECT COALESCE(MAX(ROWID), 0) FROM {table}"
            ).fetchone()
        finally:
            destination.close()
    finally:
        source.close()
    return target, int(last_rowid)


def _sync_path(db_path: str) -> str:
    return db_path + SYNC_SUFFIX


def _peer_key(node: dict[str, Any], peer_db_id: str) -> str:
    return f"{node['ip']}:{node['port']}/{node['device']}#{peer_db_id}"


def _load_points(db_path: str) -> dict[str, int]:
    try:
        with open(_sync_path(db_path), "rb") as f:
            points = msgpack.unpackb(f.read(), raw=False)
        return {str(k): int(v) for k, v in points.items()}
    except (OSError, ValueError, TypeError, AttributeError, msgpack.UnpackException):
        return {}


def _load_point(db_path: str, key: str) -> int:
    return _load_points(db_path).get(key, 0)


def _save_point(db_path: str, key: str, rowid: int) -> None:
    """Atomic replace, no fsync: a lost sync point only means rows are pushed again."""
    points = _load_points(db_path)
    points[key] = rowid
    temp = f"{_sync_path(db_path)}.{os.getpid()}.tmp"
    with open(temp, "wb") as f:
        f.write(msgpack.packb(points))
    os.rename(temp, _sync_path(db_path))


def _remove_db(db_path: str) -> None:
    for path in (db_path, db_path + "-wal", db_path + "-shm", _sync_path(db_path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(db_path))
