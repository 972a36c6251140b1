"""objectd's side of object replication, plugged into its app as one middleware.

Public: :func:`install`.

``POST /<device>/<partition>`` with ``X-Backend-Object-Replication: hashes|missing_check|
   receive`` is served here (:mod:`objectd.ssync_receiver`, wire format in
   :mod:`objectd.ssync_wire`), and ``POST /<device>/<partition>/<account>[/<container>]`` with
   ``db_file`` (a whole database, :mod:`objectd.db_receiver`); every other request goes on to
   objectd's own dispatcher. (Object writes mark their suffix stale themselves, in
   :mod:`objectd.disk_write`, within the write's own disk-thread hop.)

It is a middleware, not a route, so that objectd's app needs one line to enable it and its
catch-all route stays as it is.
"""

from __future__ import annotations

from aiohttp import web

from objectd.backend_headers import policy_index_of
from objectd.backend_path import parse_backend_path, valid_device_name
from objectd.config import ObjectdConfig, resolve_seed
from objectd.db_receiver import OP_DB_FILE, DatabaseReceiver
from objectd.devices import Devices
from objectd.errors import BadRequest, ObjectdError, error_response
from objectd.layout import Layout
from objectd.ssync_receiver import ReplicationReceiver
from objectd.ssync_wire import OP_HASHES, OP_HEADER, OP_MISSING_CHECK, OP_RECEIVE


def install(app: web.Application, config: ObjectdConfig) -> None:
    """Add the replication middleware to objectd's ``app`` (before it starts)."""
    layout = Layout(config.devices, resolve_seed(config))
    state: dict[str, ReplicationReceiver] = {}

    def receiver_of(request: web.Request) -> ReplicationReceiver:
        receiver = state.get("receiver")
        if receiver is None:
            receiver = ReplicationReceiver(_devices_of(request.app), layout)
            state["receiver"] = receiver
        return receiver

    @web.middleware
    async def replication(request: web.Request, handler) -> web.StreamResponse:
        op = request.headers.get(OP_HEADER)
        if op is not None and request.method == "POST":
            return await _serve_op(receiver_of(request), request, op)
        return await handler(request)

    app.middlewares.append(replication)


def _devices_of(app: web.Application) -> Devices:
    from objectd.app import SERVERS_KEY  # objectd.app imports this module

    return app[SERVERS_KEY].objects.devices


async def _serve_op(receiver: ReplicationReceiver, request: web.Request, op: str):
    try:
        if op == OP_DB_FILE:
            databases = DatabaseReceiver(receiver.devices, receiver.layout)
            return await databases.receive(request, parse_backend_path(request.raw_path))
        parts = request.raw_path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or not valid_device_name(parts[0]) or not parts[1].isdigit():
            raise BadRequest("object replication path is /<device>/<partition>")
        device, partition = parts[0], int(parts[1])
        policy = policy_index_of(request.headers)
        if op == OP_HASHES:
            return await receiver.hashes(request, device, partition, policy)
        if op == OP_MISSING_CHECK:
            return await receiver.missing_check(request, device, partition, policy)
        if op == OP_RECEIVE:
            return await receiver.receive(request, device, partition, policy)
        raise BadRequest(f"unknown object replication op {op!r}")
    except ObjectdError as exc:
        response = error_response(exc)
    if not request.content.is_eof():
        response.force_close()
    return response
