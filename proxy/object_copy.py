"""Server-side copy: ``COPY`` with ``Destination`` and ``PUT`` with ``X-Copy-From``.

Public: :func:`copy_object` (PUT + X-Copy-From), :func:`handle_copy` (COPY).

The source is read through the normal GET path (failover included) and streamed into the normal
PUT path, so a copy is as durable as an upload and never held in memory whole. The user needs
read access to the source and write access to the destination. Unless ``X-Fresh-Metadata:
true``, the source's metadata is kept and the request's headers are laid over it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, unquote

from aiohttp import web

from proxy import dlo, limits
from proxy.container_info import backend_headers
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import check_metadata, delete_at, object_backend_headers
from proxy.object_get import open_object
from proxy.object_put import put_object
from proxy.routing import SwiftPath

_TRUE = ("true", "1", "yes", "on", "t", "y")

log = logging.getLogger("proxy")


def _split(value: str, header: str) -> tuple[str, str]:
    text = unquote(value).lstrip("/")
    container, _, obj = text.partition("/")
    if not container or not obj:
        raise SwiftError(412, f"{header} header must be of the form <container name>/<object name>")
    return container, obj


async def copy_object(ctx: RequestContext) -> web.StreamResponse:
    headers = ctx.request.headers
    if int(headers.get("Content-Length", "0") or "0") != 0:
        raise SwiftError(400, "Copy requests require a zero byte body")
    container, obj = _split(headers["X-Copy-From"], "X-Copy-From")
    account = unquote(headers.get("X-Copy-From-Account", ctx.path.account))
    source = SwiftPath(ctx.path.version, account, container, obj)
    await ctx.authorize("GET", source)
    return await _copy(ctx, source, ctx.path)


async def handle_copy(ctx: RequestContext) -> web.StreamResponse:
    headers = ctx.request.headers
    if "Destination" not in headers:
        raise SwiftError(412, "Destination header required")
    container, obj = _split(headers["Destination"], "Destination")
    account = unquote(headers.get("Destination-Account", ctx.path.account))
    target = SwiftPath(ctx.path.version, account, container, obj)
    await ctx.authorize("PUT", target)
    return await _copy(ctx, ctx.path, target)


async def _copy(ctx: RequestContext, source: SwiftPath, target: SwiftPath) -> web.StreamResponse:
    request_headers = ctx.request.headers
    check_metadata(request_headers, "object")
    dlo.check_manifest_header(request_headers.get(dlo.MANIFEST_HEADER))
    opened = await open_object(ctx, source, backend_headers())
    if opened is None:
        raise SwiftError(404)
    try:
        stream = opened.stream
        if stream.status != 200:
            raise SwiftError(stream.status)
        length = int(stream.headers.get("Content-Length", "0"))
        manifest = dlo.manifest_of(stream.headers) if dlo.serves_manifest(ctx.request) else None
        large = None
        if manifest is not None:  # a DLO: copy its content into an ordinary object, as Swift
            large = await dlo.open_large_object(ctx, source.account, *manifest)
            length = large.size
        if length > limits.MAX_FILE_SIZE:
            raise SwiftError(413, "Your request is too large.")
        metadata: dict[str, str] = {}
        if request_headers.get("X-Fresh-Metadata", "").lower() not in _TRUE:
            metadata.update(object_backend_headers(stream.headers))
            metadata["Content-Type"] = stream.headers.get(
                "Content-Type", "application/octet-stream"
            )
            if large is not None:
                metadata.pop(dlo.MANIFEST_HEADER, None)
        elif large is None and (manifest_value := stream.headers.get(dlo.MANIFEST_HEADER)):
            metadata[dlo.MANIFEST_HEADER] = manifest_value  # a manifest copied stays one
        metadata.update(object_backend_headers(request_headers))
        if "Content-Type" in request_headers:
            metadata["Content-Type"] = request_headers["Content-Type"]
        metadata.setdefault("Content-Type", "application/octet-stream")
        at = delete_at(request_headers)
        if at is not None:
            metadata["X-Delete-At"] = at
        if large is not None:
            body = await dlo.open_body(ctx, large)  # a bad first segment: 409 before the PUT
        elif length <= limits.SMALL_PUT_BYTES_MAX:
            body = await stream.read()
        else:
            body = opened.chunks()
        try:
            status, answer, timestamp = await put_object(ctx, target, metadata, body, length)
        except dlo.SegmentError as exc:  # a later segment: the PUT was aborted, nothing stored
            log.error("COPY from the DLO %s failed: %s", source, exc)
            raise SwiftError(exc.status) from None
        finally:
            if not isinstance(body, bytes):
                await body.aclose()
        return web.Response(
            status=status,
            headers={
                "ETag": answer.headers.get("ETag", ""),
                "Last-Modified": timestamp.http_date(),
                "X-Copied-From": quote(f"{source.container}/{source.obj}"),
                "X-Copied-From-Account": quote(source.account),
                "X-Copied-From-Last-Modified": stream.headers.get("Last-Modified", ""),
                "Content-Type": "text/html; charset=UTF-8",
            },
        )
    finally:
        opened.close()
