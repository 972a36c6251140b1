"""objectd's side of replication: the requests a replicator sends to a node.

Public: :class:`ReplicationOps`, :func:`replication_op`.

``POST /<device>/<partition>`` with ``X-Backend-Object-Replication: hashes|missing_check|
   receive`` is served here (:mod:`objectd.ssync_receiver`, wire format in
   :mod:`objectd.ssync_wire`), and ``POST /<device>/<partition>/<account>[/<container>]`` with
   ``db_file`` (a whole database, :mod:`objectd.db_receiver`). objectd's dispatcher asks
   :func:`replication_op` first and sends such requests here. (Object writes mark their suffix
   stale themselves, in :mod:`objectd.disk_write`, within the write's own disk-thread hop.)

It used to be an aiohttp middleware. A middleware wraps *every* request in two more coroutine
calls, and objectd's small GETs are paid per microsecond, so the dispatcher now tests one header
instead.
"""

from __future__ import annotations

from aiohttp import web

from objectd.backend_headers import policy_index_of
from objectd.backend_path import parse_backend_path, valid_device_name
from objectd.db_receiver import OP_DB_FILE, DatabaseReceiver
from objectd.devices import Devices
from objectd.errors import BadRequest, ObjectdError, error_response
from objectd.layout import Layout
from objectd.ssync_receiver import ReplicationReceiver
from objectd.ssync_wire import OP_HASHES, OP_HEADER, OP_MISSING_CHECK, OP_RECEIVE


def replication_op(request: web.Request) -> str | None:
    """The replication op a request asks for, or None for an ordinary request."""
    if request.method != "POST":
        return None
    return request.headers.get(OP_HEADER)


class ReplicationOps:
    """Serves the replication ops of one objectd process."""

    def __init__(self, devices: Devices, layout: Layout):
        self.receiver = ReplicationReceiver(devices, layout)

    async def serve(self, request: web.Request, op: str) -> web.StreamResponse:
        return await _serve_op(self.receiver, request, op)


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
