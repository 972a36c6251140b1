"""The on-disk formats of rings and builders.

Public: :func:`write_ring`, :func:`read_ring`, :class:`RingData`, :func:`save_builder`,
:func:`load_builder`, :data:`RING_FORMAT_VERSION`.

A file is an 8-byte magic, a 4-byte big-endian format version, then a zlib-compressed msgpack
map. zlib's Adler-32 trailer and msgpack's framing make a truncated or corrupted file an error
rather than a wrong ring, and zlib carries no timestamp, so the same ring always gives the same
bytes (two rings can be compared by checksum). Files are written atomically.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from array import array
from pathlib import Path
from typing import Any

import msgpack

from ring.builder import RingBuilder
from ring.errors import RingBuilderError, RingError, RingFileError
from shoal.atomic_file import write_atomic

RING_MAGIC = b"SHOALRNG"
BUILDER_MAGIC = b"SHOALBLD"
RING_FORMAT_VERSION = 1
BUILDER_FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sI")
_PUBLIC_DEV_KEYS = ("id", "region", "zone", "ip", "port", "device", "weight", "meta")


@dataclasses.dataclass(frozen=True)
class RingData:
    """What lookups need: devices, the assignment and the hash seed."""

    part_power: int
    replicas: int
    hash_seed: bytes
    devs: list[dict[str, Any] | None]
    replica2part2dev: list[array]
    version: int


def _pack(magic: bytes, version: int, payload: dict[str, Any]) -> bytes:
    body = zlib.compress(msgpack.packb(payload, use_bin_type=True), 6)
    return _HEADER.pack(magic, version) + body


def _unpack(path: Path, magic: bytes, version: int, what: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RingFileError(f"{what} file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise RingFileError(f"{what} file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(raw) < _HEADER.size:
        raise RingFileError(f"{what} file {str(path)!r} is truncated")
    found_magic, found_version = _HEADER.unpack_from(raw)
    if found_magic != magic:
        raise RingFileError(f"{str(path)!r} is not a Shoal {what} file")
    if found_version != version:
        raise RingFileError(
            f"{what} file {str(path)!r} has format version {found_version}; this Shoal reads {version}"
        )
    try:
        payload = msgpack.unpackb(
            zlib.decompress(raw[_HEADER.size :]), raw=False, strict_map_key=False
        )
    except (zlib.error, ValueError, msgpack.UnpackException) as exc:
        raise RingFileError(f"{what} file {str(path)!r} is corrupt or truncated ({exc})") from None
    if not isinstance(payload, dict):
        raise RingFileError(f"{what} file {str(path)!r} is corrupt (not a map)")
    return payload


def write_ring(builder: RingBuilder, path: str | Path) -> None:
    """Write the lookup ring of a rebalanced builder to ``path`` (atomically)."""
    if not builder.replica2part2dev:
        raise RingBuilderError("the builder has never been rebalanced: run rebalance first")
    builder.check_valid()
    max_id = max((d["id"] for d in builder.devs if d is not None), default=0)
    typecode = "H" if max_id < 0xFFFF else "I"
    payload = {
        "part_power": builder.part_power,
        "replicas": builder.replicas,
        "hash_seed": builder.hash_seed,
        "version": builder.version,
        "typecode": typecode,
        "devs": [None if d is None else {k: d[k] for k in _PUBLIC_DEV_KEYS} for d in builder.devs],
        "replica2part2dev": [array(typecode, row).tobytes() for row in builder.replica2part2dev],
    }
    write_atomic(path, _pack(RING_MAGIC, RING_FORMAT_VERSION, payload))


def read_ring(path: str | Path) -> RingData:
    """Read and check a ring file; raise :class:`RingFileError` if it is unusable."""
    path = Path(path)
    payload = _unpack(path, RING_MAGIC, RING_FORMAT_VERSION, "ring")
    try:
        part_power = int(payload["part_power"])
        replicas = int(payload["replicas"])
        typecode = payload["typecode"]
        if typecode not in ("H", "I"):
            raise ValueError(f"bad typecode {typecode!r}")
        rows = []
        for raw in payload["replica2part2dev"]:
            row = array(typecode)
            row.frombytes(raw)
            rows.append(row)
        devs = payload["devs"]
        data = RingData(
            part_power, replicas, bytes(payload["hash_seed"]), devs, rows, payload["version"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RingFileError(f"ring file {str(path)!r} is corrupt ({exc})") from None
    _check_ring(path, data)
    return data


def _check_ring(path: Path, data: RingData) -> None:
    partitions = 1 << data.part_power
    if len(data.replica2part2dev) != data.replicas:
        raise RingFileError(f"ring file {str(path)!r} is corrupt: replica rows do not match")
    used: set[int] = set()
    for row in data.replica2part2dev:
        if len(row) != partitions:
            raise RingFileError(f"ring file {str(path)!r} is corrupt: a replica row is short")
        used.update(row)
    for dev_id in used:
        if dev_id >= len(data.devs) or data.devs[dev_id] is None:
            raise RingFileError(f"ring file {str(path)!r} is corrupt: unknown device {dev_id}")


def save_builder(builder: RingBuilder, path: str | Path) -> None:
    """Write the builder's whole state to ``path`` (atomically)."""
    write_atomic(path, _pack(BUILDER_MAGIC, BUILDER_FORMAT_VERSION, builder.to_dict()))


def load_builder(path: str | Path) -> RingBuilder:
    """Read a builder file; raise :class:`RingFileError` if it is unusable."""
    path = Path(path)
    payload = _unpack(path, BUILDER_MAGIC, BUILDER_FORMAT_VERSION, "builder")
    try:
        return RingBuilder.from_dict(payload)
    except RingError as exc:
        raise RingFileError(f"builder file {str(path)!r} is corrupt ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RingFileError(f"builder file {str(path)!r} is corrupt ({exc!r})") from None
