"""The proxy's aiohttp application: one handler that routes, authenticates, authorizes and
dispatches to the account, container and object controllers.

Public: :func:`build_app`, :data:`STATE_KEY`, :class:`ProxyState`.

Every response, errors included, carries ``X-Trans-Id`` and ``X-Openstack-Request-Id`` (set in
``on_response_prepare``, so streamed responses get them too), and every log line written while
serving the request carries the same id (:data:`shoal.log.trans_id`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import web

from proxy.account import handle_account
from proxy.acl import Decision, deny
from proxy.cluster import Cluster
from proxy.config import ProxyConfig
from proxy.container import handle_container
from proxy.container_info import Generations, InfoCache, container_info
from proxy.context import RequestContext
from proxy.errors import SwiftError, error_response, unexpected_response
from proxy.info import info_document
from proxy.object_copy import handle_copy
from proxy.object_get import handle_object_get
from proxy.object_put import handle_object_put, send_continue
from proxy.object_update import handle_object_delete, handle_object_post
from proxy.routing import SwiftPath, check_names, parse_path
from proxy.tempauth import TempAuth, acl_for
from shoal.log import new_trans_id, trans_id

log = logging.getLogger("proxy")

AUTH_PATHS = frozenset(("/auth/v1.0", "/auth/v1", "/v1.0", "/auth/v1.0/", "/v1.0/"))
TRANS_ID_EXTRA_CHARS_MAX = 32  # Swift's limit on X-Trans-Id-Extra


@dataclasses.dataclass
class ProxyState:
    config: ProxyConfig
    auth: Any  # TempAuth or KeystoneAuth: authenticate(request), authorize(...), login(request)
    cluster: Cluster | None = None
    cache: InfoCache = dataclasses.field(default_factory=InfoCache)


STATE_KEY: web.AppKey[ProxyState] = web.AppKey("proxy_state", ProxyState)

_OBJECT_HANDLERS = {
    "GET": handle_object_get,
    "HEAD": handle_object_get,
    "PUT": handle_object_put,
    "POST": handle_object_post,
    "DELETE": handle_object_delete,
    "COPY": handle_copy,
}


def _make_auth(config: ProxyConfig, secret: bytes) -> Any:
    if config.auth == "keystone":
        from proxy.keystoneauth import KeystoneAuth

        return KeystoneAuth(config)
    return TempAuth(config.tempauth_users, secret, config.reseller_prefix)


def build_app(
    config: ProxyConfig, secret: bytes, generations: Generations | None = None
) -> web.Application:
    """The proxy application; ``secret`` signs tempauth tokens and ``generations`` invalidates
    cached container records, both made before the workers fork so that they share them."""
    state = ProxyState(config, _make_auth(config, secret), cache=InfoCache(generations=generations))
    app = web.Application(client_max_size=1024**2, handler_args={"max_field_size": 8192})
    app[STATE_KEY] = state

    async def resources(_app: web.Application) -> AsyncIterator[None]:
        state.cluster = Cluster(config)
        try:
            yield
        finally:
            await state.cluster.close()
            close = getattr(state.auth, "close", None)
            if close is not None:
                await close()

    app.cleanup_ctx.append(resources)
    app.on_response_prepare.append(_add_trans_id)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await _handle(state, request)

    app.router.add_route("*", "/{tail:.*}", handle, expect_handler=_defer_continue)
    return app


async def _defer_continue(request: web.Request) -> None:
    """``Expect: 100-continue`` is answered by the object PUT once auth, constraints, the
    container and the storage nodes have accepted the upload (``object_put.send_continue``);
    every other request gets it at once in :func:`_dispatch`."""


async def _add_trans_id(request: web.Request, response: web.StreamResponse) -> None:
    tid = request.get("trans_id")
    if tid:
        response.headers["X-Trans-Id"] = tid
        response.headers["X-Openstack-Request-Id"] = tid


async def _handle(state: ProxyState, request: web.Request) -> web.StreamResponse:
    extra = request.headers.get("X-Trans-Id-Extra", "")
    tid = new_trans_id(quote(extra[:TRANS_ID_EXTRA_CHARS_MAX]) if extra else "")
    request["trans_id"] = tid
    trans_id.set(tid)
    try:
        return await _dispatch(state, request)
    except SwiftError as error:
        return error_response(error, head=request.method == "HEAD")
    except asyncio.CancelledError:
        raise
    except ConnectionError as exc:  # the client hung up (reset, or lost mid-body): not a bug
        log.info("%s %s: client went away (499): %s", request.method, request.path, exc)
        gone = web.Response(status=499)  # aiohttp drops it quietly: the connection is closed
        gone.force_close()
        return gone
    except Exception as exc:
        return unexpected_response(exc, request)


async def _dispatch(state: ProxyState, request: web.Request) -> web.StreamResponse:
    raw_path = request.rel_url.raw_path
    if raw_path == "/healthcheck":
        return web.Response(text="OK" if request.method != "HEAD" else None)
    if raw_path == "/info":
        if request.method not in ("GET", "HEAD"):
            raise SwiftError(405, headers={"Allow": "GET, HEAD"})
        return web.json_response(info_document(state.config))
    if raw_path in AUTH_PATHS:
        if request.method != "GET" or not hasattr(state.auth, "login"):
            raise SwiftError(404)
        return state.auth.login(request)
    path = parse_path(raw_path)
    if path is None or path.obj is None or request.method != "PUT":
        await send_continue(request)  # only an object PUT has a reason to wait
    if path is None:
        raise SwiftError(404)
    check_names(path)
    assert state.cluster is not None
    principal = await state.auth.authenticate(request)
    referrer = request.headers.get("Referer")

    async def authorize(method: str, target: SwiftPath) -> Decision:
        decision = state.auth.authorize(principal, method, target, None, referrer)
        if decision is Decision.NEED_ACL:
            assert target.container is not None
            info = await container_info(
                state.cluster, state.cache, target.account, target.container
            )
            if info is None:
                raise deny(principal is not None)
            acl = acl_for(method, info.read_acl, info.write_acl)
            decision = state.auth.authorize(principal, method, target, acl, referrer)
        return decision

    decision = await authorize(request.method, path)
    ctx = RequestContext(
        state.cluster, state.cache, state.config, request, path, decision, authorize
    )
    if path.obj is not None:
        handler = _OBJECT_HANDLERS.get(request.method)
        if handler is None:
            raise SwiftError(405, headers={"Allow": ", ".join(_OBJECT_HANDLERS)})
        return await handler(ctx)
    if path.container is not None:
        return await handle_container(ctx)
    return await handle_account(ctx)
