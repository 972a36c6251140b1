"""GET and HEAD of objects: conditionals, ranges, expiry, and verified zero-copy bodies.

Public: :class:`ObjectReader`.

Opening the object lists the hash directory, reads the trailer and, for a small file, the whole
body (MD5-checked before a byte is sent): on the event loop when all of it is in the kernel's
caches (:mod:`objectd.cached_io`; no thread hop, which costs more than the reads), else in one
hop to the device's threads. Then, on the loop, expiry
(``X-Delete-At``), the conditional headers and ``Range`` are applied as Swift does.

Bodies of larger objects go out with ``sendfile`` (:mod:`objectd.sendfile`). A whole-object GET is
also verified: a disk thread computes the checksum of the file while the body is being sent
(xxh3-64, or the MD5 of files written before it: :func:`objectd.metadata.body_hasher`), and the
last ``WITHHELD_TAIL_BYTES`` are sent only once it matches what was recorded. On a mismatch the
object is quarantined and the connection is cut short, so the client (the proxy) sees a failed
read, never a complete corrupt object, and the object is never served again from this disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

from aiohttp import web

from objectd.backend_headers import is_replication, policy_index_of
from objectd.backend_path import BackendPath
from objectd.conditions import conditional_status, range_applies
from objectd.devices import Devices
from objectd.disk_read import (
    ObjectState,
    digest_of_range,
    quarantine,
    read_state,
    read_state_cached,
)
from objectd.errors import NotFound, PreconditionFailed
from objectd.layout import Layout
from objectd.limits import WITHHELD_TAIL_BYTES
from objectd.metadata import body_hasher
from objectd.object_headers import response_headers
from objectd.ranges import MultipartPlan, content_range, parse_range, resolve_ranges
from objectd.sendfile import FileSender
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.object")

_SEND_ERRORS = (OSError, TimeoutError, EOFError)


class _CorruptBody(Exception):
    """The MD5 of a body being served does not match its ETag."""


class ObjectReader:
    """Serves GET and HEAD for objects."""

    def __init__(
        self,
        devices: Devices,
        layout: Layout,
        allowed: frozenset[str],
        sendfile_pool: concurrent.futures.Executor,
        send_timeout_s: float,
    ):
        self.devices = devices
        self.layout = layout
        self.allowed = allowed
        self.sendfile_pool = sendfile_pool
        self.send_timeout_s = send_timeout_s

    async def handle(self, request: web.Request, path: BackendPath) -> web.StreamResponse:
        head = request.method == "HEAD"
        policy = policy_index_of(request.headers)
        name_hash = self.layout.hash_of(path.account, path.container, path.obj)
        hash_dir = self.layout.object_dir(path.device, path.partition, policy, name_hash)
        state = None
        reads = self.devices.cached_reads
        if reads is not None and reads.enabled and self.devices.in_use(path.device):
            state = read_state_cached(
                self.devices, reads, path.device, hash_dir, self.allowed,
                keep_open=not head, read_whole=not head,
            )  # fmt: skip
        if state is None:
            state = await self.devices.run(
                path.device, _open, self.devices, path.device, policy, hash_dir, self.allowed,
                not head,
            )  # fmt: skip
        try:
            return await self._respond(request, path, policy, state, head)
        finally:
            state.close()

    async def _respond(
        self, request: web.Request, path: BackendPath, policy: int, state: ObjectState, head: bool
    ) -> web.StreamResponse:
        metadata = state.metadata
        if metadata is None:
            if "*" in request.headers.get("If-Match", ""):
                raise PreconditionFailed("If-Match: * and no object")
            raise NotFound(timestamp=state.files.state_timestamp)
        assert state.timestamp is not None and state.data_timestamp is not None
        delete_at = metadata.get("X-Delete-At")
        expired = delete_at and delete_at.isdigit() and int(delete_at) <= time.time()
        if expired and not is_replication(request.headers):
            raise NotFound("expired", timestamp=state.timestamp)
        headers = response_headers(metadata, state.data_timestamp, state.timestamp)
        etag = metadata["ETag"]
        conditional_etag = _conditional_etag(request, metadata, etag)
        last_modified_s = _ceil_seconds(state.timestamp)
        status = conditional_status(request.headers, conditional_etag, last_modified_s)
        if status is not None:
            return web.Response(status=status, headers=headers)
        size = state.body_bytes
        if head:
            headers["Content-Length"] = str(size)
            return web.Response(headers=headers)
        ranges = self._ranges(request, metadata, etag, last_modified_s, size)
        if ranges == []:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers, text="Requested Range Not Satisfiable")
        if state.body is not None:
            return _small_response(state.body, headers, ranges, size)
        return await self._large_response(request, path, policy, state, headers, ranges)

    def _ranges(
        self,
        request: web.Request,
        metadata: dict[str, str],
        etag: str,
        last_modified_s: int,
        size: int,
    ) -> list[tuple[int, int]] | None:
        specs = parse_range(request.headers.get("Range"))
        if specs is None or not range_applies(request.headers, etag, last_modified_s):
            return None
        ignore_if = request.headers.get("X-Backend-Ignore-Range-If-Metadata-Present")
        if ignore_if and any(key.strip().title() in metadata for key in ignore_if.split(",")):
            return None
        return resolve_ranges(specs, size)

    async def _large_response(
        self,
        request: web.Request,
        path: BackendPath,
        policy: int,
        state: ObjectState,
        headers: dict[str, str],
        ranges: list[tuple[int, int]] | None,
    ) -> web.StreamResponse:
        assert state.fd is not None
        size = state.body_bytes
        if ranges is None:
            response = web.StreamResponse(status=200, headers=headers)
            response.content_length = size
        elif len(ranges) == 1:
            start, stop = ranges[0]
            headers["Content-Range"] = content_range(start, stop, size)
            response = web.StreamResponse(status=206, headers=headers)
            response.content_length = stop - start
        else:
            plan = MultipartPlan.build(ranges, size, headers.get("Content-Type", ""))
            headers["Content-Type"] = plan.content_type
            response = web.StreamResponse(status=206, headers=headers)
            response.content_length = plan.length
        await response.prepare(request)
        try:
            async with FileSender(
                request, response, self.sendfile_pool, self.send_timeout_s
            ) as sender:
                if ranges is None:
                    await self._send_verified(sender, path, policy, state)
                elif len(ranges) == 1:
                    await sender.send_range(state.fd, ranges[0][0], ranges[0][1] - ranges[0][0])
                else:
                    await _send_multipart(sender, plan, state.fd)
            await response.write_eof()
        except _CorruptBody:
            log.error("quarantined %s while serving it: checksum mismatch", state.hash_dir)
        except _SEND_ERRORS as exc:
            log.info("GET %s ended early: %r", path.name, exc)
        return response

    async def _send_verified(
        self, sender: FileSender, path: BackendPath, policy: int, state: ObjectState
    ) -> None:
        assert state.fd is not None and state.data_metadata is not None
        size = state.body_bytes
        new_hasher, expected = body_hasher(state.data_metadata)
        verify = self.devices.submit(
            path.device, digest_of_range, self.devices, state.fd, 0, size, new_hasher
        )
        try:
            head_bytes = max(0, size - WITHHELD_TAIL_BYTES)
            await sender.send_range(state.fd, 0, head_bytes)
            digest = await verify
            if digest != expected:
                await self.devices.run(
                    path.device, quarantine, self.devices, path.device, policy, state.hash_dir
                )
                raise _CorruptBody()
            await sender.send_range(state.fd, head_bytes, size - head_bytes)
        finally:
            if not verify.done():  # the fd must outlive the thread that reads it
                await asyncio.wait([verify])


def _open(
    devices: Devices, device: str, policy: int, hash_dir: str, allowed: frozenset[str], body: bool
) -> ObjectState:
    return read_state(devices, device, policy, hash_dir, allowed, keep_open=body, read_whole=body)


def _conditional_etag(request: web.Request, metadata: dict[str, str], etag: str) -> str:
    """Swift's X-Backend-Etag-Is-At: match conditionals against another metadata key."""
    etag_is_at = request.headers.get("X-Backend-Etag-Is-At")
    if etag_is_at:
        for key in etag_is_at.split(","):
            value = metadata.get(key.strip().title())
            if value:
                return value
    return etag


def _ceil_seconds(timestamp: Timestamp) -> int:
    return -(-timestamp.ticks // 100_000)


def _small_response(
    body: bytes, headers: dict[str, str], ranges: list[tuple[int, int]] | None, size: int
) -> web.Response:
    if ranges is None:
        return web.Response(body=body, headers=headers)
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers["Content-Range"] = content_range(start, stop, size)
        return web.Response(status=206, body=body[start:stop], headers=headers)
    plan = MultipartPlan.build(ranges, size, headers.get("Content-Type", ""))
    headers["Content-Type"] = plan.content_type
    return web.Response(status=206, body=plan.render(body), headers=headers)


async def _send_multipart(sender: FileSender, plan: MultipartPlan, fd: int) -> None:
    for piece in plan.pieces:
        if isinstance(piece, bytes):
            await sender.send_bytes(piece)
        else:
            await sender.send_range(fd, piece[0], piece[1] - piece[0])
