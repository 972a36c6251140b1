"""Import an image (Glance or Swift URL) into a volume: the long operation that runs as a task.

Public: :func:`import_image`, :data:`IMAGE_FORMATS`.

A raw image is streamed from the URL straight into the volume's device or file with ``pwrite``
in a worker thread, one chunk in flight at a time (backpressure: the socket is read only as fast
as the disk takes it), so memory stays at one chunk whatever the image size.

Any other format (:data:`blockd.image_convert.DISK_FORMATS`) is downloaded the same way into a
file of ``conversion_dir`` (on the backend's file system for reflink: no other disk need be sized
for images), bounded by the volume's size plus the format's metadata, then checked and converted
with ``qemu-img`` (:mod:`blockd.image_convert`); the download is removed afterwards, also on
failure. The task's ``phase`` is ``downloading`` then ``converting``; its bytes count each phase.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiohttp

from blockd.errors import BackendFailure, InsufficientCapacity, InvalidRequest
from blockd.image_convert import DISK_FORMATS, TMP_PREFIX, convert_to_raw, inspect_image
from blockd.model import Volume
from blockd.tasks import Task
from shoal.units import MiB

IMAGE_FORMATS = ("raw", *DISK_FORMATS)  # what POST /v1/volumes accepts as image.disk_format
CHUNK_BYTES = 1 * MiB  # large sequential writes; one chunk is all the memory an import holds
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # per chunk: a stalled source fails the task instead of holding the volume
# A non-raw image file holds the data plus its tables (qcow2: 8 bytes of L2 and 2 of refcount per
# 64 KiB cluster, ~0.02%; vmdk/vdi/vhd similar), so a download larger than the volume by more than
# this cannot be an image that fits: it is cut off before it fills the disk.
METADATA_SLACK_BYTES = 64 * MiB
METADATA_SLACK_FRACTION = 1 / 64


def download_limit(volume_size_bytes: int) -> int:
    return (
        volume_size_bytes + METADATA_SLACK_BYTES + int(volume_size_bytes * METADATA_SLACK_FRACTION)
    )


async def _download(
    response: aiohttp.ClientResponse, path: str, flags: int, limit: int, task: Task
) -> None:
    """The body into ``path`` (opened with ``flags``), at most ``limit`` bytes."""
    fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | flags, 0o600)
    try:
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            if task.done_bytes + len(chunk) > limit:
                raise InvalidRequest("the image is larger than the volume")
            await asyncio.to_thread(os.pwrite, fd, chunk, task.done_bytes)
            task.done_bytes += len(chunk)
        await asyncio.to_thread(os.fsync, fd)
    finally:
        await asyncio.to_thread(os.close, fd)


def _check_room(directory: Path, needed: int) -> None:
    stat = os.statvfs(directory)
    if stat.f_bavail * stat.f_frsize < needed:
        raise InsufficientCapacity(
            f"{directory} has {stat.f_bavail * stat.f_frsize} bytes free, "
            f"the image needs {needed} to be converted"
        )


async def import_image(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    volume: Volume,
    device: str,
    task: Task,
    disk_format: str = "raw",
    conversion_dir: Path | None = None,
) -> None:
    if disk_format not in IMAGE_FORMATS:
        raise InvalidRequest(f"disk_format {disk_format!r} is not one of {IMAGE_FORMATS}")
    if disk_format != "raw" and conversion_dir is None:
        raise BackendFailure("no conversion directory for non-raw images")
    limit = volume.size_bytes if disk_format == "raw" else download_limit(volume.size_bytes)
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    download: Path | None = None
    try:
        async with session.get(url, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                raise BackendFailure(f"GET {url} answered {response.status}")
            task.phase = "downloading"
            task.total_bytes = response.content_length
            if task.total_bytes is not None and task.total_bytes > limit:
                raise InvalidRequest(
                    f"the image ({task.total_bytes} bytes) is larger than the volume "
                    f"({volume.size_bytes} bytes)"
                )
            if conversion_dir is None or disk_format == "raw":
                await _download(response, device, 0, limit, task)
            else:
                await asyncio.to_thread(conversion_dir.mkdir, 0o700, True, True)
                await asyncio.to_thread(_check_room, conversion_dir, task.total_bytes or limit)
                download = conversion_dir / f"{TMP_PREFIX}{uuid.uuid4()}"
                flags = os.O_CREAT | os.O_EXCL
                await _download(response, str(download), flags, limit, task)
        if task.total_bytes is not None and task.done_bytes != task.total_bytes:
            raise BackendFailure(f"GET {url}: got {task.done_bytes} of {task.total_bytes} bytes")
        if download is not None:
            image = await inspect_image(download, disk_format, volume.size_bytes)
            await convert_to_raw(download, image, device, task)
    except aiohttp.ClientError as exc:
        raise BackendFailure(f"GET {url}: {exc}") from None
    finally:
        if download is not None:
            await asyncio.to_thread(download.unlink, True)
