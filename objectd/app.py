"""The objectd aiohttp application: one route, one dispatcher, resources in ``cleanup_ctx``.

Public: :func:`build_app`, :data:`SERVERS_KEY`.

Every request goes to :func:`_dispatch`, which splits the raw path
(:mod:`objectd.backend_path`) and hands it to the object, container or account server by the
number of path segments. One process serves all three on one port, so the two requests whose
paths look alike are told apart by ``X-Backend-Server-Type``: an object row for a container DB
(``PUT|DELETE /d/p/a/c/o``, ``container``) and a container report for an account DB
(``PUT /d/p/a/c``, ``account``). Errors are turned into responses in one place
(:func:`objectd.errors.error_response`); anything unexpected is logged once with the request's
``X-Trans-Id`` and answered 500.

``Expect: 100-continue`` is *not* answered by aiohttp for PUT: the object server sends
``100 Continue`` itself after it has checked device, space and timestamp, so the proxy can
learn of a 507 or 409 before it streams the body.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from objectd.account_server import AccountServer
from objectd.backend_path import parse_backend_path
from objectd.client import BackendClient
from objectd.config import ObjectdConfig, resolve_seed
from objectd.container_server import ContainerServer
from objectd.container_update import ContainerUpdater
from objectd.db import Brokers
from objectd.devices import Devices
from objectd.diskio import DiskIO
from objectd.errors import ObjectdError, error_response
from objectd.layout import Layout
from objectd.limits import SENDFILE_THREADS_MAX
from objectd.object_get import ObjectReader
from objectd.object_headers import lowered
from objectd.object_server import ObjectServer
from objectd.replication_server import ReplicationOps, replication_op
from shoal.log import trans_id

log = logging.getLogger("objectd")


@dataclasses.dataclass(slots=True)
class Servers:
    objects: ObjectServer
    containers: ContainerServer
    accounts: AccountServer
    replication: ReplicationOps


SERVERS_KEY: web.AppKey[Servers] = web.AppKey("servers", Servers)


def build_app(config: ObjectdConfig) -> web.Application:
    """The application for ``config``. Raises ConfigError for a bad seed or fault plan."""
    seed = resolve_seed(config)
    io = DiskIO(config.fault_injection)
    layout = Layout(config.devices, seed)
    app = web.Application(client_max_size=1024**2)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        devices = Devices(
            io,
            layout,
            mount_check=config.mount_check,
            reserve=config.reserve,
            threads_per_device=config.threads_per_device,
            named_temp_files=config.named_temp_files,
            keep_cache_bytes_max=config.keep_cache_bytes_max,
        )
        sendfile_pool = concurrent.futures.ThreadPoolExecutor(
            SENDFILE_THREADS_MAX, thread_name_prefix="sendfile"
        )
        client = BackendClient(
            connect_timeout_s=config.conn_timeout_s,
            response_timeout_s=config.node_timeout_s,
            user_agent="objectd",
        )
        brokers = Brokers(devices, synchronous=config.db_synchronous)
        allowed = lowered(config.allowed_headers)
        reader = ObjectReader(devices, layout, allowed, sendfile_pool, config.client_timeout_s)
        updater = ContainerUpdater(client, devices, config.container_update_timeout_s)
        app[SERVERS_KEY] = Servers(
            ObjectServer(devices, layout, allowed, reader, updater, config.client_timeout_s),
            ContainerServer(devices, layout, brokers, client, config),
            AccountServer(devices, layout, brokers, config),
            ReplicationOps(devices, layout),
        )
        rescan = asyncio.ensure_future(devices.rescan_forever())
        try:
            yield
        finally:
            rescan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rescan
            await client.close()
            await brokers.close()
            await devices.close()
            sendfile_pool.shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(resources)
    app.router.add_route("*", "/{tail:.*}", _dispatch, expect_handler=_expect)
    return app


async def _expect(request: web.Request) -> None:
    """aiohttp's Expect hook: PUT answers 100 Continue itself, after its checks."""
    if request.method != "PUT" and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


async def _dispatch(request: web.Request) -> web.StreamResponse:
    trans_id.set(request.headers.get("X-Trans-Id", "-"))
    try:
        raw_path = request.raw_path
        if raw_path.startswith("/healthcheck"):
            return web.Response(text="OK")
        servers = request.app[SERVERS_KEY]
        op = replication_op(request)
        if op is not None:
            return await servers.replication.serve(request, op)
        path = parse_backend_path(raw_path)
        server_type = request.headers.get("X-Backend-Server-Type")
        if path.obj is not None:
            if server_type == "container":
                return await servers.containers.handle_row(request, path)
            return await servers.objects.handle(request, path)
        if path.container is not None:
            if server_type == "account":
                return await servers.accounts.handle_row(request, path)
            return await servers.containers.handle(request, path)
        return await servers.accounts.handle(request, path)
    except ObjectdError as exc:
        response = error_response(exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.raw_path)
        response = web.Response(status=500, text="Internal Server Error")
    if not request.content.is_eof():
        response.force_close()  # the body was not read: the connection cannot be reused
    return response
