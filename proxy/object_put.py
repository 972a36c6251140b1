"""Object PUT: check the request, pick the nodes, stream to all of them, commit on a quorum.

Public: :func:`handle_object_put`, :func:`put_object`, :func:`request_body`.

Small bodies (a Content-Length up to ``SMALL_PUT_BYTES_MAX``, no ``If-None-Match``) are read
whole and sent to every node in one request each: one backend round trip, no ``100-continue``.
Bodies up to ``WHOLE_PUT_BYTES_MAX`` are sent the same way (:class:`WholeBody`), followed by
the digest footer described below, while the worker's ``whole_put_buffer_bytes_max`` budget
(:mod:`proxy.byte_budget`) has room for them, else streamed; a node that fails is replaced by a
handoff, which gets the same bytes. Larger or chunked bodies, and any with ``If-None-Match``, use
:class:`objectd.client.ObjectPutter`: the proxy connects to every primary with
``Expect: 100-continue``, a node that refuses or fails is replaced by the next handoff, and
once a majority is ready the body is streamed to all ready nodes at once, each chunk awaited by
every node (backpressure to the client). A node that fails mid-body is dropped; fewer than a
quorum left is a 503. A body with a ``Content-Length`` above ``SMALL_PUT_BYTES_MAX`` is hashed
here, once (MD5 and xxh3-64), and the digests follow the body to every node in a footer
(:mod:`objectd.digest_footer`): each node checks its bytes against the xxh3 and the client's
``ETag`` against the MD5, instead of computing an MD5 of its own. Small and chunked bodies are
hashed by the nodes. The nodes' quorum answer is the response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import mimetypes
from collections.abc import AsyncIterator, Mapping
from typing import Any

import xxhash
from aiohttp import HttpVersion11, StreamReader, web

from objectd.client import BackendError, BackendResponse, ObjectPutter
from objectd.digest_footer import DIGEST_FOOTER_BYTES, DIGEST_FOOTER_HEADER, encode_footer
from proxy import dlo, limits
from proxy.cluster import best_status, gather_quorum, is_node_failure, node_key, quorum_size
from proxy.container_info import backend_headers, container_info
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import check_metadata, delete_at, object_backend_headers
from proxy.routing import SwiftPath
from shoal.body_chunks import next_chunk
from shoal.timestamp import Timestamp, now

log = logging.getLogger("proxy")


@dataclasses.dataclass(frozen=True, slots=True)
class WholeBody:
    """A body above ``SMALL_PUT_BYTES_MAX`` read whole before any node is asked: the client's
    chunks as received, joined only once, together with the digest footer."""

    chunks: list[bytes]


Body = bytes | WholeBody | AsyncIterator[bytes]


def content_length_of(headers: Mapping[str, str]) -> int | None:
    """The announced length; None for chunked.

    Raises:
        SwiftError: 411 without either, 501 for another transfer encoding, 400 for a bad
        length, 413 above ``MAX_FILE_SIZE``.
    """
    encoding = headers.get("Transfer-Encoding", "").lower()
    if encoding:
        if encoding != "chunked":
            raise SwiftError(501, "Not Implemented")
        return None
    text = headers.get("Content-Length")
    if text is None:
        raise SwiftError(411, "Missing Content-Length header.")
    try:
        length = int(text)
    except ValueError:
        raise SwiftError(400, "Invalid Content-Length header.") from None
    if length < 0:
        raise SwiftError(400, "Invalid Content-Length header.")
    if length > limits.MAX_FILE_SIZE:
        raise SwiftError(413, "Your request is too large.")
    return length


async def send_continue(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` now that the request is known to be acceptable.

    The proxy's route defers aiohttp's automatic answer (see :mod:`proxy.app`), so a client
    whose upload would be refused (401, 403, 404, 412, 413) gets the refusal instead of a
    ``100 Continue`` and never sends the body, as with Swift. Idempotent.
    """
    if request.get("continue_sent") or request.version != HttpVersion11:
        return
    request["continue_sent"] = True
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the 100 is not part of the response (aiohttp's way)


async def request_body(
    request: web.Request, content_length: int | None, client_timeout_s: float,
    *, whole_ok: bool = True, whole_bytes_max: int = limits.WHOLE_PUT_BYTES_MAX,
) -> Body:  # fmt: skip
    """The client's body: bytes or a :class:`WholeBody` when announced, ``whole_ok`` and at
    most ``whole_bytes_max`` long, else a chunk iterator, which asks the client for the body
    only once the nodes are ready.

    Raises (also from the iterator):
        SwiftError: 499 if the client sent less than it announced, 408 if it stalled.
    """
    if content_length == 0:
        await send_continue(request)
        return b""  # aiohttp's empty stream refuses even readexactly(0)
    if whole_ok and content_length is not None and content_length <= whole_bytes_max:
        await send_continue(request)
        if content_length > limits.SMALL_PUT_BYTES_MAX:
            return WholeBody(await _read_chunks(request, content_length, client_timeout_s))
        try:
            async with asyncio.timeout(client_timeout_s):
                return await request.content.readexactly(content_length)
        except asyncio.IncompleteReadError:
            raise SwiftError(499) from None
        except TimeoutError:
            raise SwiftError(408, "Request Timeout") from None
    return _stream(request, content_length, client_timeout_s)


async def _next_client_chunk(content: StreamReader, client_timeout_s: float) -> bytes:
    """The client's next body chunk (``b""`` at its end); 408 after a pause longer than
    ``client_timeout_s`` (Swift's ``client_timeout``), 499 when the client goes away."""
    try:
        async with asyncio.timeout(client_timeout_s):
            return await next_chunk(content)
    except TimeoutError:
        raise SwiftError(408, "Request Timeout") from None
    except (ConnectionError, OSError):
        raise SwiftError(499) from None


async def _read_chunks(
    request: web.Request, content_length: int, client_timeout_s: float
) -> list[bytes]:
    """Exactly ``content_length`` body bytes, as the chunks that brought them; the client may
    pause up to ``client_timeout_s`` between chunks (Swift's ``client_timeout``), as when
    streaming."""
    chunks: list[bytes] = []
    received = 0
    content = request.content
    while received < content_length:
        chunk = await _next_client_chunk(content, client_timeout_s)
        if not chunk:
            raise SwiftError(499)
        chunks.append(chunk)
        received += len(chunk)
    return chunks


def _footered(chunks: list[bytes]) -> bytes:
    """The chunks joined, followed by the digest footer of their MD5 and xxh3-64. Consumes
    ``chunks`` (emptied once joined), so a PUT holds its body once, not twice."""
    md5, xxh3 = hashlib.md5(), xxhash.xxh3_64()
    for chunk in chunks:
        md5.update(chunk)
        xxh3.update(chunk)
    chunks.append(encode_footer(md5.hexdigest(), xxh3.hexdigest()))
    payload = b"".join(chunks)
    chunks.clear()
    return payload


async def _stream(
    request: web.Request, content_length: int | None, client_timeout_s: float
) -> AsyncIterator[bytes]:
    await send_continue(request)  # on the first chunk asked for: after the nodes said ready
    received = 0
    content = request.content
    while True:
        chunk = await _next_client_chunk(content, client_timeout_s)
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if content_length is not None and received < content_length:
        raise SwiftError(499)


def _content_type(headers: Mapping[str, str], obj: str) -> str:
    given = headers.get("Content-Type")
    if given and headers.get("X-Detect-Content-Type", "").lower() not in ("true", "1", "yes"):
        return given
    guessed, _ = mimetypes.guess_type(obj, strict=False)
    return guessed or given or "application/octet-stream"


async def handle_object_put(ctx: RequestContext) -> web.StreamResponse:
    headers = ctx.request.headers
    if "X-Copy-From" in headers:
        from proxy.object_copy import copy_object  # a feature on top of PUT, imported lazily

        return await copy_object(ctx)
    content_length = content_length_of(headers)
    assert ctx.path.obj is not None
    check_metadata(headers, "object")
    dlo.check_manifest_header(headers.get(dlo.MANIFEST_HEADER))
    metadata = object_backend_headers(headers)
    metadata["Content-Type"] = _content_type(headers, ctx.path.obj)
    at = delete_at(headers)
    metadata.pop("X-Delete-After", None)
    if at is not None:
        metadata["X-Delete-At"] = at
    for name in ("ETag", "If-None-Match"):
        if name in headers:
            metadata[name] = headers[name]
    if headers.get("If-None-Match", "*") != "*":
        raise SwiftError(400, "If-None-Match only supports *")
    path = ctx.path
    assert path.container is not None
    if await container_info(ctx.cluster, ctx.cache, path.account, path.container) is None:
        raise SwiftError(404)  # before 100 Continue: the client need not send the body
    # If-None-Match: * asks the nodes first (100-continue), so an existing object is refused
    # before the body is sent
    whole_ok = "If-None-Match" not in headers
    budget = ctx.cluster.whole_put_budget
    reserved = 0
    whole_bytes_max = limits.SMALL_PUT_BYTES_MAX
    if (
        whole_ok
        and content_length is not None
        and limits.SMALL_PUT_BYTES_MAX < content_length <= limits.WHOLE_PUT_BYTES_MAX
    ):
        if budget.take(content_length):
            reserved, whole_bytes_max = content_length, limits.WHOLE_PUT_BYTES_MAX
        else:
            log.debug("object PUT %s: streamed, the whole-body budget is spent", path)
    try:
        body = await request_body(
            ctx.request, content_length, ctx.config.client_timeout_s,
            whole_ok=whole_ok, whole_bytes_max=whole_bytes_max,
        )  # fmt: skip
        status, answer, timestamp = await put_object(ctx, ctx.path, metadata, body, content_length)
    finally:
        if reserved:
            budget.give_back(reserved)
    return web.Response(
        status=status,
        headers={
            "ETag": answer.headers.get("ETag", ""),
            "Last-Modified": timestamp.http_date(),
            "Content-Type": "text/html; charset=UTF-8",
        },
    )


async def put_object(
    ctx: RequestContext,
    path: SwiftPath,
    metadata: dict[str, str],
    body: Body,
    content_length: int | None,
) -> tuple[int, BackendResponse, Timestamp]:
    """Store an object; ``(status, a representative node answer, timestamp)``.

    Raises:
        SwiftError: 404 no container, 503 no quorum, the nodes' 4xx (412, 422, ...).
    """
    cluster = ctx.cluster
    assert path.container is not None and path.obj is not None
    info = await container_info(cluster, ctx.cache, path.account, path.container)
    if info is None:
        raise SwiftError(404)
    ring = cluster.object_ring(info.policy_index)
    part, primaries = ring.get_nodes(path.account, path.container, path.obj)
    cpart, cnodes = cluster.container_ring.get_nodes(path.account, path.container)
    timestamp = now()
    common = backend_headers(
        {
            **metadata,
            "X-Timestamp": timestamp.internal,
            "X-Backend-Storage-Policy-Index": str(info.policy_index),
        }
    )

    def node_headers(index: int) -> dict[str, str]:
        target = cnodes[index % len(cnodes)]
        return {
            **common,
            "X-Container-Host": f"{target['ip']}:{target['port']}",
            "X-Container-Device": target["device"],
            "X-Container-Partition": str(cpart),
        }

    def footer_headers(index: int) -> dict[str, str]:
        return {**node_headers(index), DIGEST_FOOTER_HEADER: "1"}

    headers_of = node_headers
    payload = body
    if isinstance(body, WholeBody):  # hashed here once; each node checks its copy with xxh3
        payload, headers_of = _footered(body.chunks), footer_headers
    if isinstance(payload, bytes):

        async def send(dev: dict[str, Any], index: int) -> BackendResponse:
            return await cluster.client.put_object(
                dev, part, path.account, path.container, path.obj, headers_of(index), payload,
                content_length=len(payload),
            )  # fmt: skip

        answers = await cluster.write_all(ring, part, primaries, send)
    else:
        answers = await _stream_put(
            ctx, ring, part, primaries, path, node_headers, payload, content_length
        )
    return _outcome(answers, len(primaries), timestamp)


def _outcome(
    answers: list[BackendResponse], replicas: int, timestamp: Timestamp
) -> tuple[int, BackendResponse, Timestamp]:
    status = best_status([a.status for a in answers], replicas)
    if status is None:
        log.error("object PUT: no quorum: %s", [(str(a.node), a.status) for a in answers])
        raise SwiftError(503)
    if status == 409:  # a newer write already won: Swift answers 202
        return 202, next(a for a in answers if a.status == 409), timestamp
    if status >= 300:
        raise SwiftError(status)
    return status, next(a for a in answers if a.status == status), timestamp


async def _connect(ctx, ring, part, dev, index, path, node_headers, content_length, handoffs):
    """A ready putter for replica ``index`` (the primary or a handoff), or the last refusal."""
    cluster = ctx.cluster
    last: BackendResponse | None = None
    while dev is not None:
        putter = cluster.client.object_putter(
            dev, part, path.account, path.container, path.obj, node_headers(index),
            content_length=content_length, queue_chunks_max=limits.PUTTER_QUEUE_CHUNKS_MAX,
        )  # fmt: skip
        try:
            final = await putter.connect()
        except BackendError as exc:
            cluster.record(dev, str(exc))
        except BaseException:
            putter.abort()
            cluster.record(dev, "no 100 Continue within post_quorum_timeout_s")
            raise
        else:
            if final is None:
                cluster.record(dev, None)
                return putter
            if not is_node_failure(final.status):
                return final  # 409 newer, 412 exists: a fact, not a failure
            cluster.record(dev, f"status {final.status}")
            last = final
        dev = next(handoffs, None)
    return last


async def _send_all(putters: list[ObjectPutter], chunk: bytes) -> list[ObjectPutter]:
    """Hand ``chunk`` to every putter; the ones that failed are dropped (and aborted).

    Sequential awaits, not a gather: a send only waits when that node's queue is full, and
    while it waits the other nodes keep draining theirs, so the total wait is the slowest
    node's either way, without three tasks per chunk.
    """
    alive = []
    for putter in putters:
        try:
            await putter.send(chunk)
        except BackendError as exc:
            log.warning("object PUT: dropping %s: %s", putter.node, exc)
            putter.abort()
        else:
            alive.append(putter)
    return alive


async def _finish(putter: ObjectPutter) -> BackendResponse | None:
    try:
        return await putter.finish()
    except BackendError as exc:
        log.warning("object PUT: %s failed at the end: %s", putter.node, exc)
        return None


async def _stream_put(ctx, ring, part, primaries, path, node_headers, body, content_length):
    cluster = ctx.cluster
    quorum = quorum_size(len(primaries))
    handoffs = (d for d in ring.get_more_nodes(part) if not cluster.errors.is_limited(node_key(d)))
    with_footer = content_length is not None  # then the nodes take the MD5 from our footer

    def footer_headers(index: int) -> dict[str, str]:
        return {**node_headers(index), DIGEST_FOOTER_HEADER: "1"}

    headers_of = footer_headers if with_footer else node_headers
    backend_length = content_length + DIGEST_FOOTER_BYTES if with_footer else None
    results = await gather_quorum(
        [
            _connect(ctx, ring, part, dev, i, path, headers_of, backend_length, handoffs)
            for i, dev in enumerate(primaries)
        ],
        quorum,
        lambda r: isinstance(r, ObjectPutter),
        ctx.config.post_quorum_timeout_s,
    )
    putters = [r for r in results if isinstance(r, ObjectPutter)]
    refusals = [r for r in results if isinstance(r, BackendResponse)]
    try:
        if any(r.status == 412 for r in refusals):
            raise SwiftError(412)
        if len(putters) < quorum:
            if len(refusals) >= quorum:
                return refusals
            log.error(
                "object PUT: %d of %d nodes ready, need %d", len(putters), len(primaries), quorum
            )
            raise SwiftError(503)
        sent = 0
        md5, xxh3 = hashlib.md5(), xxhash.xxh3_64()
        async for chunk in body:
            sent += len(chunk)
            if sent > limits.MAX_FILE_SIZE:
                raise SwiftError(413, "Your request is too large.")
            if with_footer:
                md5.update(chunk)
                xxh3.update(chunk)
            putters = await _send_all(putters, chunk)
            if len(putters) < quorum:
                raise SwiftError(503)
        if with_footer:  # the whole body arrived (a short one raised 499 above)
            putters = await _send_all(putters, encode_footer(md5.hexdigest(), xxh3.hexdigest()))
            if len(putters) < quorum:
                raise SwiftError(503)
        finals = await asyncio.gather(*(_finish(p) for p in putters))
    except BaseException:
        for putter in putters:
            putter.abort()
        raise
    return [a for a in finals if a is not None]
