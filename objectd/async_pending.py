"""Async pendings: container updates that could not be delivered, kept for the updater.

Public: :class:`AsyncUpdate`, :func:`save_async_pending`, :func:`list_async_pendings`,
:func:`load_async_pending`, :func:`remove_async_pending`.

When an object PUT or DELETE cannot update its container servers in time, the update is written
here *before* the object server answers, so it is never lost; the object updater (a separate
daemon) later replays it against the container ring and removes the file once every container
replica has it. File layout, as Swift's::

    <device>/async_pending[-N]/<suffix>/<object hash>-<X-Timestamp>

The file is a msgpack map: ``op`` (``PUT``/``DELETE``), ``account``, ``container``, ``obj``,
``headers`` (exactly the headers of the container update: ``X-Timestamp``, ``X-Size``,
``X-Content-Type``, ``X-Etag``, ``X-Backend-Storage-Policy-Index``, ...) and
``container_partition``. One file per (object, timestamp): a second failure of the same update
finds the file already there. It is written like an object: temp file, fsync, link, fsync dir.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import msgpack

from objectd.devices import Devices
from objectd.disk_write import TempFile, link_into
from objectd.layout import Layout, async_pending_dir_name
from objectd.limits import ASYNC_PENDING_FILES_MAX_PER_SCAN
from ring.hashing import hash_suffix
from shoal.timestamp import Timestamp


@dataclasses.dataclass(slots=True)
class AsyncUpdate:
    """One container update to replay."""

    op: str
    account: str
    container: str
    obj: str
    headers: dict[str, str]
    container_partition: int | None = None

    def to_bytes(self) -> bytes:
        return msgpack.packb(dataclasses.asdict(self), use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> AsyncUpdate:
        fields = msgpack.unpackb(data, raw=False)
        return cls(
            op=fields["op"],
            account=fields["account"],
            container=fields["container"],
            obj=fields["obj"],
            headers=dict(fields["headers"]),
            container_partition=fields.get("container_partition"),
        )


def save_async_pending(
    devices: Devices,
    device: str,
    policy_index: int,
    name_hash: str,
    timestamp: Timestamp,
    update: AsyncUpdate,
) -> str:
    """Durably write ``update`` (blocking: run on the device's threads); return its path."""
    directory = os.path.join(
        devices.layout.async_pending_dir(device, policy_index), hash_suffix(name_hash)
    )
    name = f"{name_hash}-{timestamp.internal}"
    temp = TempFile(devices, device)
    try:
        devices.io.write(temp.fd, update.to_bytes())
        devices.io.fsync(temp.fd)
        try:
            link_into(devices, temp, directory, name)
        except FileExistsError:
            pass  # the same update was saved before
    finally:
        temp.close()
    return os.path.join(directory, name)


def list_async_pendings(layout: Layout, device: str) -> Iterator[tuple[int, str]]:
    """``(policy_index, path)`` of the async pendings of ``device``, oldest name order per
    suffix, at most ``ASYNC_PENDING_FILES_MAX_PER_SCAN`` of them (blocking)."""
    device_path = layout.device_path(device)
    try:
        kinds = sorted(os.listdir(device_path))
    except FileNotFoundError:
        return
    count = 0
    for kind in kinds:
        policy_index = _policy_of(kind)
        if policy_index is None:
            continue
        top = os.path.join(device_path, kind)
        for suffix in sorted(_listdir(top)):
            for name in sorted(_listdir(os.path.join(top, suffix))):
                if count >= ASYNC_PENDING_FILES_MAX_PER_SCAN:
                    return
                count += 1
                yield policy_index, os.path.join(top, suffix, name)


def load_async_pending(path: str) -> AsyncUpdate:
    with open(path, "rb") as f:
        return AsyncUpdate.from_bytes(f.read())


def remove_async_pending(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _policy_of(kind: str) -> int | None:
    if kind == async_pending_dir_name(0):
        return 0
    prefix = async_pending_dir_name(0) + "-"
    if kind.startswith(prefix) and kind[len(prefix) :].isdigit():
        return int(kind[len(prefix) :])
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
