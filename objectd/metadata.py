"""The on-disk format of object files: the body, then a msgpack metadata trailer, then a footer.

Public: :func:`encode_trailer`, :func:`read_file`, :class:`ObjectFile`, :class:`CorruptFile`,
:func:`parse_file_name`, :func:`choose_files`, :class:`OnDiskFiles`, :data:`FOOTER_BYTES`,
:data:`BODY_CHECKSUM_KEY`, :func:`body_hasher`.

Every file in an object's hash directory (``.data``, ``.meta``, ``.ts``) has the same shape::

    [ body: body_bytes ][ metadata: msgpack map of str -> str ][ footer: 20 bytes ]
    footer = body_bytes (u64 LE) | metadata_bytes (u32 LE) | xxh32(metadata) (u32 LE) | b"SHM1"

Why a trailer inside the data file, and not xattrs or a sidecar:

- *Any filesystem.* Swift keeps metadata in xattrs; ext4 limits all xattrs of an inode to one
  block (4 KiB), so an object at Swift's own maximums (90 items, 4 KiB of user metadata, a
  1024-byte name, plus system metadata) fails there with ENOSPC. A trailer has no such limit.
- *Atomic.* Body and metadata are one file, made visible by one rename (or link); there is no
  moment when one exists without the other, and one fsync makes both durable. A sidecar needs
  two files, two fsyncs and an ordering rule between them.
- *Fast.* No extra inode or syscall per PUT; a small object (the common case) is read with one
  ``pread`` of the whole file, which yields body and metadata at once.
- *Streamable.* The ETag is known only after the body has streamed through, so metadata goes at
  the end, and the body starts at offset 0, which is what ``sendfile`` wants. The footer's
  lengths and checksum let a reader detect a torn or corrupt file and quarantine it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import msgpack
import xxhash

from objectd.diskio import DiskIO
from objectd.limits import METADATA_BYTES_MAX, TRAILER_READ_BYTES
from shoal.timestamp import Timestamp, TimestampError

MAGIC = b"SHM1"
_FOOTER = struct.Struct("<QII4s")
FOOTER_BYTES = _FOOTER.size

DATA, META, TOMBSTONE = ".data", ".meta", ".ts"


BODY_CHECKSUM_KEY = "xxh3"
"""Metadata key of the body's xxh3-64 checksum (16 hex digits), recorded with every ``.data``
written since this key was introduced. Lower case like ``name``: it is ours, never a header, and
no client header can set it (stored headers are title-cased).

Why a second checksum when the ETag is the body's MD5: a whole-object GET verifies the body
before its last bytes go out (Swift does that with the MD5), and MD5 costs ~1.4 ms per MiB here,
a third of all the CPU of a 1 MiB GET; xxh3-64 costs ~0.02 ms. For what the check is for,
corruption at rest, a 64-bit checksum of the same bytes misses one corruption in 2^64. The MD5
still proves the body against the client's ETag when it is written, and the auditor compares
the two again. Files without the key (written before it) are verified with their MD5."""


def body_hasher(metadata: dict[str, str]) -> tuple[Callable[[], Any], str]:
    """How to verify a whole body described by ``metadata`` (a ``.data``'s own metadata):
    ``(new hasher, expected hex digest)``, xxh3-64 when recorded, else MD5 against ``ETag``.

    Raises:
        KeyError: neither is recorded (the caller treats the file as corrupt).
    """
    recorded = metadata.get(BODY_CHECKSUM_KEY)
    if recorded is not None:
        return xxhash.xxh3_64, recorded
    return hashlib.md5, metadata["ETag"]


class CorruptFile(Exception):
    """An object file does not have the documented shape: the caller quarantines it."""


def encode_trailer(metadata: dict[str, str], body_bytes: int) -> bytes:
    """The metadata trailer and footer to append after ``body_bytes`` bytes of body."""
    packed = msgpack.packb(metadata, use_bin_type=True, unicode_errors="surrogateescape")
    assert len(packed) <= METADATA_BYTES_MAX, "metadata larger than any reader accepts"
    return packed + _FOOTER.pack(body_bytes, len(packed), xxhash.xxh32_intdigest(packed), MAGIC)


@dataclasses.dataclass(slots=True)
class ObjectFile:
    """What a read of one object file found: its metadata, body size and maybe the whole body."""

    metadata: dict[str, str]
    body_bytes: int
    body: bytes | None  # the whole body when the file was small enough to read at once


def read_file(io: DiskIO, fd: int, file_bytes: int, *, read_whole_max: int = 0) -> ObjectFile:
    """Read the trailer (and, when ``file_bytes <= read_whole_max``, the body too) of ``fd``.

    Raises:
        CorruptFile: bad footer, lengths that disagree with the file size, bad checksum or bad
            msgpack.
    """
    if file_bytes < FOOTER_BYTES:
        raise CorruptFile(f"file of {file_bytes} bytes is shorter than a footer")
    whole = file_bytes <= read_whole_max
    offset = 0 if whole else max(0, file_bytes - TRAILER_READ_BYTES)
    tail = io.pread(fd, file_bytes - offset, offset)
    if len(tail) != file_bytes - offset:
        raise CorruptFile(f"short read: {len(tail)} bytes at {offset} of {file_bytes}")
    body_bytes, metadata_bytes, checksum = _parse_footer(tail, file_bytes)
    metadata_offset = body_bytes  # absolute offset of the metadata in the file
    if metadata_offset < offset:  # trailer larger than the first read: read it exactly
        tail = io.pread(fd, metadata_bytes, metadata_offset) + tail[-FOOTER_BYTES:]
        offset = metadata_offset
    packed = tail[metadata_offset - offset : metadata_offset - offset + metadata_bytes]
    metadata = _unpack(packed, checksum)
    body = tail[:body_bytes] if whole else None
    return ObjectFile(metadata, body_bytes, body)


def _parse_footer(tail: bytes, file_bytes: int) -> tuple[int, int, int]:
    body_bytes, metadata_bytes, checksum, magic = _FOOTER.unpack_from(
        tail, len(tail) - FOOTER_BYTES
    )
    if magic != MAGIC:
        raise CorruptFile(f"bad footer magic {magic!r}")
    if metadata_bytes > METADATA_BYTES_MAX:
        raise CorruptFile(f"metadata of {metadata_bytes} bytes exceeds {METADATA_BYTES_MAX}")
    if body_bytes + metadata_bytes + FOOTER_BYTES != file_bytes:
        raise CorruptFile(
            f"footer says {body_bytes} + {metadata_bytes} + {FOOTER_BYTES} bytes, "
            f"file has {file_bytes}"
        )
    return body_bytes, metadata_bytes, checksum


def _unpack(packed: bytes, checksum: int) -> dict[str, str]:
    if xxhash.xxh32_intdigest(packed) != checksum:
        raise CorruptFile("metadata checksum mismatch")
    try:
        metadata = msgpack.unpackb(packed, raw=False, unicode_errors="surrogateescape")
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptFile(f"metadata is not msgpack: {exc}") from None
    if not isinstance(metadata, dict):
        raise CorruptFile("metadata is not a map")
    return metadata


# --- file names -----------------------------------------------------------------------------------
def parse_file_name(name: str) -> tuple[Timestamp, str] | None:
    """``(timestamp, extension)`` of ``<timestamp>.data|.meta|.ts``; None for any other name."""
    stem, dot, extension = name.rpartition(".")
    if not dot or "." + extension not in (DATA, META, TOMBSTONE):
        return None
    try:
        return Timestamp.parse(stem), "." + extension
    except TimestampError:
        return None


@dataclasses.dataclass(slots=True)
class OnDiskFiles:
    """The files of one hash directory that decide its state, and those that are obsolete."""

    data: str | None = None  # newest .data, if it is newer than every .ts
    tombstone: str | None = None  # newest .ts, if it is newer than every .data
    meta: str | None = None  # newest .meta newer than the data file
    state_timestamp: Timestamp | None = None  # of the newest .data or .ts
    meta_timestamp: Timestamp | None = None
    obsolete: list[str] = dataclasses.field(default_factory=list)

    @property
    def newest_timestamp(self) -> Timestamp | None:
        """The newest write of any kind: what a new write must be newer than."""
        if self.meta_timestamp and (
            self.state_timestamp is None or self.meta_timestamp > self.state_timestamp
        ):
            return self.meta_timestamp
        return self.state_timestamp


def choose_files(names: list[str]) -> OnDiskFiles:
    """Apply Swift's rules: the newest ``.data`` or ``.ts`` wins; of the ``.meta`` files newer
    than it only the newest counts; everything older than the winner is obsolete. Names that
    are not object files are left alone (neither chosen nor obsolete)."""
    parsed = sorted(
        ((ts, ext, name) for name in names if (p := parse_file_name(name)) for ts, ext in [p]),
        key=lambda item: item[0],
        reverse=True,
    )
    files = OnDiskFiles()
    for timestamp, extension, name in parsed:
        if files.state_timestamp is not None:
            files.obsolete.append(name)
        elif extension == META:
            if files.meta is None:
                files.meta, files.meta_timestamp = name, timestamp
            else:
                files.obsolete.append(name)
        else:
            files.state_timestamp = timestamp
            if extension == DATA:
                files.data = name
            else:
                files.tombstone = name
    # a .meta over a tombstone describes nothing; one with no file under it at all is kept
    # (replication may still bring its .data)
    if files.meta is not None and files.tombstone is not None:
        files.obsolete.append(files.meta)
        files.meta = files.meta_timestamp = None
    return files
