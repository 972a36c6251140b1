"""Where a path lives: the hash functions shared by the ring, objectd and the proxy.

Public: :func:`path_key`, :func:`partition_of`, :func:`object_hash`, :func:`hash_suffix`.

A path is ``/account[/container[/object]]`` in UTF-8. Placement uses ``xxh3_64(seed + path)``
and takes its top ``part_power`` bits, so partitions are uniform whatever the names look like,
and a per-cluster secret seed stops a client from aiming many names at one partition. The
on-disk object directory name is the 128-bit ``xxh3_128(seed + path)`` in hex: wide enough that
two names never collide in one partition, and its last three hex digits are the suffix directory.
"""

from __future__ import annotations

import xxhash


def path_key(account: str, container: str | None = None, obj: str | None = None) -> bytes:
    """``/account[/container[/object]]`` as UTF-8 bytes; an object needs a container."""
    if obj is not None and container is None:
        raise ValueError("an object path needs a container")
    parts = [account] if container is None else [account, container]
    if obj is not None:
        parts.append(obj)
    return ("/" + "/".join(parts)).encode("utf-8", "surrogatepass")


def partition_of(seed: bytes, key: bytes, part_power: int) -> int:
    """The partition of ``key``: the top ``part_power`` bits of ``xxh3_64(seed + key)``."""
    return xxhash.xxh3_64_intdigest(seed + key) >> (64 - part_power) if part_power else 0


def object_hash(
    seed: bytes, account: str, container: str | None = None, obj: str | None = None
) -> str:
    """32 hex digits naming the directory of an object (or DB) inside its partition."""
    return xxhash.xxh3_128_hexdigest(seed + path_key(account, container, obj))


def hash_suffix(name_hash: str) -> str:
    """The suffix directory of a hash: its last three hex digits."""
    return name_hash[-3:]
