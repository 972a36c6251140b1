"""blockd's aiohttp application: routes, request parsing, and the app's lifecycle.

Public: :func:`make_app`.

Handlers only parse and validate the request, call one :class:`~blockd.service.BlockService`
method and render the result; errors are raised as typed exceptions and turned into responses by
:mod:`blockd.api.errors`. The API is documented in ``blockd/API.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from blockd.api.backup_routes import add_backup_routes
from blockd.api.errors import error_middleware
from blockd.auth import TOKEN_HEADER, Authenticator, Caller
from blockd.config import DEFAULT_CONVERSION_DIR
from blockd.errors import BlockdError, InvalidRequest
from blockd.image_convert import remove_leftovers
from blockd.image_import import IMAGE_FORMATS, import_image
from blockd.model import parse_iqn, parse_size_gib, parse_uuid
from blockd.service import BlockService
from blockd.tasks import TaskRegistry
from shoal.units import KiB

log = logging.getLogger("blockd.api")

REQUEST_BYTES_MAX = 64 * KiB  # every request body is a small JSON object
IMPORT_HEADERS_MAX = 16  # headers passed on to the image source (X-Auth-Token, ...)
UNAUTHENTICATED_PATHS = frozenset({"/healthcheck"})  # says "OK" and nothing else

SERVICE = web.AppKey("service", BlockService)
AUTH = web.AppKey("auth", Authenticator)
TASKS = web.AppKey("tasks", TaskRegistry)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CONVERSION_DIR = web.AppKey("conversion_dir", Path)
CALLER = web.RequestKey("caller", Caller)  # who made the request (set by auth_middleware)


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    if request.path not in UNAUTHENTICATED_PATHS:
        request[CALLER] = await request.app[AUTH].authenticate(request.headers.get(TOKEN_HEADER))
    return await handler(request)


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    return body


def _required(body: dict[str, Any], name: str, parse: Callable[[Any, str], Any]) -> Any:
    if name not in body:
        raise InvalidRequest(f"missing field {name!r}")
    return parse(body[name], name)


def _optional(body: dict[str, Any], name: str, parse: Callable[[Any, str], Any]) -> Any:
    return parse(body[name], name) if body.get(name) is not None else None


def _path_id(request: web.Request, key: str) -> str:
    return parse_uuid(request.match_info[key], key)


# --- capacity -------------------------------------------------------------------------------
async def get_stats(request: web.Request) -> web.Response:
    capacity = await request.app[SERVICE].capacity()
    return web.json_response(capacity.as_dict())


async def healthcheck(request: web.Request) -> web.Response:
    return web.Response(text="OK")


# --- volumes --------------------------------------------------------------------------------
async def list_volumes(request: web.Request) -> web.Response:
    volumes = await request.app[SERVICE].list_volumes()
    return web.json_response({"volumes": [v.as_dict() for v in volumes]})


async def create_volume(request: web.Request) -> web.Response:
    fields = {"id", "size_gib", "snapshot_id", "source_volume_id", "image"}
    body = await _body(request, fields)
    volume_id = _optional(body, "id", parse_uuid) or str(uuid.uuid4())
    size_gib = _required(body, "size_gib", parse_size_gib)
    image = _parse_image(body.get("image"))
    if image and (body.get("snapshot_id") or body.get("source_volume_id")):
        raise InvalidRequest("an image goes into an empty volume: no snapshot_id/source_volume_id")
    if image:
        request.app[TASKS].check_room()  # refuse before the volume exists, not after
    service = request.app[SERVICE]
    volume = await service.create_volume(
        volume_id,
        size_gib,
        snapshot_id=_optional(body, "snapshot_id", parse_uuid),
        source_volume_id=_optional(body, "source_volume_id", parse_uuid),
    )
    result = {"volume": volume.as_dict()}
    if image:
        result["task"] = _start_import(request, volume, *image).as_dict()
        return web.json_response(result, status=202)
    return web.json_response(result, status=201)


def _parse_image(image: Any) -> tuple[str, dict[str, str], str] | None:
    if image is None:
        return None
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        raise InvalidRequest('image must be {"url": "http(s)://...", "headers": {...}}')
    unknown = set(image) - {"url", "headers", "disk_format"}
    if unknown:
        raise InvalidRequest(f"unknown image field(s): {', '.join(sorted(unknown))}")
    url, headers = image["url"], image.get("headers") or {}
    disk_format = image.get("disk_format") or "raw"
    if disk_format not in IMAGE_FORMATS:
        raise InvalidRequest(f"image.disk_format must be one of {', '.join(IMAGE_FORMATS)}")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest("image.url must be an http(s) URL")
    if not isinstance(headers, dict) or len(headers) > IMPORT_HEADERS_MAX:
        raise InvalidRequest(f"image.headers must be an object of at most {IMPORT_HEADERS_MAX}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidRequest("image.headers must map strings to strings")
    return url, headers, disk_format


def _start_import(
    request: web.Request, volume, url: str, headers: dict[str, str], disk_format: str
):
    service, session = request.app[SERVICE], request.app[HTTP]
    conversion_dir = request.app[CONVERSION_DIR]

    async def work(task) -> None:
        async with service.locks.hold(volume.id):
            device = await service.device_path(volume)
            await import_image(
                session, url, headers, volume, device, task, disk_format, conversion_dir
            )

    return request.app[TASKS].start("image-import", volume.id, work)


async def get_volume(request: web.Request) -> web.Response:
    volume = await request.app[SERVICE].get_volume(_path_id(request, "volume_id"))
    return web.json_response({"volume": volume.as_dict()})


async def delete_volume(request: web.Request) -> web.Response:
    await request.app[SERVICE].delete_volume(_path_id(request, "volume_id"))
    return web.Response(status=204)


async def extend_volume(request: web.Request) -> web.Response:
    body = await _body(request, {"size_gib"})
    size_gib = _required(body, "size_gib", parse_size_gib)
    volume = await request.app[SERVICE].extend_volume(_path_id(request, "volume_id"), size_gib)
    return web.json_response({"volume": volume.as_dict()})


async def revert_volume(request: web.Request) -> web.Response:
    body = await _body(request, {"snapshot_id"})
    snapshot_id = _required(body, "snapshot_id", parse_uuid)
    volume = await request.app[SERVICE].revert_volume(_path_id(request, "volume_id"), snapshot_id)
    return web.json_response({"volume": volume.as_dict()})


# --- snapshots ------------------------------------------------------------------------------
async def list_snapshots(request: web.Request) -> web.Response:
    volume_id = request.query.get("volume_id")
    if volume_id is not None:
        volume_id = parse_uuid(volume_id, "volume_id")
    snapshots = await request.app[SERVICE].list_snapshots(volume_id)
    return web.json_response({"snapshots": [s.as_dict() for s in snapshots]})


async def create_snapshot(request: web.Request) -> web.Response:
    body = await _body(request, {"id", "volume_id"})
    snapshot_id = _optional(body, "id", parse_uuid) or str(uuid.uuid4())
    volume_id = _required(body, "volume_id", parse_uuid)
    snapshot = await request.app[SERVICE].create_snapshot(snapshot_id, volume_id)
    return web.json_response({"snapshot": snapshot.as_dict()}, status=201)


async def get_snapshot(request: web.Request) -> web.Response:
    snapshot = await request.app[SERVICE].get_snapshot(_path_id(request, "snapshot_id"))
    return web.json_response({"snapshot": snapshot.as_dict()})


async def delete_snapshot(request: web.Request) -> web.Response:
    await request.app[SERVICE].delete_snapshot(_path_id(request, "snapshot_id"))
    return web.Response(status=204)


# --- exports --------------------------------------------------------------------------------
async def list_exports(request: web.Request) -> web.Response:
    initiators = await request.app[SERVICE].list_exports(_path_id(request, "volume_id"))
    return web.json_response({"initiators": initiators})


async def export_volume(request: web.Request) -> web.Response:
    initiator = parse_iqn(request.match_info["initiator"])
    export = await request.app[SERVICE].export_volume(_path_id(request, "volume_id"), initiator)
    return web.json_response({"export": export.as_dict()})


async def unexport_volume(request: web.Request) -> web.Response:
    initiator = parse_iqn(request.match_info["initiator"])
    await request.app[SERVICE].unexport_volume(_path_id(request, "volume_id"), initiator)
    return web.Response(status=204)


# --- tasks ----------------------------------------------------------------------------------
async def list_tasks(request: web.Request) -> web.Response:
    return web.json_response({"tasks": [t.as_dict() for t in request.app[TASKS].list()]})


async def get_task(request: web.Request) -> web.Response:
    task = request.app[TASKS].get(_path_id(request, "task_id"))
    return web.json_response({"task": task.as_dict()})


def _routes() -> list[web.RouteDef]:
    volume = "/v1/volumes/{volume_id}"
    return [
        web.get("/healthcheck", healthcheck),
        web.get("/v1/stats", get_stats),
        web.get("/v1/volumes", list_volumes),
        web.post("/v1/volumes", create_volume),
        web.get(volume, get_volume),
        web.delete(volume, delete_volume),
        web.post(volume + "/extend", extend_volume),
        web.post(volume + "/revert", revert_volume),
        web.get(volume + "/exports", list_exports),
        web.put(volume + "/exports/{initiator}", export_volume),
        web.delete(volume + "/exports/{initiator}", unexport_volume),
        web.get("/v1/snapshots", list_snapshots),
        web.post("/v1/snapshots", create_snapshot),
        web.get("/v1/snapshots/{snapshot_id}", get_snapshot),
        web.delete("/v1/snapshots/{snapshot_id}", delete_snapshot),
        web.get("/v1/tasks", list_tasks),
        web.get("/v1/tasks/{task_id}", get_task),
    ]


async def reconcile_forever(service: BlockService, interval_s: float) -> None:
    """Re-create saved exports the running target lost (tgtd restarted under us), forever.

    Each pass is one ``Target.start()``: a listing of the target, and work only for what is
    missing. A failing pass (tgtd down right now) is logged and retried at the next interval.
    """
    while True:  # never ends; each pass is bounded; cancelled at shutdown
        await asyncio.sleep(interval_s)
        try:
            await service.target.start()
        except BlockdError as exc:
            log.warning("reconciling exports failed (retry in %.0f s): %s", interval_s, exc)


def make_app(
    service: BlockService,
    auth: Authenticator,
    *,
    reconcile_interval_s: float = 0.0,
    conversion_dir: Path = DEFAULT_CONVERSION_DIR,
) -> web.Application:
    """The app; ``service.start()`` runs at startup, so a broken node fails before serving.
    ``conversion_dir`` holds non-raw images while qemu-img converts them (see image_import)."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=REQUEST_BYTES_MAX
    )
    app[SERVICE] = service
    app[AUTH] = auth
    app[TASKS] = TaskRegistry()
    app[CONVERSION_DIR] = conversion_dir
    app.add_routes(_routes())
    add_backup_routes(app, service, app[TASKS])

    async def lifecycle(app: web.Application):
        await service.start()
        await asyncio.to_thread(remove_leftovers, conversion_dir)
        reconciler = None
        if reconcile_interval_s > 0:
            reconciler = asyncio.create_task(reconcile_forever(service, reconcile_interval_s))
        async with aiohttp.ClientSession() as session:
            app[HTTP] = session
            try:
                yield
            finally:
                if reconciler is not None:
                    reconciler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reconciler
                await app[TASKS].close()
                await service.target.close()
                with contextlib.suppress(Exception):
                    await auth.close()

    app.cleanup_ctx.append(lifecycle)
    return app
