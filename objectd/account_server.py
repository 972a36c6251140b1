"""The account server: account PUT/POST/DELETE/HEAD/GET, container reports, replication.

Public: :class:`AccountServer`.

- ``PUT /dev/part/a``: 201 created, 202 updated, 403 if the account was deleted (Swift keeps a
  deleted account deleted until the reaper has emptied it).
- ``DELETE``: marks it DELETED (204); ``HEAD``/``GET`` then answer 404 with
  ``X-Account-Status: Deleted``.
- ``HEAD``/``GET``: counts, metadata, per-policy counts as
  ``X-Backend-Storage-Policy-<index>-{Container-Count,Object-Count,Bytes-Used}`` (the proxy
  names the policies); GET lists containers as JSON.
- ``PUT /dev/part/a/c`` with ``X-Backend-Server-Type: account``: a container server's report
  (``X-Put-Timestamp``, ``X-Delete-Timestamp``, ``X-Object-Count``, ``X-Bytes-Used``,
  ``X-Backend-Storage-Policy-Index``, ``X-Backend-Stats-Timestamp``): 201, or 204 when the report
  says the container is deleted; 404 if the account does not exist (accounts starting with
  ``auto_create_account_prefix`` are created).
- ``POST /dev/part/a`` with ``X-Backend-Replicate: true``: replication ops ``merge_items``,
  ``get_items``, ``get_info``, ``merge_info`` (for the replicator).
"""

from __future__ import annotations

import sqlite3

from aiohttp import web

from objectd import account_db
from objectd.account_db import AccountInfo, ContainerRow
from objectd.backend_headers import require_timestamp
from objectd.backend_path import BackendPath, parse_query
from objectd.config import ObjectdConfig
from objectd.db import (
    Brokers,
    DatabaseMissing,
    create_database,
    parse_incoming_items,
    update_metadata,
    visible_metadata,
)
from objectd.db_http import (
    ACCOUNT_META,
    encode_listing,
    get_items_args,
    listing_response,
    merge_info_op,
    metadata_updates,
    read_json_body,
)
from objectd.devices import Devices
from objectd.errors import BadRequest, NotFound
from objectd.layout import Layout
from objectd.limits import LISTING_LIMIT_MAX, MERGE_ITEMS_MAX
from objectd.listing import ListingParams
from shoal.timestamp import Timestamp


class AccountServer:
    def __init__(self, devices: Devices, layout: Layout, brokers: Brokers, config: ObjectdConfig):
        self.devices = devices
        self.layout = layout
        self.brokers = brokers
        self.auto_create_prefix = config.auto_create_account_prefix

    def _db_path(self, path: BackendPath) -> str:
        name_hash = self.layout.hash_of(path.account)
        return self.layout.db_path(path.device, "accounts", path.partition, name_hash)

    async def handle(self, request: web.Request, path: BackendPath) -> web.StreamResponse:
        method = request.method
        if method == "PUT":
            return await self.put(request, path)
        if method in ("GET", "HEAD"):
            return await self.get_or_head(request, path)
        if method == "DELETE":
            timestamp = require_timestamp(request.headers)
            status = await self.brokers.run(
                path.device, self._db_path(path), account_db.delete_account, timestamp
            )
            return web.Response(status=status)
        if method == "POST" and request.headers.get("X-Backend-Replicate"):
            return await self.replicate(request, path)
        if method == "POST":
            timestamp = require_timestamp(request.headers)
            updates = metadata_updates(request.headers, ACCOUNT_META)
            status = await self.brokers.run(
                path.device, self._db_path(path), account_db.post_account, timestamp, updates
            )
            return web.Response(status=status)
        return web.Response(status=405, headers={"Allow": "GET, HEAD, PUT, POST, DELETE"})

    async def put(self, request: web.Request, path: BackendPath) -> web.Response:
        timestamp = require_timestamp(request.headers)
        updates = metadata_updates(request.headers, ACCOUNT_META)
        if await self._create(path, timestamp, updates):
            return web.Response(status=201)
        status = await self.brokers.run(
            path.device, self._db_path(path), account_db.put_account, timestamp, updates
        )
        return web.Response(status=status, text="Recently deleted" if status == 403 else None)

    async def _create(
        self, path: BackendPath, timestamp: Timestamp, updates: dict[str, str]
    ) -> bool:
        initialize = account_db.initializer(
            path.account, timestamp, update_metadata("{}", updates, timestamp)
        )
        return await self.devices.run(
            path.device,
            create_database,
            self.devices,
            path.device,
            self._db_path(path),
            account_db.SCHEMA,
            initialize,
        )

    async def get_or_head(self, request: web.Request, path: BackendPath) -> web.Response:
        params = None
        if request.method == "GET":
            params = ListingParams.from_query(parse_query(request.raw_path))
        info, policies, items = await self.brokers.run(
            path.device, self._db_path(path), _info_and_listing, params
        )
        if info.is_deleted:
            return web.Response(status=404, headers={"X-Account-Status": "Deleted"})
        headers = _info_headers(info, policies)
        if items is None:
            return web.Response(status=204, headers=headers)
        return listing_response(items, headers)

    # --- container reports --------------------------------------------------------------------
    async def handle_row(self, request: web.Request, path: BackendPath) -> web.Response:
        if request.method != "PUT":
            return web.Response(status=405, headers={"Allow": "PUT"})
        assert path.container is not None
        try:  # checked whole before any write: one malformed header refuses the report
            row = ContainerRow.from_report(path.container, request.headers)
        except ValueError as exc:
            raise BadRequest(f"bad container report: {exc}") from None
        db_path = self._db_path(path)
        try:
            await self.brokers.merge(path.device, db_path, _merge_reports, [row])
        except DatabaseMissing:
            if not path.account.startswith(self.auto_create_prefix):
                raise
            await self._create(path, Timestamp.parse(row.put_timestamp), {})
            await self.brokers.merge(path.device, db_path, _merge_reports, [row])
        return web.Response(status=204 if row.delete_timestamp > row.put_timestamp else 201)

    async def replicate(self, request: web.Request, path: BackendPath) -> web.Response:
        body = await read_json_body(request)
        db_path = self._db_path(path)
        op = body["op"]
        if op == "merge_items":
            items = body.get("items", [])
            if not isinstance(items, list) or len(items) > MERGE_ITEMS_MAX:
                raise BadRequest(f"merge_items takes a list of at most {MERGE_ITEMS_MAX} items")
            try:  # the whole batch is checked before any write: one bad item refuses it all
                rows = parse_incoming_items(items, ContainerRow.from_peer)
            except ValueError as exc:
                raise BadRequest(f"merge_items: {exc}") from None
            await self.brokers.merge(path.device, db_path, account_db.merge_containers, rows)
            return web.Response(status=204)
        if op == "get_items":
            since, count = get_items_args(body, LISTING_LIMIT_MAX, MERGE_ITEMS_MAX)
            items = await self.brokers.run(path.device, db_path, account_db.get_items, since, count)
            return web.json_response(items)
        if op == "get_info":
            info = await self.brokers.run(path.device, db_path, account_db.get_info)
            return web.json_response(
                {field: getattr(info, field) for field in AccountInfo.__dataclass_fields__}
            )
        if op == "merge_info":
            return await merge_info_op(
                self.brokers, path.device, db_path, account_db.merge_info, body
            )
        raise BadRequest(f"unknown replication op {op!r}")


def _merge_reports(connection: sqlite3.Connection, rows: list[ContainerRow]) -> None:
    if account_db.get_info(connection).status == "DELETED":
        raise NotFound("account deleted")
    account_db.merge_containers(connection, rows)


def _info_and_listing(connection: sqlite3.Connection, params: ListingParams | None):
    info = account_db.get_info(connection)
    policies = account_db.policy_stats(connection)
    if params is None or info.is_deleted:
        return info, policies, None
    return info, policies, encode_listing(account_db.list_containers(connection, params))


def _info_headers(info: AccountInfo, policies: list[tuple[int, int, int, int]]) -> dict[str, str]:
    headers = visible_metadata(info.metadata)
    headers.update(
        {
            "X-Account-Container-Count": str(info.container_count),
            "X-Account-Object-Count": str(info.object_count),
            "X-Account-Bytes-Used": str(info.bytes_used),
            "X-Timestamp": Timestamp.parse(info.created_at).normal,
            "X-Put-Timestamp": Timestamp.parse(info.put_timestamp).normal,
            "X-Backend-Timestamp": info.created_at,
            "X-Backend-Put-Timestamp": info.put_timestamp,
            "X-Backend-Delete-Timestamp": info.delete_timestamp,
            "X-Backend-Status-Changed-At": info.status_changed_at,
        }
    )
    for policy, containers, objects, bytes_used in policies:
        prefix = f"X-Backend-Storage-Policy-{policy}-"
        headers[prefix + "Container-Count"] = str(containers)
        headers[prefix + "Object-Count"] = str(objects)
        headers[prefix + "Bytes-Used"] = str(bytes_used)
    return headers
