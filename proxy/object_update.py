"""Object POST (replace metadata) and DELETE (tombstone), on every primary, quorum answer.

Public: :func:`handle_object_post`, :func:`handle_object_delete`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy import dlo
from proxy.cluster import best_status
from proxy.container_info import backend_headers, container_info
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import check_metadata, delete_at, object_backend_headers
from shoal.timestamp import now


async def _send_all(ctx: RequestContext, method: str, extra: dict[str, str]) -> int:
    cluster, path = ctx.cluster, ctx.path
    assert path.container is not None and path.obj is not None
    info = await container_info(cluster, ctx.cache, path.account, path.container)
    if info is None:
        raise SwiftError(404)
    ring = cluster.object_ring(info.policy_index)
    part, primaries = ring.get_nodes(path.account, path.container, path.obj)
    cpart, cnodes = cluster.container_ring.get_nodes(path.account, path.container)
    headers = backend_headers(
        {**extra, "X-Timestamp": now().internal,
         "X-Backend-Storage-Policy-Index": str(info.policy_index)}
    )  # fmt: skip

    async def send(dev: dict[str, Any], index: int):
        per_node = headers
        if method == "DELETE":
            target = cnodes[index % len(cnodes)]
            per_node = {
                **headers,
                "X-Container-Host": f"{target['ip']}:{target['port']}",
                "X-Container-Device": target["device"],
                "X-Container-Partition": str(cpart),
            }
        return await cluster.client.request(
            method, dev, part, path.account, path.container, path.obj, headers=per_node
        )

    answers = await cluster.write_all(ring, part, primaries, send)
    status = best_status([a.status for a in answers], len(primaries))
    if status is None:
        raise SwiftError(503)
    return status


async def handle_object_post(ctx: RequestContext) -> web.StreamResponse:
    headers = ctx.request.headers
    check_metadata(headers, "object")
    dlo.check_manifest_header(headers.get(dlo.MANIFEST_HEADER))
    extra = object_backend_headers(headers)
    at = delete_at(headers)
    if at is not None:
        extra["X-Delete-At"] = at
    if "Content-Type" in headers:
        extra["Content-Type"] = headers["Content-Type"]
    status = await _send_all(ctx, "POST", extra)
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=202, headers={"Content-Type": "text/html; charset=UTF-8"},
                        text="<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>")  # fmt: skip


async def handle_object_delete(ctx: RequestContext) -> web.StreamResponse:
    status = await _send_all(ctx, "DELETE", {})
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=204, headers={"Content-Type": "text/html; charset=UTF-8"})
