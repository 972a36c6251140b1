"""Container updates: after an object PUT or DELETE, tell the container servers the proxy named.

Public: :class:`ContainerUpdater`, :class:`UpdateTargets`.

The proxy sends, with each object write, the container replica(s) this object server must update:
``X-Container-Host`` (``ip:port``, comma-separated when there are more container replicas than
object replicas), ``X-Container-Device`` (same count) and ``X-Container-Partition``. They are
checked *before* the object is written (a malformed set is a 400, never a silently lost update).

After the write, all targets are updated concurrently, waiting at most
``container_update_timeout_s``. If any target fails or is late, the update is saved as an async
pending (:mod:`objectd.async_pending`) before the object server answers, so it is never lost; the
updater replays it. A late update that is cancelled may still have landed; replaying it is
harmless because container rows merge by timestamp.

Swift's overrides are honoured: ``X-Object-Sysmeta-Container-Update-Override-<Header>`` stored on
the object, then ``X-Backend-Container-Update-Override-<Header>`` on the request, replace
``X-<Header>`` of the update (used by SLO and encryption to list a different ETag or size).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping

from objectd.async_pending import AsyncUpdate, save_async_pending
from objectd.backend_path import BackendPath, valid_device_name
from objectd.client import BackendClient, BackendError, Node
from objectd.devices import Devices
from objectd.errors import BadRequest
from shoal.timestamp import Timestamp

log = logging.getLogger("objectd.container_update")

_SYSMETA_OVERRIDE = "x-object-sysmeta-container-update-override-"
_BACKEND_OVERRIDE = "x-backend-container-update-override-"


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateTargets:
    """The container replicas one object write must update."""

    partition: int
    nodes: tuple[Node, ...]


def parse_targets(headers: Mapping[str, str]) -> UpdateTargets | None:
    """The ``X-Container-*`` headers as targets; None when there are none.

    Raises:
        BadRequest: hosts and devices differ in number, or a host, device or partition is bad.
    """
    hosts_text = headers.get("X-Container-Host")
    if not hosts_text:
        return None
    hosts = [h.strip() for h in hosts_text.split(",") if h.strip()]
    devices = [d.strip() for d in headers.get("X-Container-Device", "").split(",") if d.strip()]
    partition = headers.get("X-Container-Partition", "")
    if len(hosts) != len(devices):
        raise BadRequest("X-Container-Host and X-Container-Device differ in number")
    if not partition.isdigit():
        raise BadRequest(f"bad X-Container-Partition {partition!r}")
    nodes = []
    for host, device in zip(hosts, devices, strict=True):
        ip, sep, port = host.rpartition(":")
        if not sep or not port.isdigit() or not valid_device_name(device):
            raise BadRequest(f"bad container target {host!r}/{device!r}")
        nodes.append(Node(ip.strip("[]"), int(port), device))
    return UpdateTargets(int(partition), tuple(nodes))


def update_headers(
    request_headers: Mapping[str, str],
    op: str,
    timestamp: Timestamp,
    policy_index: int,
    metadata: Mapping[str, str],
    size: int,
) -> dict[str, str]:
    """The headers of the container update for one object write."""
    headers = {
        "X-Timestamp": timestamp.internal,
        "X-Trans-Id": request_headers.get("X-Trans-Id", "-"),
        "X-Backend-Storage-Policy-Index": str(policy_index),
    }
    if op == "PUT":
        headers["X-Size"] = str(size)
        headers["X-Content-Type"] = metadata.get("Content-Type", "")
        headers["X-Etag"] = metadata.get("ETag", "")
        for source, prefix in ((metadata, _SYSMETA_OVERRIDE), (request_headers, _BACKEND_OVERRIDE)):
            for key, value in source.items():
                if key.lower().startswith(prefix):
                    headers["X-" + key[len(prefix) :].title()] = value
    return headers


class ContainerUpdater:
    """Sends container updates; saves async pendings for those that fail."""

    def __init__(self, client: BackendClient, devices: Devices, timeout_s: float):
        self.client = client
        self.devices = devices
        self.timeout_s = timeout_s

    async def object_changed(
        self,
        request_headers: Mapping[str, str],
        path: BackendPath,
        policy_index: int,
        op: str,
        timestamp: Timestamp,
        metadata: Mapping[str, str],
        size: int,
    ) -> None:
        """Update every target of the request; never returns before the update is safe."""
        targets = parse_targets(request_headers)
        if targets is None:
            return
        assert path.container is not None and path.obj is not None
        headers = update_headers(request_headers, op, timestamp, policy_index, metadata, size)
        sends = [
            asyncio.ensure_future(self._send(node, targets.partition, path, op, headers))
            for node in targets.nodes
        ]
        done, late = await asyncio.wait(sends, timeout=self.timeout_s)
        for task in late:
            task.cancel()
        if late or not all(task.result() for task in done):
            update = AsyncUpdate(
                op, path.account, path.container, path.obj, headers, targets.partition
            )
            name_hash = self.devices.layout.hash_of(path.account, path.container, path.obj)
            await self.devices.run(
                path.device,
                save_async_pending,
                self.devices,
                path.device,
                policy_index,
                name_hash,
                timestamp,
                update,
            )

    async def _send(
        self, node: Node, partition: int, path: BackendPath, op: str, headers: dict[str, str]
    ) -> bool:
        assert path.container is not None and path.obj is not None
        try:
            response = await self.client.update_container(
                node, partition, path.account, path.container, path.obj, op, headers
            )
        except BackendError as exc:
            log.warning("container update %s %s failed: %s", op, path.name, exc)
            return False
        if not response.ok:
            log.warning("container update %s %s to %s: %d", op, path.name, node, response.status)
        return response.ok
