"""Dynamic large objects (Swift's DLO): one object made of the objects under a prefix.

Public: :func:`manifest_of`, :func:`check_manifest_header`, :func:`serves_manifest`,
:func:`respond`, :func:`open_large_object`, :func:`open_body`, :func:`chunks`, :class:`LargeObject`,
:class:`SegmentError`, :data:`MANIFEST_HEADER`, :data:`IGNORE_RANGE_HEADERS`,
:data:`MAX_GET_TIME_S`, :data:`SEGMENTS_MAX`.

A manifest is an ordinary object (usually empty) stored with ``X-Object-Manifest:
<container>/<prefix>``. A GET or HEAD of it (without ``?multipart-manifest=get``) answers, as
Swift's ``dlo`` middleware does:

- the body: the objects of ``<container>`` whose names start with ``<prefix>``, concatenated in
  listing order (listed when the request arrives, so segments uploaded since show up);
- ``Content-Length``: the sum of their sizes; ``ETag``: the MD5 of their ETags concatenated, in
  quotes (the form clients such as python-swiftclient and rclone check);
- the manifest's own ``Content-Type``, metadata and ``Last-Modified``;
- conditional requests evaluated against that ETag and ``Last-Modified``; a single ``Range``
  answered 206 from the segments it covers (several ranges: the whole object, 200).

Reading the segments needs read access to their container (listing included), checked as for
any request of the same user; no such container is a 404, as in Swift. The first segment is
opened before the status line goes out, so a missing or changed first segment is a 409 (503 if no
node answers). A later segment that is missing, or shorter or longer than the listing said, cuts
the response short (the client sees a truncated body, never a wrong complete one), as does
serving for longer than ``MAX_GET_TIME_S``. The whole listing is read before the first byte (so
Content-Length and ETag are exact), hence bounded: more than ``SEGMENTS_MAX`` segments is a 409.
The proxy asks objectd to ignore ``Range`` for objects that carry ``X-Object-Manifest``
(``IGNORE_RANGE_HEADERS``), so a ranged GET of a manifest reaches this module instead of failing
with 416 on the empty manifest. Unlike Swift, segments are not rate-limited after the tenth, and
a bad ``X-Object-Manifest`` is refused on POST and COPY too, not only on PUT.

COPY of a manifest (:mod:`proxy.object_copy`) copies the concatenated content into an ordinary
object, as Swift does; with ``?multipart-manifest=get`` it copies the manifest itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from objectd.client import BackendError
from objectd.conditions import conditional_status, range_applies
from objectd.ranges import content_range, parse_range, resolve_ranges
from proxy import limits
from proxy.container_info import backend_headers
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import client_headers
from proxy.routing import SwiftPath
from shoal.timestamp import Timestamp

log = logging.getLogger("proxy")

MANIFEST_HEADER = "X-Object-Manifest"
MAX_GET_TIME_S = 86_400  # Swift's dlo max_get_time: a GET serving segments longer than this ends
SEGMENTS_MAX = 10 * limits.CONTAINER_LISTING_LIMIT  # listed whole before the first byte: bounded
IGNORE_RANGE_HEADERS = {"X-Backend-Ignore-Range-If-Metadata-Present": MANIFEST_HEADER}
_BAD_MANIFEST = "X-Object-Manifest must be in the format container/prefix"


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    name: str
    size: int
    etag: str


def check_manifest_header(value: str | None) -> None:
    """Refuse (400, Swift's message) a PUT whose ``X-Object-Manifest`` is not
    ``<container>/<prefix>``."""
    if value is None:
        return
    container, _, prefix = value.partition("/")  # Swift checks the value as sent
    if not container or not prefix or "?" in value or "&" in value or prefix.startswith("/"):
        raise SwiftError(400, _BAD_MANIFEST)


def manifest_of(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """``(container, prefix)`` of a manifest's stored header, None for an ordinary object."""
    value = headers.get(MANIFEST_HEADER)
    if not value:
        return None
    container, slash, prefix = unquote(value).partition("/")
    if not slash or not container:
        return None  # stored before validation existed: serve the object as it is
    return container, prefix


def serves_manifest(request: web.Request) -> bool:
    """Whether a GET/HEAD of a manifest should answer its segments (not the manifest itself)."""
    return request.query.get("multipart-manifest") != "get"


class SegmentError(Exception):
    """A segment could not be read as listed. ``status``: 409 when it is missing or not what
    the listing said (Swift's answer when that happens to the first segment), 503 when no node
    could serve it."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class LargeObject:
    """A manifest's segments as listed now, with the size and ETag they make together."""

    account: str
    container: str
    segments: list[Segment]

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)

    @property
    def etag(self) -> str:
        """Unquoted: the MD5 of the segments' ETags, concatenated in order."""
        return hashlib.md5("".join(s.etag for s in self.segments).encode()).hexdigest()


async def open_large_object(
    ctx: RequestContext, account: str, container: str, prefix: str
) -> LargeObject:
    """List the segments of ``<account>/<container>/<prefix>``, after checking the user may
    read them (the account is the manifest's).

    Raises:
        SwiftError: 401/403 without read access to the segments' container, 404 when that
            container does not exist, 409 for more than ``SEGMENTS_MAX`` segments, 503 when no
            container server answers the listing.
    """
    await ctx.authorize("GET", SwiftPath(ctx.path.version, account, container, None))
    return LargeObject(account, container, await _list_segments(ctx, account, container, prefix))


async def respond(
    ctx: RequestContext, manifest_headers: Mapping[str, str], container: str, prefix: str
) -> web.StreamResponse:
    """The answer to a GET or HEAD of the manifest whose stored headers are ``manifest_headers``.

    Raises:
        SwiftError: as :func:`open_large_object` and :func:`open_body`.
    """
    request = ctx.request
    large = await open_large_object(ctx, ctx.path.account, container, prefix)
    total, etag = large.size, large.etag
    headers = client_headers(manifest_headers)
    headers.popall("Content-Length", None)
    headers.popall("Content-Range", None)
    headers["ETag"] = f'"{etag}"'
    last_modified_s = _last_modified_s(manifest_headers)
    status = conditional_status(request.headers, etag, last_modified_s)
    if status is not None:
        return web.Response(status=status, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(total)
        return web.Response(status=200, headers=headers)
    start, stop, status = 0, total, 200
    specs = parse_range(request.headers.get("Range"))
    one_range = specs is not None and len(specs) == 1  # several: all of it, as Swift's DLO
    if one_range and range_applies(request.headers, etag, last_modified_s):
        ranges = resolve_ranges(specs, total)
        if ranges == []:
            return web.Response(
                status=416,
                headers={"Content-Range": f"bytes */{total}", "Accept-Ranges": "bytes"},
                text="Requested Range Not Satisfiable",
            )
        if ranges is not None:
            (start, stop), status = ranges[0], 206
            headers["Content-Range"] = content_range(start, stop, total)
    body = await open_body(ctx, large, start, stop)
    async with contextlib.aclosing(body):
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        try:
            async for chunk in body:
                await response.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            raise  # the client went away
        except Exception as exc:  # the status line is out: a short body says it failed
            if isinstance(exc, SegmentError):
                log.error("DLO GET %s: %s; the response is cut short", ctx.path, exc)
            else:
                log.exception("DLO GET %s failed mid-body", ctx.path)
            if request.transport is not None:
                request.transport.abort()
            return response
    await response.write_eof()
    return response


async def open_body(
    ctx: RequestContext, large: LargeObject, start: int = 0, stop: int | None = None
) -> AsyncGenerator[bytes, None]:
    """:func:`chunks`, once its first segment has answered: a missing or wrong first segment
    is then still an error status (409, or 503 when no node answered), not a cut body.

    Raises:
        SwiftError: 409 or 503 for the first segment.
    """
    body = chunks(ctx, large, start, stop)
    try:
        first = await anext(body, b"")
    except SegmentError as exc:
        await body.aclose()
        log.error("DLO %s: %s", ctx.path, exc)
        raise SwiftError(exc.status) from None
    except BaseException:
        await body.aclose()
        raise
    return _prepend(first, body)


async def _prepend(first: bytes, body: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(body):
        if first:
            yield first
        async for chunk in body:
            yield chunk


async def chunks(
    ctx: RequestContext, large: LargeObject, start: int = 0, stop: int | None = None
) -> AsyncGenerator[bytes, None]:
    """Bytes ``[start, stop)`` of the concatenation, segment after segment.

    Raises:
        SegmentError: a segment is missing, is not what the listing said, no node could serve
            it, or the whole read took longer than ``MAX_GET_TIME_S``.
    """
    from proxy.object_get import open_object  # object_get imports this module

    stop = large.size if stop is None else stop
    deadline = time.monotonic() + MAX_GET_TIME_S
    offset = 0
    for segment in large.segments:
        first, end = offset, offset + segment.size
        offset = end
        low, high = max(start, first), min(stop, end)
        if low >= high:
            continue
        if time.monotonic() > deadline:
            raise SegmentError(f"longer than {MAX_GET_TIME_S} s", 503)
        headers = backend_headers()
        ranged = (low, high) != (first, end)
        if ranged:
            headers["Range"] = f"bytes={low - first}-{high - first - 1}"
        path = SwiftPath(ctx.path.version, large.account, large.container, segment.name)
        try:
            opened = await open_object(ctx, path, headers)
        except SwiftError as exc:
            raise SegmentError(f"segment {segment.name}: {exc.status}", 503) from None
        if opened is None or opened.stream.status != (206 if ranged else 200):
            if opened is not None:
                opened.close()
            raise SegmentError(f"segment {segment.name} is gone or changed")
        sent = 0
        try:
            async with contextlib.aclosing(opened.chunks()) as pieces:
                async for chunk in pieces:
                    sent += len(chunk)
                    if sent > high - low:
                        break
                    yield chunk
        except BackendError as exc:
            raise SegmentError(f"segment {segment.name}: {exc}", 503) from None
        finally:
            opened.close()
        if sent != high - low:
            raise SegmentError(
                f"segment {segment.name} has {sent} bytes where the listing said {high - low}"
            )


async def _list_segments(
    ctx: RequestContext, account: str, container: str, prefix: str
) -> list[Segment]:
    """Every object of ``container`` under ``prefix``, in name order (all listing pages)."""
    cluster = ctx.cluster
    part, nodes = cluster.container_ring.get_nodes(account, container)
    segments: list[Segment] = []
    marker = ""
    while True:
        query = {"format": "json", "prefix": prefix, "marker": marker,
                 "limit": str(limits.CONTAINER_LISTING_LIMIT)}  # fmt: skip

        async def send(dev: dict[str, Any], _index: int, query: dict[str, str] = query):
            return await cluster.client.request(
                "GET", dev, part, account, container, headers=backend_headers(), query=query
            )

        answer = await cluster.read_one(cluster.container_ring, part, nodes, send)
        if answer is None or answer.status >= 500:
            raise SwiftError(503)
        if not answer.ok:
            raise SwiftError(answer.status)  # 404: no segment container, as Swift answers
        try:
            page = json.loads(answer.body or b"[]")
            names = [item["name"] for item in page]
            segments.extend(
                Segment(item["name"], int(item["bytes"]), str(item["hash"])) for item in page
            )
        except (ValueError, KeyError, TypeError):
            log.error("DLO %s: a malformed listing of %s/%s", ctx.path, account, container)
            raise SwiftError(503) from None
        if len(segments) > SEGMENTS_MAX:
            raise SwiftError(409, f"A dynamic large object has at most {SEGMENTS_MAX} segments")
        if len(page) < limits.CONTAINER_LISTING_LIMIT:
            return segments
        if names[-1] <= marker:  # a listing that does not advance would loop forever
            raise SwiftError(503)
        marker = names[-1]


def _last_modified_s(headers: Mapping[str, str]) -> int:
    stamp = headers.get("X-Backend-Timestamp") or headers.get("X-Timestamp") or "0"
    try:
        ticks = Timestamp.parse(stamp).ticks
    except ValueError:
        return 0
    return -(-ticks // 100_000)
