"""Where things live on a device: the on-disk layout, Swift's, in one place.

Public: :class:`Layout`, :func:`data_dir_name`, :func:`async_pending_dir_name`.

```
<devices>/<device>/objects[-N]/<partition>/<suffix>/<hash>/<timestamp>.data|.ts|.meta
<devices>/<device>/containers/<partition>/<suffix>/<hash>/<hash>.db
<devices>/<device>/accounts/<partition>/<suffix>/<hash>/<hash>.db
<devices>/<device>/async_pending[-N]/<suffix>/<hash>-<timestamp>
<devices>/<device>/quarantined/<kind>/<hash>[-<random>]/
<devices>/<device>/tmp/
```

``N`` is the storage-policy index (policy 0 has no suffix, as in Swift). ``hash`` is
``xxh3_128(seed + "/account[/container[/object]]")`` in hex (``ring.hashing.object_hash``) and
``suffix`` its last three hex digits, so one suffix directory groups ~1/4096 of a partition and
the replicator can compare partitions suffix by suffix.
"""

from __future__ import annotations

import os

from ring.hashing import hash_suffix, object_hash


def data_dir_name(kind: str, policy_index: int = 0) -> str:
    """``objects``, ``objects-1``, ...; ``containers`` and ``accounts`` have no policy."""
    return kind if policy_index == 0 else f"{kind}-{policy_index}"


def async_pending_dir_name(policy_index: int = 0) -> str:
    return "async_pending" if policy_index == 0 else f"async_pending-{policy_index}"


class Layout:
    """Paths under one ``devices`` root for one cluster seed. Pure string work, no I/O."""

    __slots__ = ("devices", "seed")

    def __init__(self, devices: str | os.PathLike, seed: bytes):
        self.devices = os.fspath(devices)
        self.seed = seed

    def hash_of(self, account: str, container: str | None = None, obj: str | None = None) -> str:
        return object_hash(self.seed, account, container, obj)

    def device_path(self, device: str) -> str:
        return os.path.join(self.devices, device)

    def tmp_dir(self, device: str) -> str:
        return os.path.join(self.devices, device, "tmp")

    def object_dir(self, device: str, partition: int, policy_index: int, name_hash: str) -> str:
        return os.path.join(
            self.devices,
            device,
            data_dir_name("objects", policy_index),
            str(partition),
            hash_suffix(name_hash),
            name_hash,
        )

    def db_path(self, device: str, kind: str, partition: int, name_hash: str) -> str:
        """``kind`` is ``containers`` or ``accounts``."""
        return os.path.join(
            self.devices,
            device,
            kind,
            str(partition),
            hash_suffix(name_hash),
            name_hash,
            name_hash + ".db",
        )

    def quarantine_dir(self, device: str, kind: str) -> str:
        """``kind`` is a data directory name: ``objects``, ``objects-1``, ``containers``, ..."""
        return os.path.join(self.devices, device, "quarantined", kind)

    def async_pending_dir(self, device: str, policy_index: int = 0) -> str:
        return os.path.join(self.devices, device, async_pending_dir_name(policy_index))
