"""The object server: PUT, POST and DELETE of objects; GET and HEAD are in ``object_get``.

Public: :class:`ObjectServer`.

PUT, in the order the client sees it:

1. Headers are checked (``X-Timestamp``, ``Content-Type``, ``Content-Length`` or chunked,
   ``X-Delete-At``) and turned into metadata (:mod:`objectd.object_headers`).
2. A body up to ``WHOLE_PUT_BYTES_MAX`` without ``Expect`` is read whole (as its network
   chunks, never joined), then written, fsynced, linked into place and its directories fsynced
   in **one** hop to the disk thread. The proxy sends every body up to 2 MiB this way.
3. Otherwise one hop opens the temp file and checks device, space and timestamp; with
   ``Expect: 100-continue`` the ``100 Continue`` goes out only after that hop, so a proxy learns
   about a full disk (507) or a newer object (409) before it streams a byte. The body then
   streams in ``WRITE_BUFFER_BYTES`` buffers, one disk write in flight while the next buffer is
   read, and a final hop writes the tail, checks size and ETag and makes the object visible.
4. The container servers named by the proxy are updated (:mod:`objectd.container_update`);
   an update that cannot be delivered is saved as an async pending first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from objectd.backend_headers import (
    is_replication,
    policy_index_of,
    require_timestamp,
    send_continue,
    wants_continue,
)
from objectd.backend_path import BackendPath
from objectd.container_update import ContainerUpdater, parse_targets
from objectd.devices import Devices
from objectd.digest_footer import DIGEST_FOOTER_BYTES, DIGEST_FOOTER_HEADER, parse_footer
from objectd.disk_read import ObjectState
from objectd.disk_write import ObjectWriter, put_small, write_marker
from objectd.errors import (
    BadRequest,
    ClientDisconnect,
    Conflict,
    LengthRequired,
    NotFound,
    PreconditionFailed,
    RequestTimeout,
)
from objectd.layout import Layout
from objectd.limits import WHOLE_PUT_BYTES_MAX, WRITE_BUFFER_BYTES
from objectd.metadata import META, TOMBSTONE
from objectd.object_get import ObjectReader
from objectd.object_headers import delete_at_of, normalize_etag, post_metadata, put_metadata
from shoal.body_chunks import next_chunk
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.object")

_READ_ERRORS = (OSError, HttpProcessingError, asyncio.IncompleteReadError)


class ObjectServer:
    """Handles ``/<device>/<partition>/<account>/<container>/<object>``."""

    def __init__(
        self,
        devices: Devices,
        layout: Layout,
        allowed: frozenset[str],
        reader: ObjectReader,
        updater: ContainerUpdater,
        client_timeout_s: float,
    ):
        self.devices = devices
        self.layout = layout
        self.allowed = allowed
        self.reader = reader
        self.updater = updater
        self.client_timeout_s = client_timeout_s

    async def handle(self, request: web.Request, path: BackendPath) -> web.StreamResponse:
        method = request.method
        if method in ("GET", "HEAD"):
            return await self.reader.handle(request, path)
        if method == "PUT":
            return await self.put(request, path)
        if method == "DELETE":
            return await self.delete(request, path)
        if method == "POST":
            return await self.post(request, path)
        return web.Response(status=405, headers={"Allow": "GET, HEAD, PUT, POST, DELETE"})

    def _hash_dir(self, path: BackendPath, policy: int) -> str:
        name_hash = self.layout.hash_of(path.account, path.container, path.obj)
        return self.layout.object_dir(path.device, path.partition, policy, name_hash)

    # --- PUT ------------------------------------------------------------------------------------
    async def put(self, request: web.Request, path: BackendPath) -> web.Response:
        headers = request.headers
        timestamp = require_timestamp(headers)
        policy = policy_index_of(headers)
        replicating = is_replication(headers)  # a replicator copies what exists, even if expired
        delete_at_of(headers.get("X-Delete-At"), now=None if replicating else time.time())
        parse_targets(headers)  # a malformed update target is a 400 before anything is written
        length = request.content_length
        if length is None and "chunked" not in headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired("Missing Content-Length")
        metadata = put_metadata(headers, path.name, timestamp, self.allowed)
        client_etag = normalize_etag(headers.get("ETag"))
        if_none_match_star = headers.get("If-None-Match", "").strip() == "*"
        with_footer = DIGEST_FOOTER_HEADER in headers
        body_bytes = length
        if with_footer:
            if length is None or length < DIGEST_FOOTER_BYTES:
                raise BadRequest(
                    f"a digest footer needs a Content-Length of {DIGEST_FOOTER_BYTES}+"
                )
            body_bytes = length - DIGEST_FOOTER_BYTES
        writer = ObjectWriter(
            self.devices, path.device, self._hash_dir(path, policy), body_bytes,
            md5_from_footer=with_footer,
        )  # fmt: skip
        if length is not None and length <= WHOLE_PUT_BYTES_MAX and not wants_continue(request):
            buffers = await self._read_whole(request, length)
            footer = None
            if with_footer:
                footer_raw = bytearray()
                buffers, _ = _split_body(buffers, length - DIGEST_FOOTER_BYTES, footer_raw)
                footer = parse_footer(bytes(footer_raw))
            etag = await self.devices.run(
                path.device,
                put_small,
                writer,
                buffers,
                metadata,
                timestamp,
                client_etag,
                if_none_match_star,
                footer,
            )
        else:
            etag = await self._put_streamed(
                request, path, writer, metadata, timestamp, client_etag, if_none_match_star
            )
        await self.updater.object_changed(
            request.headers, path, policy, "PUT", timestamp, metadata, writer.bytes_written
        )
        return web.Response(status=201, headers={"ETag": etag})

    async def _put_streamed(
        self,
        request: web.Request,
        path: BackendPath,
        writer: ObjectWriter,
        metadata: dict[str, str],
        timestamp: Timestamp,
        client_etag: str | None,
        if_none_match_star: bool,
    ) -> str:
        device = path.device
        await self.devices.run(device, _open_writer, writer, timestamp, if_none_match_star)
        pending: asyncio.Future[None] | None = None
        committing = False  # commit() drops the temp file itself, whatever happens
        try:
            if wants_continue(request):
                await send_continue(request)
            held: list[bytes] = []
            footer_raw = bytearray()  # the bytes after the body, when the proxy sends a footer
            body_left = writer.expected_bytes if writer.md5_from_footer else None
            async for received in self._buffers(request):
                buffers = received
                if body_left is not None:
                    buffers, body_left = _split_body(received, body_left, footer_raw)
                    if not buffers:
                        continue
                if held:
                    if pending is not None:
                        await pending
                    pending = self.devices.submit(device, writer.write, held)
                held = buffers
            if pending is not None:
                await pending
                pending = None
            footer = None
            if writer.md5_from_footer:
                if len(footer_raw) < DIGEST_FOOTER_BYTES:
                    raise ClientDisconnect("the body ended before its digest footer")
                footer = parse_footer(bytes(footer_raw))
            committing = True
            return await self.devices.run(
                device, writer.commit, held, metadata, timestamp, client_etag, if_none_match_star,
                footer,
            )  # fmt: skip
        finally:
            if pending is not None:  # let the write in flight finish before the fd is closed
                await asyncio.wait([pending])
            if not committing:
                await self.devices.run(device, writer.abort)

    async def _next_chunk(self, content: StreamReader) -> bytes:
        """The body's next network chunk (``b""`` at its end); 408 when the client pauses
        longer than ``client_timeout_s``, 499 when it goes away."""
        try:
            async with asyncio.timeout(self.client_timeout_s):
                return await next_chunk(content)
        except TimeoutError:
            raise RequestTimeout(f"no body bytes for {self.client_timeout_s} s") from None
        except _READ_ERRORS as exc:
            raise ClientDisconnect(f"client went away: {exc!r}") from None

    async def _buffers(self, request: web.Request) -> AsyncIterator[list[bytes]]:
        """The body as lists of network chunks of about ``WRITE_BUFFER_BYTES`` together (kept as
        received: the disk thread writes them with one writev); 408/499 on a slow or gone
        client."""
        content = request.content
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await self._next_chunk(content)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size >= WRITE_BUFFER_BYTES:
                yield chunks
                chunks, size = [], 0
        yield chunks

    async def _read_whole(self, request: web.Request, length: int) -> list[bytes]:
        """The ``length`` bytes of a body as the network chunks that brought them (not joined:
        the disk thread writes them with one writev); 408 when the client pauses longer than
        ``client_timeout_s`` between chunks (as when streaming), 499 when it ends short or goes."""
        content = request.content
        chunks: list[bytes] = []
        received = 0
        while received < length:
            chunk = await self._next_chunk(content)
            if not chunk:
                raise ClientDisconnect(f"got {received} of {length} body bytes")
            chunks.append(chunk)
            received += len(chunk)
        return chunks

    # --- DELETE ---------------------------------------------------------------------------------
    async def delete(self, request: web.Request, path: BackendPath) -> web.Response:
        headers = request.headers
        timestamp = require_timestamp(headers)
        policy = policy_index_of(headers)
        if_delete_at = headers.get("X-If-Delete-At")
        if if_delete_at is not None and not if_delete_at.isdigit():
            raise BadRequest("Bad X-If-Delete-At header value")
        parse_targets(headers)
        metadata = {"name": path.name, "X-Timestamp": timestamp.internal}
        now = time.time()

        def decide(state: ObjectState) -> None:
            newest = state.timestamp
            if newest is not None and newest >= timestamp:
                raise Conflict(timestamp=newest)
            if if_delete_at is not None:
                stored = (state.metadata or {}).get("X-Delete-At")
                if not state.exists or stored != if_delete_at:
                    raise PreconditionFailed("X-If-Delete-At mismatch")

        state = await self.devices.run(
            path.device,
            write_marker,
            self.devices,
            path.device,
            policy,
            self._hash_dir(path, policy),
            self.allowed,
            TOMBSTONE,
            metadata,
            timestamp,
            decide,
        )
        await self.updater.object_changed(headers, path, policy, "DELETE", timestamp, metadata, 0)
        found = state.exists and not _expired(state, now)
        response_headers = (
            {"X-Backend-Timestamp": state.timestamp.internal} if state.timestamp else {}
        )
        return web.Response(status=204 if found else 404, headers=response_headers)

    # --- POST -----------------------------------------------------------------------------------
    async def post(self, request: web.Request, path: BackendPath) -> web.Response:
        headers = request.headers
        timestamp = require_timestamp(headers)
        policy = policy_index_of(headers)
        now = time.time()
        delete_at_of(headers.get("X-Delete-At"), now=now)
        metadata = post_metadata(headers, path.name, timestamp, self.allowed)

        def decide(state: ObjectState) -> None:
            if not state.exists or _expired(state, now):
                raise NotFound(timestamp=state.timestamp)
            assert state.timestamp is not None
            if state.timestamp >= timestamp:
                raise Conflict(timestamp=state.timestamp)

        await self.devices.run(
            path.device,
            write_marker,
            self.devices,
            path.device,
            policy,
            self._hash_dir(path, policy),
            self.allowed,
            META,
            metadata,
            timestamp,
            decide,
        )
        return web.Response(status=202)


def _split_body(buffers: list[bytes], body_left: int, footer: bytearray) -> tuple[list[bytes], int]:
    """The part of ``buffers`` that is body (``body_left`` bytes of it remain); what follows
    the body goes to ``footer``. Returns the body part and the body bytes still to come."""
    body: list[bytes] = []
    for chunk in buffers:
        if len(chunk) <= body_left:
            body.append(chunk)
            body_left -= len(chunk)
        else:
            if body_left:
                body.append(chunk[:body_left])
            footer += chunk[body_left:]
            body_left = 0
    return body, body_left


def _open_writer(writer: ObjectWriter, timestamp: Timestamp, if_none_match_star: bool) -> None:
    writer.open(timestamp, if_none_match_star, precheck=True)


def _expired(state: ObjectState, now: float) -> bool:
    delete_at = (state.metadata or {}).get("X-Delete-At")
    return bool(delete_at and delete_at.isdigit() and int(delete_at) <= now)
