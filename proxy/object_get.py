"""Object GET and HEAD: first healthy replica, fail over to the next, also in the middle of a body.

Public: :func:`handle_object_get`, :func:`open_object`, :class:`OpenObject`.

A GET tries nodes in :meth:`proxy.cluster.Cluster.read_nodes` order until one answers something
other than a failure or a 404. The body is then streamed; if that node dies mid-body, the rest is
asked of the next node with a ``Range`` starting after the last byte sent and ``If-Match`` set to
the ETag already promised, so the client receives one byte-identical body. ``X-Newest: true``
first asks every primary for its timestamp and reads from the newest.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from objectd.client import BackendError, BackendStream, BackendUnavailable
from proxy import dlo, limits, splice_relay
from proxy.cluster import Cluster, is_node_failure
from proxy.config import ProxyConfig
from proxy.container_info import backend_headers, container_info
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import client_headers
from proxy.routing import SwiftPath
from ring import Ring

log = logging.getLogger("proxy")

_PASSED_HEADERS = ("Range", "If-Match", "If-None-Match", "If-Modified-Since",
                   "If-Unmodified-Since", "If-Range")  # fmt: skip
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class OpenObject:
    """A chosen replica's streamed answer, and what is needed to resume it elsewhere."""

    def __init__(self, cluster: Cluster, ring: Ring, part: int, path: SwiftPath,
                 headers: dict[str, str], nodes: Iterator[tuple[dict[str, Any], bool]],
                 stream: BackendStream):  # fmt: skip
        self.cluster, self.ring, self.part, self.path = cluster, ring, part, path
        self.headers, self.nodes, self.stream = headers, nodes, stream

    def resume_range(self, sent: int) -> str | None:
        """The Range that asks for the rest after ``sent`` bytes, or None if not resumable."""
        if self.stream.status == 200:
            return f"bytes={sent}-"
        if self.stream.status == 206:
            match = _CONTENT_RANGE.match(self.stream.headers.get("Content-Range", ""))
            if match:
                first, last = int(match.group(1)), int(match.group(2))
                return f"bytes={first + sent}-{last}"
        return None  # multipart/byteranges: the framing cannot be resumed

    async def send_body(
        self, request: web.Request, response: web.StreamResponse, config: ProxyConfig
    ) -> None:
        """Send the body to the prepared ``response``: spliced when large and possible (see
        :mod:`proxy.splice_relay`), chunk by chunk otherwise, failing over mid-body either way.

        Raises:
            BackendError: no replica could provide the rest.
            ConnectionError: the client went away.
        """
        length = int(self.stream.headers.get("Content-Length", "-1"))
        client_fd = None
        if splice_relay.available() and length >= splice_relay.SPLICE_MIN_BYTES:
            client_fd = splice_relay.client_socket_fd(request)
        sent, failure = 0, None
        try:
            taken = self.stream.take_over() if client_fd is not None else None
        except BackendError as exc:
            taken, failure = None, exc
        if taken is not None:
            assert client_fd is not None
            buffered, backend_fd = taken
            if buffered:
                await response.write(buffered)  # with the status line
            else:
                request.writer.send_headers()
            try:
                await splice_relay.relay(
                    request, client_fd, backend_fd, length - len(buffered),
                    backend_timeout_s=config.node_timeout_s,
                    client_timeout_s=config.client_timeout_s,
                )  # fmt: skip
                return
            except splice_relay.RelayCut as cut:
                sent = len(buffered) + cut.sent
                failure = BackendUnavailable(self.stream.node, str(cut))
        async for chunk in self.chunks(sent, failure):
            await response.write(chunk)

    async def chunks(self, sent: int = 0, failure: BackendError | None = None) -> Any:
        """The body, failing over to other replicas mid-stream. Raises BackendError when no
        replica can provide the rest.

        ``sent`` bytes of the current stream reached the client already, and ``failure`` is how
        that stream ended, when it did (the splice relay hands over this way)."""
        etag = self.stream.headers.get("ETag", "")
        stream = self.stream
        while True:
            try:
                if failure is not None:
                    failed, failure = failure, None
                    raise failed
                async for chunk in stream.iter_chunks():
                    sent += len(chunk)
                    yield chunk
                return
            except BackendError as exc:
                self.cluster.record(stream.node, str(exc))
                stream.close()
                resume = self.resume_range(sent)
                if resume is None or await self._cut_for_corruption(stream, etag):
                    raise
                log.warning(
                    "object GET: %s failed after %d bytes; resuming elsewhere", stream.node, sent
                )
                headers = {**backend_headers(), "X-Backend-Storage-Policy-Index":
                           self.headers["X-Backend-Storage-Policy-Index"],
                           "Range": resume, "If-Match": etag}  # fmt: skip
                following = await _first_stream(
                    self.cluster, self.part, self.path, headers, self.nodes, 3
                )
                if following is None or following.status != 206:
                    if following is not None:
                        following.close()
                    raise
                # the new stream's Content-Range starts at the resume point, so ``sent``
                # counts from there on
                stream = self.stream = following
                sent = 0

    async def _cut_for_corruption(self, stream: BackendStream, etag: str) -> bool:
        """Whether a whole-object stream was cut because its replica failed verification.

        objectd checks the MD5 of a whole object while sending it and cuts the stream, after
        quarantining the file, when it does not match: the bytes already sent may then be
        corrupt, and resuming from another replica would hand the client a complete body with
        the bad bytes inside. So the failed node is asked again: if it no longer has the object
        (or has another ETag), the client's response is cut too, and the client sees a short
        body instead of a wrong one. A node that is simply gone does not answer: resume.
        """
        if stream.status != 200:
            return False  # ranges are not verified by objectd: a cut there is a node failure
        headers = {**backend_headers(), "X-Backend-Storage-Policy-Index":
                   self.headers["X-Backend-Storage-Policy-Index"]}  # fmt: skip
        try:
            answer = await self.cluster.client.head_object(
                stream.node, self.part, self.path.account, self.path.container, self.path.obj,
                headers,
            )  # fmt: skip
        except BackendError:
            return False
        if answer.status == 404 or (answer.ok and answer.headers.get("ETag", etag) != etag):
            log.error("object GET: %s quarantined %s mid-body; cutting the client response",
                      stream.node, self.path)  # fmt: skip
            return True
        return False

    def close(self) -> None:
        self.stream.close()


async def _first_stream(cluster: Cluster, part: int, path: SwiftPath, headers: dict[str, str],
                        nodes: Iterator[tuple[dict[str, Any], bool]],
                        primaries_count: int) -> BackendStream | None:  # fmt: skip
    """The first usable stream from ``nodes``; the last 404 if all said so; None on failures."""
    not_found: BackendStream | None = None
    failures = 0
    primaries_left = primaries_count
    for dev, is_primary in nodes:
        try:
            stream = await cluster.client.get_object(
                dev, part, path.account, path.container, path.obj, headers
            )
        except BackendError as exc:
            cluster.record(dev, str(exc))
            failures += 1
        else:
            if is_node_failure(stream.status):
                cluster.record(dev, f"status {stream.status}")
                stream.close()
                failures += 1
            elif stream.status == 404:
                cluster.record(dev, None)
                if not_found is not None:
                    not_found.close()
                not_found = stream
            else:
                cluster.record(dev, None)
                if not_found is not None:
                    not_found.close()
                return stream
        if is_primary:
            primaries_left -= 1
            if primaries_left == 0 and failures == 0:
                break
    return not_found


def _request_headers(ctx: RequestContext, policy_index: int) -> dict[str, str]:
    headers = backend_headers({"X-Backend-Storage-Policy-Index": str(policy_index)})
    if dlo.serves_manifest(ctx.request):  # a manifest's Range applies to its segments
        headers.update(dlo.IGNORE_RANGE_HEADERS)
    for name in _PASSED_HEADERS:
        value = ctx.request.headers.get(name)
        if value is not None:
            headers[name] = value
    return headers


async def _newest_first(ctx: RequestContext, ring: Ring, part: int, primaries: list[dict[str, Any]],
                        path: SwiftPath, headers: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """X-Newest: the primaries ordered by the timestamp of what they hold, newest first."""
    client = ctx.cluster.client

    async def stamp(dev: dict[str, Any]) -> str:
        try:
            answer = await client.head_object(dev, part, path.account, path.container, path.obj,
                                              {"X-Backend-Storage-Policy-Index":
                                               headers["X-Backend-Storage-Policy-Index"]})  # fmt: skip
        except BackendError:
            return ""
        return answer.headers.get("X-Backend-Timestamp", "") if answer.ok else ""

    stamps = await asyncio.gather(*(stamp(d) for d in primaries))
    return [
        d for _, d in sorted(zip(stamps, primaries, strict=True), key=lambda p: p[0], reverse=True)
    ]


async def open_object(ctx: RequestContext, path: SwiftPath, headers: dict[str, str] | None = None,
                      *, newest: bool = False) -> OpenObject | None:  # fmt: skip
    """The object's stream from the first replica that has it (None when its container is
    missing). The stream's status may be 404, 304, 412, 416 (conditions, ranges)."""
    cluster = ctx.cluster
    assert path.container is not None and path.obj is not None
    info = await container_info(cluster, ctx.cache, path.account, path.container)
    if info is None:
        return None
    ring = cluster.object_ring(info.policy_index)
    part, primaries = ring.get_nodes(path.account, path.container, path.obj)
    request_headers = headers if headers is not None else _request_headers(ctx, info.policy_index)
    request_headers["X-Backend-Storage-Policy-Index"] = str(info.policy_index)
    if newest:
        primaries = await _newest_first(ctx, ring, part, primaries, path, request_headers)
    nodes = cluster.read_nodes(ring, part, primaries)
    stream = await _first_stream(cluster, part, path, request_headers, nodes, len(primaries))
    if stream is None:
        raise SwiftError(503)
    return OpenObject(cluster, ring, part, path, request_headers, nodes, stream)


def _is_newest(ctx: RequestContext) -> bool:
    return ctx.request.headers.get("X-Newest", "").lower() in ("true", "1", "yes", "on", "t")


async def handle_object_get(ctx: RequestContext) -> web.StreamResponse:
    if ctx.request.method == "HEAD":
        return await _head(ctx)
    opened = await open_object(ctx, ctx.path, newest=_is_newest(ctx))
    if opened is None:
        raise SwiftError(404)
    stream = opened.stream
    manifest = dlo.manifest_of(stream.headers) if dlo.serves_manifest(ctx.request) else None
    if manifest is not None and stream.status in (200, 304, 412):  # conditions are the DLO's
        opened.close()
        return await dlo.respond(ctx, stream.headers, *manifest)
    headers = client_headers(stream.headers)
    length = int(stream.headers.get("Content-Length", "-1"))
    try:
        if stream.status not in (200, 206) or 0 <= length <= limits.SMALL_GET_BYTES_MAX:
            if stream.status == 404:
                raise SwiftError(404)
            try:
                body = await stream.read()
            except BackendError:
                body = None
            if body is not None:
                return web.Response(status=stream.status, body=body, headers=headers)
        response = web.StreamResponse(status=stream.status, headers=headers)
        if length >= 0:
            response.content_length = length
        await response.prepare(ctx.request)
        try:
            await opened.send_body(ctx.request, response, ctx.config)
        except BackendError as exc:
            log.error("object GET: no replica could finish the body: %s", exc)
            _cut(ctx.request)
            return response
        except (ConnectionError, asyncio.CancelledError):
            raise  # the client went away
        except Exception:  # a bug, after the status line went out: cut the body short
            log.exception("object GET: failed mid-body")
            _cut(ctx.request)
            return response
        await response.write_eof()
        return response
    finally:
        opened.close()


def _cut(request: web.Request) -> None:
    """End a response whose status is already sent: the client sees a short body, never a
    complete wrong one."""
    if request.transport is not None:
        request.transport.abort()


async def _head(ctx: RequestContext) -> web.StreamResponse:
    cluster, path = ctx.cluster, ctx.path
    assert path.container is not None and path.obj is not None
    info = await container_info(cluster, ctx.cache, path.account, path.container)
    if info is None:
        raise SwiftError(404)
    ring = cluster.object_ring(info.policy_index)
    part, primaries = ring.get_nodes(path.account, path.container, path.obj)
    headers = _request_headers(ctx, info.policy_index)
    if _is_newest(ctx):
        primaries = await _newest_first(ctx, ring, part, primaries, path, headers)

    async def send(dev: dict[str, Any], _index: int):
        return await cluster.client.head_object(
            dev, part, path.account, path.container, path.obj, headers
        )

    answer = await cluster.read_one(ring, part, primaries, send)
    if answer is None:
        raise SwiftError(503)
    if answer.status == 404:
        raise SwiftError(404)
    manifest = dlo.manifest_of(answer.headers) if dlo.serves_manifest(ctx.request) else None
    if manifest is not None and answer.status in (200, 304, 412):
        return await dlo.respond(ctx, answer.headers, *manifest)
    out = client_headers(answer.headers)
    out["Content-Length"] = answer.headers.get("Content-Length", "0")
    return web.Response(status=answer.status, headers=out)
