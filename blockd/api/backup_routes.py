"""blockd's backup API: snapshots to the object store and back (see :mod:`blockd.backup`), and
a volume's upload to an image store (see :mod:`blockd.image_upload`).

Public: :func:`add_backup_routes`.

Registered by one line in :func:`blockd.api.app.make_app`, after its own routes::

    add_backup_routes(app, service, app[TASKS])

| call | body | answer |
|---|---|---|
| ``POST /v1/backups`` | ``{"id"?: uuid, "snapshot_id": uuid, "parent_id"?: uuid, "object_store": {"storage_url", "token", "container"}}`` | 202 ``{"backup": {"id", "snapshot_id", "parent_id", "container", "manifest"}, "task"}`` |
| ``POST /v1/backups/{id}/restore`` | ``{"volume_id"?: uuid, "size_gib"?: int, "object_store": {…}}`` | 202 ``{"volume", "task"}`` (a new volume, at least the backup's size) |
| ``POST /v1/volumes/{id}/upload`` | ``{"url": "http(s)://…", "headers"?: {…}}`` | 202 ``{"task"}``: the volume's bytes are PUT to ``url`` (Glance's ``/v2/images/<id>/file``) |

All three run as tasks (``GET /v1/tasks/{id}``: progress = bytes read or written / volume size). The
backup's result is its manifest object, ``backups/<id>``, in the container (written last). The
token is used for that task only and never stored or logged.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from blockd.backup import ObjectStore, backup_snapshot, manifest_name, restore_backup
from blockd.errors import InvalidRequest
from blockd.image_upload import upload_volume
from blockd.model import parse_size_gib, parse_uuid
from blockd.service import BlockService
from blockd.tasks import TaskRegistry
from shoal.units import GiB

BACKUP_SERVICE = web.AppKey("backup_service", BlockService)
BACKUP_TASKS = web.AppKey("backup_tasks", TaskRegistry)
BACKUP_HTTP = web.AppKey("backup_http", aiohttp.ClientSession)
UPLOAD_HEADERS_MAX = 16  # X-Auth-Token and the like, passed on to the image store
STORE_FIELD_BYTES_MAX = 8192  # a storage URL, a token (fernet ~ 200 bytes, PKI-less) or a name


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
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


def _store(request: web.Request, spec: Any) -> ObjectStore:
    fields = ("storage_url", "token", "container")
    if not isinstance(spec, dict) or set(spec) != set(fields):
        raise InvalidRequest('object_store must be {"storage_url", "token", "container"}')
    for name in fields:
        value = spec[name]
        if not isinstance(value, str) or not value or len(value) > STORE_FIELD_BYTES_MAX:
            raise InvalidRequest(f"object_store.{name} must be a non-empty string")
    if not spec["storage_url"].startswith(("http://", "https://")):
        raise InvalidRequest("object_store.storage_url must be an http(s) URL")
    if "/" in spec["container"]:
        raise InvalidRequest("object_store.container must not contain '/'")
    return ObjectStore(
        request.app[BACKUP_HTTP], spec["storage_url"], spec["token"], spec["container"]
    )


async def create_backup(request: web.Request) -> web.Response:
    body = await _body(request, {"id", "snapshot_id", "parent_id", "object_store"})
    backup_id = parse_uuid(body["id"], "id") if body.get("id") else str(uuid.uuid4())
    if "snapshot_id" not in body:
        raise InvalidRequest("missing field 'snapshot_id'")
    snapshot_id = parse_uuid(body["snapshot_id"], "snapshot_id")
    parent_id = parse_uuid(body["parent_id"], "parent_id") if body.get("parent_id") else None
    store = _store(request, body.get("object_store"))
    service, tasks = request.app[BACKUP_SERVICE], request.app[BACKUP_TASKS]
    tasks.check_room()
    snapshot = await service.get_snapshot(snapshot_id)  # 404 now rather than a failed task

    async def work(task) -> None:
        await backup_snapshot(service, store, backup_id, snapshot_id, parent_id, task)

    task = tasks.start("backup", snapshot.volume_id, work)
    backup = {
        "id": backup_id,
        "snapshot_id": snapshot_id,
        "parent_id": parent_id,
        "container": store.container,
        "manifest": manifest_name(backup_id),
    }
    return web.json_response({"backup": backup, "task": task.as_dict()}, status=202)


async def upload(request: web.Request) -> web.Response:
    """Stream the volume to an image store (Cinder's copy_volume_to_image) as a task."""
    volume_id = parse_uuid(request.match_info["volume_id"], "volume_id")
    body = await _body(request, {"url", "headers"})
    url, headers = body.get("url"), body.get("headers") or {}
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidRequest("url must be an http(s) URL")
    if not isinstance(headers, dict) or len(headers) > UPLOAD_HEADERS_MAX:
        raise InvalidRequest(f"headers must be an object of at most {UPLOAD_HEADERS_MAX}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidRequest("headers must map strings to strings")
    service, tasks = request.app[BACKUP_SERVICE], request.app[BACKUP_TASKS]
    tasks.check_room()
    await service.get_volume(volume_id)  # 404 now rather than a failed task
    session = request.app[BACKUP_HTTP]

    async def work(task) -> None:
        await upload_volume(service, session, volume_id, url, headers, task)

    task = tasks.start("image-upload", volume_id, work)
    return web.json_response({"task": task.as_dict()}, status=202)


async def restore(request: web.Request) -> web.Response:
    backup_id = parse_uuid(request.match_info["backup_id"], "backup_id")
    body = await _body(request, {"volume_id", "size_gib", "object_store"})
    volume_id = parse_uuid(body["volume_id"], "volume_id") if body.get("volume_id") else None
    store = _store(request, body.get("object_store"))
    service, tasks = request.app[BACKUP_SERVICE], request.app[BACKUP_TASKS]
    tasks.check_room()
    manifest = await store.manifest(backup_id)  # 404 before a volume is made for nothing
    size_gib = max(
        math.ceil(manifest["size_bytes"] / GiB),
        parse_size_gib(body["size_gib"]) if body.get("size_gib") is not None else 0,
    )
    volume = await service.create_volume(volume_id or str(uuid.uuid4()), size_gib)

    async def work(task) -> None:
        await restore_backup(service, store, manifest, volume.id, task)

    task = tasks.start("restore", volume.id, work)
    return web.json_response({"volume": volume.as_dict(), "task": task.as_dict()}, status=202)


def add_backup_routes(app: web.Application, service: BlockService, tasks: TaskRegistry) -> None:
    """Add the backup calls to blockd's app (before it starts); they share its task list.
    Idempotent, so a caller need not know whether ``make_app`` did it already."""
    if BACKUP_SERVICE in app:
        return
    app[BACKUP_SERVICE] = service
    app[BACKUP_TASKS] = tasks

    async def http_session(app: web.Application):
        async with aiohttp.ClientSession() as session:
            app[BACKUP_HTTP] = session
            yield

    app.cleanup_ctx.append(http_session)
    app.add_routes(
        [
            web.post("/v1/backups", create_backup),
            web.post("/v1/backups/{backup_id}/restore", restore),
            web.post("/v1/volumes/{volume_id}/upload", upload),
        ]
    )
