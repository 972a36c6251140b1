"""The container server: container PUT/POST/DELETE/HEAD/GET, object rows, replication.

Public: :class:`ContainerServer`.

Requests, as Swift's container server answers them:

- ``PUT /dev/part/a/c`` creates the DB (201) or updates it (202); 409 for a live container of
  another storage policy. Then the account server(s) named in ``X-Account-Host/-Partition/
  -Device`` get the container's state; if every one of them says 404, the PUT answers 404 (the
  account does not exist: the proxy creates it and retries).
- ``DELETE /dev/part/a/c``: 204, 404 if missing or deleted, 409 if not empty.
- ``HEAD``/``GET``: 204/200 with counts and metadata; GET lists as JSON.
- ``POST``: metadata (204).
- ``PUT``/``DELETE /dev/part/a/c/o`` with ``X-Backend-Server-Type: container``: an object row
  from an object server (``X-Timestamp``, ``X-Size``, ``X-Content-Type``, ``X-Etag``); merged with
  group commit. 404 if the container DB does not exist, except for accounts starting with
  ``auto_create_account_prefix`` (``.expiring_objects``...), whose containers are created.
- ``POST /dev/part/a/c`` with ``X-Backend-Replicate: true`` and a JSON body: replication ops
  ``merge_items``, ``get_items``, ``get_info``, ``merge_info`` (for the replicator).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from objectd import container_db
from objectd.backend_headers import policy_index_of, require_timestamp
from objectd.backend_path import BackendPath, parse_query, valid_device_name
from objectd.client import BackendClient, BackendError, Node
from objectd.config import ObjectdConfig
from objectd.container_db import ContainerInfo, ObjectRow
from objectd.db import (
    Brokers,
    DatabaseMissing,
    create_database,
    parse_incoming_items,
    update_metadata,
    visible_metadata,
)
from objectd.db_http import (
    CONTAINER_META,
    encode_listing,
    get_items_args,
    listing_response,
    merge_info_op,
    metadata_updates,
    read_json_body,
)
from objectd.devices import Devices
from objectd.errors import BadRequest
from objectd.layout import Layout
from objectd.limits import LISTING_LIMIT_MAX, MERGE_ITEMS_MAX
from objectd.listing import ListingParams
from shoal.timestamp import Timestamp, now

log = logging.getLogger("objectd.container")


class ContainerServer:
    def __init__(
        self,
        devices: Devices,
        layout: Layout,
        brokers: Brokers,
        client: BackendClient,
        config: ObjectdConfig,
    ):
        self.devices = devices
        self.layout = layout
        self.brokers = brokers
        self.client = client
        self.auto_create_prefix = config.auto_create_account_prefix
        self.node_timeout_s = config.node_timeout_s

    def _db_path(self, path: BackendPath) -> str:
        name_hash = self.layout.hash_of(path.account, path.container)
        return self.layout.db_path(path.device, "containers", path.partition, name_hash)

    async def handle(self, request: web.Request, path: BackendPath) -> web.StreamResponse:
        method = request.method
        if method == "PUT":
            return await self.put(request, path)
        if method in ("GET", "HEAD"):
            return await self.get_or_head(request, path)
        if method == "DELETE":
            return await self.delete(request, path)
        if method == "POST":
            if request.headers.get("X-Backend-Replicate"):
                return await self.replicate(request, path)
            return await self.post(request, path)
        return web.Response(status=405, headers={"Allow": "GET, HEAD, PUT, POST, DELETE"})

    # --- the container itself -----------------------------------------------------------------
    async def put(self, request: web.Request, path: BackendPath) -> web.Response:
        headers = request.headers
        timestamp = require_timestamp(headers)
        has_policy = bool(headers.get("X-Backend-Storage-Policy-Index"))
        policy = policy_index_of(headers)
        updates = metadata_updates(headers, CONTAINER_META)
        status, info = await self._create_or_update(
            path, timestamp, policy if has_policy else None, updates
        )
        if status == 409:
            return web.Response(
                status=409,
                headers={"X-Backend-Storage-Policy-Index": str(info.storage_policy_index)},
            )
        if await self._update_accounts(request, path, info) == 404:
            return web.Response(status=404, text="account not found")
        return web.Response(status=status)

    async def _create_or_update(
        self, path: BackendPath, timestamp: Timestamp, policy: int | None, updates: dict[str, str]
    ) -> tuple[int, ContainerInfo]:
        db_path = self._db_path(path)
        assert path.container is not None
        initialize = container_db.initializer(
            path.account,
            path.container,
            timestamp,
            policy or 0,
            update_metadata("{}", updates, timestamp),
        )
        created = await self.devices.run(
            path.device,
            create_database,
            self.devices,
            path.device,
            db_path,
            container_db.SCHEMA,
            initialize,
        )
        if created:
            return 201, await self.brokers.run(path.device, db_path, container_db.get_info)
        return await self.brokers.run(
            path.device, db_path, container_db.put_container, timestamp, policy, updates
        )

    async def delete(self, request: web.Request, path: BackendPath) -> web.Response:
        timestamp = require_timestamp(request.headers)
        status, info = await self.brokers.run(
            path.device, self._db_path(path), container_db.delete_container, timestamp
        )
        if status == 204:
            await self._update_accounts(request, path, info)
        return web.Response(status=status)

    async def post(self, request: web.Request, path: BackendPath) -> web.Response:
        timestamp = require_timestamp(request.headers)
        updates = metadata_updates(request.headers, CONTAINER_META)
        status = await self.brokers.run(
            path.device, self._db_path(path), container_db.post_container, timestamp, updates
        )
        return web.Response(status=status)

    async def get_or_head(self, request: web.Request, path: BackendPath) -> web.Response:
        params = None
        if request.method == "GET":
            params = ListingParams.from_query(parse_query(request.raw_path), allow_path=True)
        info, items = await self.brokers.run(
            path.device, self._db_path(path), _info_and_listing, params
        )
        headers = _info_headers(info)
        if info.is_deleted:
            return web.Response(status=404, headers=headers)
        if items is None:
            return web.Response(status=204, headers=headers)
        return listing_response(items, headers)

    # --- object rows --------------------------------------------------------------------------
    async def handle_row(self, request: web.Request, path: BackendPath) -> web.Response:
        """PUT or DELETE of one object row (from an object server or the updater)."""
        if request.method not in ("PUT", "DELETE"):
            return web.Response(status=405, headers={"Allow": "PUT, DELETE"})
        headers = request.headers
        timestamp = require_timestamp(headers)
        policy = policy_index_of(headers)
        assert path.obj is not None
        if request.method == "PUT":
            size = headers.get("X-Size", "")
            if not size.isdigit():
                raise BadRequest(f"bad X-Size {size!r}")
            row = ObjectRow(
                path.obj,
                timestamp.internal,
                int(size),
                headers.get("X-Content-Type", ""),
                headers.get("X-Etag", ""),
                0,
                policy,
            )
        else:
            row = ObjectRow(path.obj, timestamp.internal, 0, "", "", 1, policy)
        await self._merge_rows(path, [row], timestamp, policy)
        return web.Response(status=201 if request.method == "PUT" else 204)

    async def _merge_rows(
        self, path: BackendPath, rows: list[ObjectRow], timestamp: Timestamp, policy: int
    ) -> None:
        db_path = self._db_path(path)
        try:
            await self.brokers.merge(path.device, db_path, container_db.merge_objects, rows)
        except DatabaseMissing:
            if not path.account.startswith(self.auto_create_prefix):
                raise
            await self._create_or_update(path, timestamp, policy, {})
            await self.brokers.merge(path.device, db_path, container_db.merge_objects, rows)

    # --- replication --------------------------------------------------------------------------
    async def replicate(self, request: web.Request, path: BackendPath) -> web.Response:
        body = await read_json_body(request)
        db_path = self._db_path(path)
        op = body["op"]
        if op == "merge_items":
            items = body.get("items", [])
            if not isinstance(items, list) or len(items) > MERGE_ITEMS_MAX:
                raise BadRequest(f"merge_items takes a list of at most {MERGE_ITEMS_MAX} items")
            try:  # the whole batch is checked before any write: one bad item refuses it all
                rows = parse_incoming_items(items, ObjectRow.from_peer)
            except ValueError as exc:
                raise BadRequest(f"merge_items: {exc}") from None
            await self.brokers.merge(path.device, db_path, container_db.merge_objects, rows)
            return web.Response(status=204)
        if op == "get_items":
            since, count = get_items_args(body, LISTING_LIMIT_MAX, MERGE_ITEMS_MAX)
            items = await self.brokers.run(
                path.device, db_path, container_db.get_items, since, count
            )
            return web.json_response(items)
        if op == "get_info":
            info = await self.brokers.run(path.device, db_path, container_db.get_info)
            return web.json_response(_info_dict(info))
        if op == "merge_info":
            return await merge_info_op(
                self.brokers, path.device, db_path, container_db.merge_info, body
            )
        raise BadRequest(f"unknown replication op {op!r}")

    # --- account updates ----------------------------------------------------------------------
    async def _update_accounts(
        self, request: web.Request, path: BackendPath, info: ContainerInfo
    ) -> int | None:
        """Report the container to the account servers named by the proxy; 404 if all say 404."""
        targets = _account_targets(request.headers)
        if not targets:
            return None
        partition, nodes = targets
        headers = {
            "X-Put-Timestamp": info.put_timestamp,
            "X-Delete-Timestamp": info.delete_timestamp,
            "X-Object-Count": str(info.object_count),
            "X-Bytes-Used": str(info.bytes_used),
            "X-Backend-Storage-Policy-Index": str(info.storage_policy_index),
            "X-Backend-Stats-Timestamp": now().internal,
            "X-Trans-Id": request.headers.get("X-Trans-Id", "-"),
        }
        assert path.container is not None
        sends = [
            self.client.update_account(node, partition, path.account, path.container, headers)
            for node in nodes
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        statuses = []
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, BackendError):
                log.warning("account update %s to %s failed: %s", path.name, node, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                statuses.append(result.status)
        return (
            404
            if statuses and len(statuses) == len(nodes) and all(s == 404 for s in statuses)
            else None
        )


def _account_targets(headers) -> tuple[int, list[Node]] | None:
    hosts_text = headers.get("X-Account-Host")
    if not hosts_text:
        return None
    hosts = [h.strip() for h in hosts_text.split(",") if h.strip()]
    devices = [d.strip() for d in headers.get("X-Account-Device", "").split(",") if d.strip()]
    partition = headers.get("X-Account-Partition", "")
    if len(hosts) != len(devices) or not partition.isdigit():
        raise BadRequest("bad X-Account-Host/-Device/-Partition")
    nodes = []
    for host, device in zip(hosts, devices, strict=True):
        ip, sep, port = host.rpartition(":")
        if not sep or not port.isdigit() or not valid_device_name(device):
            raise BadRequest(f"bad account target {host!r}/{device!r}")
        nodes.append(Node(ip.strip("[]"), int(port), device))
    return int(partition), nodes


def _info_and_listing(connection, params: ListingParams | None):
    info = container_db.get_info(connection)
    if params is None or info.is_deleted:
        return info, None
    return info, encode_listing(
        container_db.list_objects(connection, params, info.storage_policy_index)
    )


def _info_headers(info: ContainerInfo) -> dict[str, str]:
    headers = {
        "X-Backend-Timestamp": info.created_at,
        "X-Backend-Put-Timestamp": info.put_timestamp,
        "X-Backend-Delete-Timestamp": info.delete_timestamp,
        "X-Backend-Status-Changed-At": info.status_changed_at,
        "X-Backend-Storage-Policy-Index": str(info.storage_policy_index),
    }
    if not info.is_deleted:
        headers.update(visible_metadata(info.metadata))
        headers["X-Container-Object-Count"] = str(info.object_count)
        headers["X-Container-Bytes-Used"] = str(info.bytes_used)
        headers["X-Timestamp"] = Timestamp.parse(info.created_at).normal
        headers["X-Put-Timestamp"] = Timestamp.parse(info.put_timestamp).normal
    return headers


def _info_dict(info: ContainerInfo) -> dict:
    return {
        "account": info.account,
        "container": info.container,
        "created_at": info.created_at,
        "put_timestamp": info.put_timestamp,
        "delete_timestamp": info.delete_timestamp,
        "status_changed_at": info.status_changed_at,
        "storage_policy_index": info.storage_policy_index,
        "id": info.id,
        "metadata": info.metadata,
        "object_count": info.object_count,
        "bytes_used": info.bytes_used,
    }
