"""Receiving a whole container or account database: what a replica that has none gets.

Public: :class:`DatabaseReceiver`, :data:`OP_DB_FILE`.

``POST /<device>/<partition>/<account>[/<container>]`` with ``X-Backend-Object-Replication:
db_file`` and the SQLite file (a consistent snapshot made with SQLite's backup API) as a
streamed body. The file is written to ``<device>/tmp``, fsynced, checked (``PRAGMA
quick_check``, and its info row must name this account/container), then linked into place only
if no database exists there yet: **201**; **409** if one exists (the sender then pushes rows,
which merge). A half-received or corrupt file is never visible. Rows merged later by the normal
row sync (``merge_items``) are idempotent, so a copy racing with row pushes is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid

from aiohttp import web

from objectd.backend_path import BackendPath
from objectd.devices import Devices
from objectd.errors import BadRequest, ClientDisconnect, Conflict, RequestTimeout
from objectd.layout import Layout
from objectd.limits import WRITE_BUFFER_BYTES

OP_DB_FILE = "db_file"

DB_FILE_BYTES_MAX = 64 * 1024**3
"""The largest database accepted whole (Swift's largest containers are tens of GB)."""

RECEIVE_READ_TIMEOUT_S = 60.0


class DatabaseReceiver:
    def __init__(self, devices: Devices, layout: Layout):
        self.devices = devices
        self.layout = layout

    async def receive(self, request: web.Request, path: BackendPath) -> web.Response:
        if path.obj is not None:
            raise BadRequest("db_file is for /<device>/<partition>/<account>[/<container>]")
        kind = "containers" if path.container is not None else "accounts"
        name_hash = self.layout.hash_of(path.account, path.container)
        db_path = self.layout.db_path(path.device, kind, path.partition, name_hash)
        device = path.device
        await self.devices.run(device, self.devices.check, device)
        if await self.devices.run(device, os.path.exists, db_path):
            raise Conflict("a database exists here: push rows instead")
        tmp_dir = self.layout.tmp_dir(device)
        await self.devices.run(device, self.devices.io.makedirs, tmp_dir)
        temp_path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.db")
        fd = await self.devices.run(
            device, os.open, temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        try:
            try:
                await self._stream_into(request, device, fd)
                await self.devices.run(device, self.devices.io.fsync, fd)
            finally:
                os.close(fd)
            await self.devices.run(device, _check_db, temp_path, kind, path)
            await self.devices.run(device, self._link, temp_path, db_path)
        finally:
            for leftover in (temp_path, temp_path + "-wal", temp_path + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    await self.devices.run(device, os.unlink, leftover)
        return web.Response(status=201)

    async def _stream_into(self, request: web.Request, device: str, fd: int) -> None:
        received = 0
        buffered: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(RECEIVE_READ_TIMEOUT_S):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise RequestTimeout("database stream stalled") from None
            except OSError as exc:
                raise ClientDisconnect(f"database stream ended early: {exc!r}") from None
            if chunk:
                buffered.append(chunk)
                size += len(chunk)
                received += len(chunk)
                if received > DB_FILE_BYTES_MAX:
                    raise BadRequest(f"database larger than {DB_FILE_BYTES_MAX} bytes")
            if buffered and (not chunk or size >= WRITE_BUFFER_BYTES):
                await self.devices.run(device, self.devices.io.writev, fd, buffered)
                buffered, size = [], 0
            if not chunk:
                return

    def _link(self, temp_path: str, db_path: str) -> None:
        io = self.devices.io
        created = io.makedirs(os.path.dirname(db_path))
        try:
            os.link(temp_path, db_path)
        except FileExistsError:
            raise Conflict("a database appeared here meanwhile") from None
        io.fsync_dir(os.path.dirname(db_path))
        for directory in reversed(created):
            io.fsync_dir(os.path.dirname(directory))


def _check_db(temp_path: str, kind: str, path: BackendPath) -> None:
    """Raise BadRequest unless ``temp_path`` is a sound database of ``path``."""
    table = "container_info" if kind == "containers" else "account_info"
    try:
        connection = sqlite3.connect(temp_path)  # read-write: a WAL database needs its -shm
        try:
            (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
            columns = "account, container" if kind == "containers" else "account, NULL"
            row = connection.execute(f"SELECT {columns} FROM {table}").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BadRequest(f"not a usable database: {exc}") from None
    if verdict != "ok":
        raise BadRequest(f"database fails quick_check: {verdict}")
    if row is None or row[0] != path.account or row[1] != path.container:
        raise BadRequest(f"database is of {row!r}, not of {path.name}")
