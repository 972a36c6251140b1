"""Account requests: HEAD/GET (counts, listing), POST (metadata), PUT/DELETE (management).

Public: :func:`handle_account`, :func:`ensure_account`.

With ``account_autocreate`` (Swift's default with keystoneauth and ours), an account that does
not exist yet reads as an empty one, and is created by its first write (container PUT or account
POST), so a new Keystone project can use Swift at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from proxy import limits
from proxy.cluster import best_status
from proxy.container_info import account_exists, backend_headers, invalidate
from proxy.context import RequestContext
from proxy.errors import SwiftError
from proxy.headers import check_metadata, client_headers, metadata_headers
from proxy.listing_format import check_listing_query, choose_format, render_listing
from shoal.timestamp import now

_POLICY_HEADER = re.compile(r"^x-backend-storage-policy-(\d+)-(.*)$", re.IGNORECASE)


async def handle_account(ctx: RequestContext) -> web.StreamResponse:
    method = ctx.request.method
    if method in ("GET", "HEAD"):
        return await _get_or_head(ctx)
    if method == "POST":
        return await _post(ctx)
    if method in ("PUT", "DELETE"):
        if not ctx.config.allow_account_management:
            raise SwiftError(405, headers={"Allow": "HEAD, GET, POST"})
        return await _write(ctx, method)
    raise SwiftError(405, headers={"Allow": "HEAD, GET, POST"})


def _response_headers(ctx: RequestContext, backend: Any) -> CIMultiDict[str]:
    headers = client_headers(backend)
    for name, value in backend.items():
        match = _POLICY_HEADER.match(name)
        if match:
            policy = ctx.cluster.policy_by_index.get(int(match.group(1)))
            if policy is not None:
                suffix = "-".join(w.capitalize() for w in match.group(2).split("-"))
                headers[f"X-Account-Storage-Policy-{policy.name}-{suffix}"] = value
    return headers


def _empty_account_headers() -> CIMultiDict[str]:
    stamp = now().normal
    return CIMultiDict(
        {
            "X-Account-Container-Count": "0",
            "X-Account-Object-Count": "0",
            "X-Account-Bytes-Used": "0",
            "X-Timestamp": stamp,
            "X-Put-Timestamp": stamp,
        }
    )


async def _get_or_head(ctx: RequestContext) -> web.StreamResponse:
    cluster, account = ctx.cluster, ctx.path.account
    head = ctx.request.method == "HEAD"
    fmt = choose_format(ctx.request)
    query: dict[str, Any] = {}
    if not head:
        query = {
            k: str(v)
            for k, v in check_listing_query(ctx.request, limits.ACCOUNT_LISTING_LIMIT).items()
        }
        query["format"] = "json"
        if query.pop("reverse", None):
            query["reverse"] = "true"
    part, nodes = cluster.account_ring.get_nodes(account)

    async def send(dev: dict[str, Any], _index: int):
        return await cluster.client.request(
            ctx.request.method, dev, part, account, headers=backend_headers(), query=query
        )

    response = await cluster.read_one(cluster.account_ring, part, nodes, send)
    if response is None:
        raise SwiftError(503)
    if response.status == 404:
        if not ctx.config.account_autocreate:
            raise SwiftError(404)
        headers, items, body = _empty_account_headers(), [], b"[]"
    elif not response.ok:
        raise SwiftError(response.status)
    else:
        headers = _response_headers(ctx, response.headers)
        body = response.body
        items = [] if head else json.loads(body or b"[]")
    if head:
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = "0"
        return web.Response(status=204, headers=headers)
    status, text, content_type = (
        (200, body, "application/json; charset=utf-8")
        if fmt == "json"
        else render_listing(items, fmt, "account", account)
    )
    headers["Content-Type"] = content_type
    return web.Response(status=status, body=text, headers=headers)


async def ensure_account(ctx: RequestContext, account: str) -> None:
    """Create ``account`` if it does not exist and autocreate is on.

    Raises:
        SwiftError: 404 without autocreate, 503 when the account servers do not answer.
    """
    exists = await account_exists(ctx.cluster, ctx.cache, account)
    if exists:
        return
    if exists is None:
        raise SwiftError(503)
    if not ctx.config.account_autocreate:
        raise SwiftError(404)
    await _send_to_accounts(ctx, "PUT", {"X-Timestamp": now().normal})


async def _send_to_accounts(ctx: RequestContext, method: str, extra: dict[str, str]) -> int:
    cluster, account = ctx.cluster, ctx.path.account
    part, nodes = cluster.account_ring.get_nodes(account)
    headers = backend_headers(extra)

    async def send(dev: dict[str, Any], _index: int):
        return await cluster.client.request(method, dev, part, account, headers=headers)

    answers = await cluster.write_all(cluster.account_ring, part, nodes, send)
    invalidate(ctx.cache, account)
    status = best_status([a.status for a in answers], len(nodes))
    if status is None:
        raise SwiftError(503)
    return status


async def _post(ctx: RequestContext) -> web.StreamResponse:
    check_metadata(ctx.request.headers, "account")
    meta = metadata_headers(ctx.request.headers, "account")
    status = await _send_to_accounts(ctx, "POST", {"X-Timestamp": now().normal, **meta})
    if status == 404 and ctx.config.account_autocreate:
        await ensure_account(ctx, ctx.path.account)
        status = await _send_to_accounts(ctx, "POST", {"X-Timestamp": now().normal, **meta})
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=204, headers={"Content-Type": "text/html; charset=UTF-8"})


async def _write(ctx: RequestContext, method: str) -> web.StreamResponse:
    check_metadata(ctx.request.headers, "account")
    meta = metadata_headers(ctx.request.headers, "account") if method == "PUT" else {}
    status = await _send_to_accounts(ctx, method, {"X-Timestamp": now().normal, **meta})
    if status >= 300:
        raise SwiftError(status)
    return web.Response(status=status, headers={"Content-Type": "text/html; charset=UTF-8"})
