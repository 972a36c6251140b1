"""Container requests: PUT (create, storage policy), POST (metadata, ACLs), DELETE, HEAD, GET.

Public: :func:`handle_container`.

A container PUT or DELETE names, for each container replica, the account server it reports to
(``X-Account-Host/Device/Partition``), so account listings and counts follow (Swift's shape).
Only account owners may set ACLs; the ACL headers of other users are dropped, as Swift does.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from proxy import limits
from proxy.account import ensure_account
from proxy.cluster import best_status
from proxy.container_info import backend_headers, container_info, invalidate
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import check_metadata, client_headers, metadata_headers
from proxy.listing_format import check_listing_query, choose_format, render_listing
from shoal.timestamp import now

_ACL_HEADERS = ("x-container-read", "x-container-write", "x-remove-container-read",
                "x-remove-container-write")  # fmt: skip


async def handle_container(ctx: RequestContext) -> web.StreamResponse:
    method = ctx.request.method
    if method in ("GET", "HEAD"):
        return await _get_or_head(ctx)
    if method == "PUT":
        return await _put(ctx)
    if method == "POST":
        return await _post(ctx)
    if method == "DELETE":
        return await _delete(ctx)
    raise SwiftError(405, headers={"Allow": "HEAD, GET, PUT, POST, DELETE"})


def _metadata(ctx: RequestContext) -> dict[str, str]:
    check_metadata(ctx.request.headers, "container")
    meta = metadata_headers(ctx.request.headers, "container")
    if not ctx.owner:
        meta = {k: v for k, v in meta.items() if k.lower() not in _ACL_HEADERS}
    return meta


async def _write(ctx: RequestContext, method: str, extra: dict[str, str]) -> int:
    cluster, path = ctx.cluster, ctx.path
    assert path.container is not None
    part, nodes = cluster.container_ring.get_nodes(path.account, path.container)
    headers = backend_headers(extra)
    if method in ("PUT", "DELETE"):
        apart, anodes = cluster.account_ring.get_nodes(path.account)
    else:
        apart, anodes = 0, []

    async def send(dev: dict[str, Any], index: int):
        per_node = headers
        if anodes:
            target = anodes[index % len(anodes)]
            per_node = {
                **headers,
                "X-Account-Host": f"{target['ip']}:{target['port']}",
                "X-Account-Device": target["device"],
                "X-Account-Partition": str(apart),
            }
        return await cluster.client.request(
            method, dev, part, path.account, path.container, headers=per_node
        )

    answers = await cluster.write_all(cluster.container_ring, part, nodes, send)
    invalidate(ctx.cache, path.account, path.container)
    invalidate(ctx.cache, path.account)
    status = best_status([a.status for a in answers], len(nodes))
    if status is None:
        raise SwiftError(503)
    return status


async def _put(ctx: RequestContext) -> web.StreamResponse:
    path, cluster = ctx.path, ctx.cluster
    assert path.container is not None
    meta = _metadata(ctx)
    requested = ctx.request.headers.get("X-Storage-Policy")
    if requested is not None:
        policy = cluster.policy_by_name.get(requested.strip().lower())
        if policy is None:
            raise SwiftError(400, f"Invalid X-Storage-Policy '{requested}'")
        policy_index = policy.index
    else:
        existing = await container_info(cluster, ctx.cache, path.account, path.container)
        policy_index = existing.policy_index if existing else cluster.default_policy.index
    await ensure_account(ctx, path.account)
    extra = {
        "X-Timestamp": now().normal,
        "X-Backend-Storage-Policy-Index": str(policy_index),
        **meta,
    }
    status = await _write(ctx, "PUT", extra)
    if status == 409:
        raise SwiftError(409, "There was a conflict when trying to complete your request.")
    if status == 404:  # the account vanished between the check and the write
        raise SwiftError(404)
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=status, headers={"Content-Type": "text/html; charset=UTF-8"})


async def _post(ctx: RequestContext) -> web.StreamResponse:
    meta = _metadata(ctx)
    status = await _write(ctx, "POST", {"X-Timestamp": now().normal, **meta})
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=204, headers={"Content-Type": "text/html; charset=UTF-8"})


async def _delete(ctx: RequestContext) -> web.StreamResponse:
    status = await _write(ctx, "DELETE", {"X-Timestamp": now().normal})
    if status == 409:
        raise SwiftError(409, "There was a conflict when trying to complete your request.")
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=204, headers={"Content-Type": "text/html; charset=UTF-8"})


def _response_headers(ctx: RequestContext, backend: Any):
    headers = client_headers(backend)
    index = backend.get("X-Backend-Storage-Policy-Index")
    if index is not None:
        policy = ctx.cluster.policy_by_index.get(int(index))
        if policy is not None:
            headers["X-Storage-Policy"] = policy.name
    if not ctx.owner:  # Swift shows ACLs and sync keys to owners only
        for name in ("X-Container-Read", "X-Container-Write", "X-Container-Sync-Key"):
            headers.popall(name, None)
    return headers


async def _get_or_head(ctx: RequestContext) -> web.StreamResponse:
    cluster, path = ctx.cluster, ctx.path
    assert path.container is not None
    head = ctx.request.method == "HEAD"
    fmt = choose_format(ctx.request)
    query: dict[str, str] = {}
    if not head:
        params = check_listing_query(ctx.request, limits.CONTAINER_LISTING_LIMIT)
        query = {k: str(v) for k, v in params.items() if k != "reverse"}
        query["format"] = "json"
        if "path" in ctx.request.query:  # Swift's pseudo-directory listing (objectd/listing.py)
            query["path"] = ctx.request.query["path"]
        if params.get("reverse"):
            query["reverse"] = "true"
    part, nodes = cluster.container_ring.get_nodes(path.account, path.container)

    async def send(dev: dict[str, Any], _index: int):
        return await cluster.client.request(
            ctx.request.method, dev, part, path.account, path.container,
            headers=backend_headers(), query=query,
        )  # fmt: skip

    response = await cluster.read_one(cluster.container_ring, part, nodes, send)
    if response is None:
        raise SwiftError(503)
    if not response.ok:
        raise SwiftError(response.status)
    headers = _response_headers(ctx, response.headers)
    if head:
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = "0"
        return web.Response(status=204, headers=headers)
    if fmt == "json":
        status, body, content_type = 200, response.body, "application/json; charset=utf-8"
    else:
        items = json.loads(response.body or b"[]")
        status, body, content_type = render_listing(items, fmt, "container", path.container)
    headers["Content-Type"] = content_type
    return web.Response(status=status, body=body, headers=headers)
