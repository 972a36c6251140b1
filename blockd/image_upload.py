"""Upload a volume's bytes to an image store (Glance's ``PUT /v2/images/<id>/file``) as a task.

Public: :func:`upload_volume`.

The counterpart of :mod:`blockd.image_import`: Cinder's ``copy_volume_to_image`` asks blockd to
send the volume itself, so the cinder-volume host never attaches it over iSCSI. The body is read
from the volume's device or file one chunk at a time in a worker thread and streamed (memory: one
chunk); the volume's lock is held so no extend or revert changes it underneath.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from blockd.errors import BackendFailure
from blockd.service import BlockService
from blockd.tasks import Task
from shoal.units import MiB

CHUNK_BYTES = 1 * MiB
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # the image store may verify and store the whole image before answering
OK_STATUSES = (200, 201, 204)


async def upload_volume(
    service: BlockService,
    session: aiohttp.ClientSession,
    volume_id: str,
    url: str,
    headers: dict[str, str],
    task: Task,
) -> None:
    async with service.locks.hold(volume_id):
        volume = await service.get_volume(volume_id)
        device = await service.device_path(volume)
        task.total_bytes = volume.size_bytes
        fd = await asyncio.to_thread(os.open, device, os.O_RDONLY)
        try:

            async def body():
                while task.done_bytes < volume.size_bytes:
                    length = min(CHUNK_BYTES, volume.size_bytes - task.done_bytes)
                    data = await asyncio.to_thread(os.pread, fd, length, task.done_bytes)
                    if not data:
                        raise BackendFailure(f"{device} ended at {task.done_bytes} bytes")
                    yield data
                    task.done_bytes += len(data)

            timeout = aiohttp.ClientTimeout(
                sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
            )
            sent_headers = {
                **headers,
                "Content-Type": "application/octet-stream",
                "Content-Length": str(volume.size_bytes),
            }
            try:
                async with session.put(
                    url, data=body(), headers=sent_headers, timeout=timeout
                ) as response:
                    if response.status not in OK_STATUSES:
                        raise BackendFailure(f"PUT {url} answered {response.status}")
            except aiohttp.ClientError as exc:
                raise BackendFailure(f"PUT {url}: {exc}") from None
        finally:
            await asyncio.to_thread(os.close, fd)
