"""The wire format of object replication (Shoal's ssync), shared by sender and receiver.

Public: :data:`OP_HEADER`, the op names, :func:`encode_frame_header`, :func:`read_frame_header`,
:class:`FileOffer`, :func:`offers_of_dir`, :class:`WireError`, the limits.

Object replication is three requests, each ``POST /<device>/<partition>`` with
``X-Backend-Object-Replication: <op>`` and ``X-Backend-Storage-Policy-Index``. Swift uses the
verbs REPLICATE and SSYNC; aiohttp's parser (llhttp) accepts only registered methods, so the op
travels in a header, as for database replication.

``hashes``
    body msgpack ``{"recalculate": [suffix, ...], "max_age_s": float | None}`` → msgpack
    ``{suffix: hash}`` (the peer's :func:`objectd.suffix_hashes.get_hashes`).
``missing_check``
    body msgpack ``{"offers": [[hash, state_name, meta_name], ...]}`` (names may be None) → msgpack
    ``{"wanted": {hash: [want_state, want_meta]}}``: what the peer lacks or has older.
``receive``
    a streamed body of frames, each a 4-byte big-endian length, a msgpack header
    ``{"hash", "name", "size", "body_bytes"}`` and ``size`` bytes of the file exactly as it is on
    disk (body, metadata trailer, footer); a zero length ends the stream. Answer msgpack
    ``{"received": n, "skipped": n, "failed": [[hash, name, reason], ...]}``. The receiver checks
    each file (footer, metadata checksum, size and MD5 of a ``.data``) before linking it, so a
    corrupt copy never spreads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from typing import Any

import msgpack

from objectd.metadata import DATA, META, TOMBSTONE, choose_files, parse_file_name

OP_HEADER = "X-Backend-Object-Replication"
OP_HASHES, OP_MISSING_CHECK, OP_RECEIVE = "hashes", "missing_check", "receive"

FRAME_HEADER_BYTES_MAX = 4096
"""A frame header is a hash, a file name and two integers: far below this."""

OFFERS_MAX = 10_000
"""Objects offered by one missing_check request: bounds the request body (~1 MB) and the
receiver's work per request; a larger partition is offered in several batches."""

CONTROL_BODY_BYTES_MAX = 4 * 1024 * 1024
"""The msgpack body of a hashes or missing_check request (10,000 offers of ~100 bytes)."""

_LENGTH = struct.Struct(">I")
_EXTENSIONS = (DATA, META, TOMBSTONE)


class WireError(Exception):
    """The peer sent something that is not this protocol."""


def is_hash(text: object) -> bool:
    """32 lower-case hex digits: safe as a directory name."""
    return isinstance(text, str) and len(text) == 32 and all(c in "0123456789abcdef" for c in text)


@dataclasses.dataclass(frozen=True, slots=True)
class FileOffer:
    """One object directory as the sender sees it: its hash and its deciding file names."""

    name_hash: str
    state_name: str | None  # <ts>.data or <ts>.ts
    meta_name: str | None  # <ts>.meta

    def as_list(self) -> list[Any]:
        return [self.name_hash, self.state_name, self.meta_name]

    @classmethod
    def of(cls, item: Any) -> FileOffer:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise WireError(f"bad offer {item!r}")
        name_hash, state_name, meta_name = item
        if not is_hash(name_hash):
            raise WireError(f"bad hash in offer {item!r}")
        for name in (state_name, meta_name):
            if name is not None and (not isinstance(name, str) or parse_file_name(name) is None):
                raise WireError(f"bad file name in offer {item!r}")
        return cls(name_hash, state_name, meta_name)


def offers_of_dir(hash_dir: str) -> FileOffer | None:
    """What an object directory holds (blocking), or None when it holds nothing."""
    try:
        files = choose_files(os.listdir(hash_dir))
    except (FileNotFoundError, NotADirectoryError):
        return None
    state = files.data or files.tombstone
    if state is None and files.meta is None:
        return None
    return FileOffer(os.path.basename(hash_dir), state, files.meta)


def wanted_of(local_names: list[str], offer: FileOffer) -> tuple[bool, bool]:
    """Whether a receiver holding ``local_names`` wants the offered state and meta files.

    It wants a file that is newer than what decides its own state; a ``.meta`` only when it is
    newer than its own ``.meta`` and than the state the object will have.
    """
    local = choose_files(local_names)
    want_state = False
    if offer.state_name is not None:
        offered = parse_file_name(offer.state_name)
        assert offered is not None
        want_state = local.state_timestamp is None or offered[0] > local.state_timestamp
    want_meta = False
    if offer.meta_name is not None:
        meta = parse_file_name(offer.meta_name)
        assert meta is not None
        newest_state = local.state_timestamp
        if want_state and offer.state_name is not None:
            newest_state = parse_file_name(offer.state_name)[0]  # type: ignore[index]
        newer_than_meta = local.meta_timestamp is None or meta[0] > local.meta_timestamp
        newer_than_state = newest_state is None or meta[0] > newest_state
        want_meta = newer_than_meta and newer_than_state
    return want_state, want_meta


def encode_frame_header(name_hash: str, name: str, size: int, body_bytes: int) -> bytes:
    header = msgpack.packb(
        {"hash": name_hash, "name": name, "size": size, "body_bytes": body_bytes},
        use_bin_type=True,
    )
    return _LENGTH.pack(len(header)) + header


def end_frame() -> bytes:
    return _LENGTH.pack(0)


async def read_frame_header(content: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame header from a request body, or None at the end frame.

    Raises:
        WireError: a header that is too long, not msgpack or misses a field.
        asyncio.IncompleteReadError: the body ended inside a frame.
    """
    (length,) = _LENGTH.unpack(await content.readexactly(_LENGTH.size))
    if length == 0:
        return None
    if length > FRAME_HEADER_BYTES_MAX:
        raise WireError(f"frame header of {length} bytes")
    try:
        header = msgpack.unpackb(await content.readexactly(length), raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"frame header is not msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("frame header is not a map")
    name_hash, name = header.get("hash"), header.get("name")
    size, body_bytes = header.get("size"), header.get("body_bytes")
    if not (is_hash(name_hash) and isinstance(name, str)):
        raise WireError(f"bad frame header {header!r}")
    if parse_file_name(name) is None or "/" in name:
        raise WireError(f"bad file name {name!r}")
    if not (isinstance(size, int) and isinstance(body_bytes, int) and 0 <= body_bytes <= size):
        raise WireError(f"bad sizes in frame header {header!r}")
    return header
