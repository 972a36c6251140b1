"""Backups of snapshots to Shoal's object store (Swift API) as content-addressed chunks.

Public: :class:`ObjectStore`, :func:`backup_snapshot`, :func:`restore_backup`,
:data:`CHUNK_BYTES`, :func:`manifest_name`, :func:`chunk_name`.

Layout in the caller's container::

    chunks/<sha256 hex>     CHUNK_BYTES of a volume (the last one may be shorter); deduplicated:
                            identical chunks of any backup, of any volume, are stored once
    backups/<backup id>     the manifest (JSON), written last: a backup exists once it is whole

Manifest: ``{"backup_id", "volume_id", "snapshot_id", "parent_id", "size_bytes", "chunk_bytes",
"chunks": [sha256 hex | null…], "changes_from", "read_chunks", "read_bytes", "unchanged_chunks",
"uploaded_chunks", "uploaded_bytes", "reused_chunks", "zero_chunks", "created_at"}``; ``null`` is
an all-zero chunk, never stored (a restored volume starts zeroed: blockd's backends never show old
data in a new volume). ``read_*``: chunks read from the snapshot; ``unchanged_chunks``: taken from
the parent's manifest without reading; ``uploaded_*``: sent; ``reused_chunks``: read but already
stored (in the parent, earlier in this backup, or found by HEAD); ``zero_chunks``: nulls.

Incremental, with a parent backup (``changes_from`` says which way was used):

- ``"thin_delta"``: the parent's snapshot still exists and the backend can list the blocks that
  differ between it and this snapshot (lvm-thin: :meth:`LvmThinBackend.changed_ranges`). Only the
  chunks covering those blocks are read and hashed; every other chunk is the parent's entry.
- ``"chunk_hashes"`` (the parent's snapshot is gone, or reflink, or thin_delta failed): every chunk
  is read and hashed; a hash in the parent's manifest is not sent again.

Without a parent (``"none"``), each chunk is looked up with a HEAD before it is sent, which
deduplicates across volumes.

The snapshot is read through a temporary volume made from it (O(1) on both backends, and the
same path for lvm-thin and reflink), deleted afterwards. Credentials are the caller's: a storage
URL and a token (Keystone or tempauth) for one request's work, never stored by blockd.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass

import aiohttp

from blockd.errors import BackendFailure, InvalidRequest, NotFound
from blockd.service import BlockService
from blockd.tasks import Task
from shoal.units import GiB, MiB

CHUNK_BYTES = 4 * MiB  # Cinder's Swift backup driver uses 50 MiB objects; 4 MiB dedups better
UPLOADS_IN_FLIGHT = 4  # chunks being sent at once: keeps the link busy, memory <= 5 chunks
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # per socket read: a stalled object store fails the task
ATTEMPTS = 3  # a proxy that lost its quorum for a moment (503) or a reset connection
RETRY_BACKOFF_S = 0.5  # times the attempt number
_ZERO_CHUNK = bytes(CHUNK_BYTES)


def manifest_name(backup_id: str) -> str:
    return f"backups/{backup_id}"


def chunk_name(digest: str) -> str:
    return f"chunks/{digest}"


@dataclass(frozen=True)
class ObjectStore:
    """One container of a Swift account, reached with the caller's token."""

    session: aiohttp.ClientSession
    storage_url: str
    token: str
    container: str

    def _url(self, name: str = "") -> str:
        base = f"{self.storage_url.rstrip('/')}/{self.container}"
        return f"{base}/{name}" if name else base

    async def _request(self, method: str, name: str = "", data: bytes | None = None):
        """One call, retried after a connection error or a 5xx: every call here is idempotent
        (chunks are named by their content; a manifest is written once, when complete)."""
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        headers = {"X-Auth-Token": self.token}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.session.request(
                    method, self._url(name), data=data, headers=headers, timeout=timeout
                ) as response:
                    status, body = response.status, await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt == ATTEMPTS:
                    raise BackendFailure(
                        f"object store {method} {self._url(name)}: {exc}"
                    ) from None
            else:
                if status < 500 or attempt == ATTEMPTS:
                    return status, body
            await asyncio.sleep(RETRY_BACKOFF_S * attempt)
        raise AssertionError("unreachable")

    def _fail(self, method: str, name: str, status: int) -> BackendFailure:
        return BackendFailure(f"object store {method} {self._url(name)} answered {status}")

    async def ensure_container(self) -> None:
        status, _ = await self._request("PUT")
        if status not in (201, 202, 204):
            raise self._fail("PUT", "", status)

    async def exists(self, name: str) -> bool:
        status, _ = await self._request("HEAD", name)
        if status in (200, 204):
            return True
        if status == 404:
            return False
        raise self._fail("HEAD", name, status)

    async def put(self, name: str, data: bytes) -> None:
        status, _ = await self._request("PUT", name, data)
        if status != 201:
            raise self._fail("PUT", name, status)

    async def get(self, name: str) -> bytes:
        status, body = await self._request("GET", name)
        if status == 404:
            raise NotFound(f"{name} not found in container {self.container}")
        if status != 200:
            raise self._fail("GET", name, status)
        return body

    async def manifest(self, backup_id: str) -> dict:
        try:
            return json.loads(await self.get(manifest_name(backup_id)))
        except ValueError:
            raise BackendFailure(f"manifest of backup {backup_id} is not JSON") from None


def _digest(data: bytes) -> str | None:
    """sha256 of a chunk, or None for an all-zero one (run in a thread: ~10 ms per 4 MiB)."""
    if data == _ZERO_CHUNK[: len(data)]:
        return None
    return hashlib.sha256(data).hexdigest()


async def backup_snapshot(
    service: BlockService,
    store: ObjectStore,
    backup_id: str,
    snapshot_id: str,
    parent_id: str | None,
    task: Task,
) -> dict:
    """Send the snapshot's changed chunks and then its manifest; returns the manifest."""
    snapshot = await service.get_snapshot(snapshot_id)
    parent = await store.manifest(parent_id) if parent_id else None
    if parent is not None and parent.get("chunk_bytes") != CHUNK_BYTES:
        raise InvalidRequest(f"parent {parent_id} was made with another chunk size")
    await store.ensure_container()
    known = {c for c in (parent or {}).get("chunks", []) if c}
    task.total_bytes = snapshot.size_bytes
    reader_id = str(uuid.uuid4())  # a temporary volume made from the snapshot, read, deleted
    reader = await service.create_volume(
        reader_id, math.ceil(snapshot.size_bytes / GiB), snapshot_id=snapshot_id
    )
    try:
        unchanged: dict[int, str | None] = {}
        changes_from = "none"
        if parent is not None:
            changes_from = "chunk_hashes"
            found = await _unchanged_chunks(service, parent, snapshot)
            if found is not None:
                changes_from, unchanged = "thin_delta", found
        device = await service.device_path(reader)
        chunks, stats = await _send_chunks(
            store, device, snapshot.size_bytes, known, unchanged, task
        )
    finally:
        await service.delete_volume(reader_id)
    manifest = {
        "backup_id": backup_id,
        "volume_id": snapshot.volume_id,
        "snapshot_id": snapshot_id,
        "parent_id": parent_id,
        "size_bytes": snapshot.size_bytes,
        "chunk_bytes": CHUNK_BYTES,
        "chunks": chunks,
        "changes_from": changes_from,
        **stats,
        "created_at": time.time(),
    }
    await store.put(manifest_name(backup_id), json.dumps(manifest).encode())
    return manifest


def changed_chunk_indexes(ranges: list[tuple[int, int]]) -> set[int]:
    """The indexes of the CHUNK_BYTES chunks that byte ranges ``(offset, length)`` touch."""
    touched: set[int] = set()
    for offset, length in ranges:
        if length > 0:
            touched.update(range(offset // CHUNK_BYTES, (offset + length - 1) // CHUNK_BYTES + 1))
    return touched


async def _unchanged_chunks(service: BlockService, parent: dict, snapshot) -> dict | None:
    """Chunk index -> the parent's entry, for the chunks the backend says did not change since
    the parent's snapshot; None when it cannot say (then every chunk is read and hashed)."""
    try:
        old = await service.get_snapshot(parent["snapshot_id"])
    except NotFound:
        return None
    ranges = await service.backend.changed_ranges(old, snapshot)
    if ranges is None:
        return None
    changed = changed_chunk_indexes(ranges)
    parent_chunks = parent["chunks"]
    # whole chunks in both only: a short last chunk of the parent may have grown with the volume
    count = min(old.size_bytes, snapshot.size_bytes) // CHUNK_BYTES
    return {i: parent_chunks[i] for i in range(min(count, len(parent_chunks))) if i not in changed}


async def _send_chunks(
    store: ObjectStore,
    device: str,
    size_bytes: int,
    known: set[str],
    unchanged: dict[int, str | None],
    task: Task,
) -> tuple[list[str | None], dict]:
    chunks: list[str | None] = []
    stats = {"read_chunks": 0, "read_bytes": 0, "unchanged_chunks": 0, "uploaded_chunks": 0,
             "uploaded_bytes": 0, "reused_chunks": 0, "zero_chunks": 0}  # fmt: skip
    slots = asyncio.Semaphore(UPLOADS_IN_FLIGHT)
    sending: set[asyncio.Task] = set()
    errors: list[Exception] = []

    async def send(digest: str, data: bytes) -> None:
        try:
            if await store.exists(chunk_name(digest)):  # stored by another backup
                stats["reused_chunks"] += 1
                return
            await store.put(chunk_name(digest), data)
            stats["uploaded_chunks"] += 1
            stats["uploaded_bytes"] += len(data)
        except Exception as exc:
            errors.append(exc)
        finally:
            slots.release()

    fd = await asyncio.to_thread(os.open, device, os.O_RDONLY)
    try:
        for index, offset in enumerate(range(0, size_bytes, CHUNK_BYTES)):
            if errors:
                raise errors[0]
            length = min(CHUNK_BYTES, size_bytes - offset)
            if index in unchanged:  # the backend says it is the parent's: not read
                chunks.append(unchanged[index])
                stats["unchanged_chunks"] += 1
                stats["zero_chunks"] += unchanged[index] is None
                task.done_bytes = offset + length
                continue
            data = await asyncio.to_thread(os.pread, fd, length, offset)
            stats["read_chunks"] += 1
            stats["read_bytes"] += len(data)
            digest = await asyncio.to_thread(_digest, data)
            chunks.append(digest)
            if digest is None:
                stats["zero_chunks"] += 1
            elif digest in known:
                stats["reused_chunks"] += 1
            else:
                known.add(digest)  # a repeat within this backup is sent once
                await slots.acquire()
                sender = asyncio.create_task(send(digest, data))
                sending.add(sender)
                sender.add_done_callback(sending.discard)
            task.done_bytes = offset + length
        await asyncio.gather(*sending)
    finally:
        for sender in list(sending):
            sender.cancel()
        await asyncio.to_thread(os.close, fd)
    if errors:
        raise errors[0]
    return chunks, stats


async def restore_backup(
    service: BlockService, store: ObjectStore, manifest: dict, volume_id: str, task: Task
) -> None:
    """Write the backup's chunks into the (new, zeroed) volume; every chunk is verified."""
    if manifest.get("chunk_bytes") != CHUNK_BYTES:
        raise InvalidRequest("the backup was made with another chunk size")
    task.total_bytes = manifest["size_bytes"]
    async with service.locks.hold(volume_id):
        volume = await service.get_volume(volume_id)
        device = await service.device_path(volume)
        fd = await asyncio.to_thread(os.open, device, os.O_WRONLY)
        try:
            for index, digest in enumerate(manifest["chunks"]):
                offset = index * CHUNK_BYTES
                if digest is not None:
                    data = await store.get(chunk_name(digest))
                    if await asyncio.to_thread(_digest, data) != digest:
                        raise BackendFailure(f"chunk {digest} is corrupt in the object store")
                    await asyncio.to_thread(os.pwrite, fd, data, offset)
                task.done_bytes = min(offset + CHUNK_BYTES, manifest["size_bytes"])
            await asyncio.to_thread(os.fsync, fd)
        finally:
            await asyncio.to_thread(os.close, fd)
