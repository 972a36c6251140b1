"""Import an image (Glance or Swift URL) into a volume: the long operation that runs as a task.

Public: :func:`import_image`.

The body is streamed from the URL straight into the volume's device or file with ``pwrite`` in
a worker thread, one chunk in flight at a time (backpressure: the socket is read only as fast as
the disk takes it), so memory stays at one chunk whatever the image size.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from blockd.errors import BackendFailure, InvalidRequest
from blockd.model import Volume
from blockd.tasks import Task
from shoal.units import MiB

CHUNK_BYTES = 1 * MiB  # large sequential writes; one chunk is all the memory an import holds
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # per chunk: a stalled source fails the task instead of holding the volume


async def import_image(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    volume: Volume,
    device: str,
    task: Task,
) -> None:
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    try:
        async with session.get(url, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                raise BackendFailure(f"GET {url} answered {response.status}")
            task.total_bytes = response.content_length
            if task.total_bytes is not None and task.total_bytes > volume.size_bytes:
                raise InvalidRequest(
                    f"the image ({task.total_bytes} bytes) is larger than the volume "
                    f"({volume.size_bytes} bytes)"
                )
            fd = await asyncio.to_thread(os.open, device, os.O_WRONLY)
            try:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    if task.done_bytes + len(chunk) > volume.size_bytes:
                        raise InvalidRequest("the image is larger than the volume")
                    await asyncio.to_thread(os.pwrite, fd, chunk, task.done_bytes)
                    task.done_bytes += len(chunk)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                await asyncio.to_thread(os.close, fd)
    except aiohttp.ClientError as exc:
        raise BackendFailure(f"GET {url}: {exc}") from None
    if task.total_bytes is not None and task.done_bytes != task.total_bytes:
        raise BackendFailure(f"GET {url}: got {task.done_bytes} of {task.total_bytes} bytes")
