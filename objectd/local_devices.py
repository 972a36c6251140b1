"""Which ring devices are this node's, and the partitions they hold.

Public: :class:`LocalDevice`, :func:`local_devices`, :func:`object_partitions`,
:func:`object_rings`, :func:`policy_of_dir`.

All functions here block (listdir, stat): run them in a thread.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from objectd.layout import data_dir_name
from ring.ring import Ring

WILDCARD_IPS = ("", "0.0.0.0", "::")


@dataclasses.dataclass(frozen=True, slots=True)
class LocalDevice:
    name: str
    path: str
    ring_dev: dict[str, Any] | None  # None: on disk but not in the ring (yet)


def policy_of_dir(name: str, kind: str = "objects") -> int | None:
    """``objects`` → 0, ``objects-3`` → 3, anything else → None."""
    if name == kind:
        return 0
    prefix = kind + "-"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        return int(name[len(prefix) :])
    return None


def object_rings(ring_dir: Path) -> dict[int, Ring]:
    """``{policy_index: Ring}`` of every ``object.ring`` / ``object-N.ring`` in ``ring_dir``."""
    rings: dict[int, Ring] = {}
    try:
        names = os.listdir(ring_dir)
    except FileNotFoundError:
        return rings
    for name in names:
        if name.endswith(".ring"):
            policy = policy_of_dir(name[: -len(".ring")], "object")
            if policy is not None:
                rings[policy] = Ring(ring_dir / name)
    return rings


def _is_local(dev: dict[str, Any], bind_ip: str, bind_port: int) -> bool:
    return dev["port"] == bind_port and (bind_ip in WILDCARD_IPS or dev["ip"] == bind_ip)


def local_devices(
    ring: Ring | None, devices_root: Path, bind_ip: str, bind_port: int, *, mount_check: bool
) -> list[LocalDevice]:
    """The devices under ``devices_root`` (mounted, with ``mount_check``) with their ring entry
    when the ring places that device on this node."""
    try:
        names = sorted(os.listdir(devices_root))
    except FileNotFoundError:
        return []
    by_name: dict[str, dict[str, Any]] = {}
    if ring is not None:
        for dev in ring.devs:
            if dev is not None and _is_local(dev, bind_ip, bind_port):
                by_name[dev["device"]] = dev
    found = []
    for name in names:
        path = os.path.join(devices_root, name)
        if not os.path.isdir(path) or (mount_check and not os.path.ismount(path)):
            continue
        found.append(LocalDevice(name, path, by_name.get(name)))
    return found


def object_partitions(device_path: str) -> list[tuple[int, int, str]]:
    """``(policy_index, partition, partition_dir)`` of every object partition on a device."""
    found = []
    try:
        kinds = sorted(os.listdir(device_path))
    except FileNotFoundError:
        return found
    for kind in kinds:
        policy = policy_of_dir(kind)
        if policy is None:
            continue
        top = os.path.join(device_path, kind)
        try:
            names = os.listdir(top)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in sorted(names, key=lambda n: (len(n), n)):
            if name.isdigit():
                found.append((policy, int(name), os.path.join(top, name)))
    return found


def data_dir(device_path: str, policy_index: int) -> str:
    return os.path.join(device_path, data_dir_name("objects", policy_index))
