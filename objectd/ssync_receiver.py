"""The receiving side of object replication: suffix hashes, missing check, file receive.

Public: :class:`ReplicationReceiver`.

Wire format and ops: :mod:`objectd.ssync_wire`. Every disk step runs on the device's threads.

A received file goes through the same durable path as a PUT (temp file on the device, fsync,
link into place, fsync of the directory) and is checked before it is linked: footer, metadata
checksum, and for a ``.data`` its size and MD5 against the ETag it records. It is linked only if
it is newer than what decides the object's state here (newest timestamp wins); files it makes
obsolete are removed, and its suffix is marked stale in the partition's hash cache *before*
the link, so a crash in between costs a rehash, never a missed change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
from typing import Any

import msgpack
from aiohttp import web

from objectd.devices import Devices
from objectd.disk_write import TempFile, link_into
from objectd.errors import BadRequest, ClientDisconnect, RequestTimeout
from objectd.layout import Layout
from objectd.limits import METADATA_BYTES_MAX, TRAILER_READ_BYTES, WRITE_BUFFER_BYTES
from objectd.metadata import DATA, FOOTER_BYTES, CorruptFile, choose_files, read_file
from objectd.ssync_wire import (
    CONTROL_BODY_BYTES_MAX,
    OFFERS_MAX,
    FileOffer,
    WireError,
    read_frame_header,
    wanted_of,
)
from objectd.suffix_hashes import get_hashes, invalidate_suffix, partition_path
from ring.hashing import hash_suffix

log = logging.getLogger("objectd.replication")

RECEIVE_READ_TIMEOUT_S = 60.0
"""Longest wait for the next bytes of a replication stream (the sender is rate-limited, never
idle for long; a sender that stalls this long is gone)."""


@dataclasses.dataclass(slots=True)
class _Target:
    devices: Devices
    device: str
    partition_dir: str
    name_hash: str
    name: str
    invalidated: set[str]  # suffixes this request already marked stale (once is enough)

    @property
    def hash_dir(self) -> str:
        return os.path.join(self.partition_dir, hash_suffix(self.name_hash), self.name_hash)


class ReplicationReceiver:
    """Serves the three object replication ops for one objectd."""

    def __init__(self, devices: Devices, layout: Layout):
        self.devices = devices
        self.layout = layout

    async def hashes(self, request: web.Request, device: str, partition: int, policy: int):
        body = await _read_control_body(request)
        recalculate = [s for s in body.get("recalculate") or [] if isinstance(s, str)]
        max_age_s = body.get("max_age_s")
        if max_age_s is not None and not isinstance(max_age_s, int | float):
            raise BadRequest("max_age_s must be a number")
        part_dir = partition_path(self.layout, device, policy, partition)
        hashes = await self.devices.run(
            device, _hashes_checked, self.devices, device, part_dir, recalculate, max_age_s
        )
        return web.Response(body=msgpack.packb(hashes), content_type="application/msgpack")

    async def missing_check(self, request: web.Request, device: str, partition: int, policy: int):
        body = await _read_control_body(request)
        offers_raw = body.get("offers")
        if not isinstance(offers_raw, list) or len(offers_raw) > OFFERS_MAX:
            raise BadRequest(f"offers must be a list of at most {OFFERS_MAX}")
        try:
            offers = [FileOffer.of(item) for item in offers_raw]
        except WireError as exc:
            raise BadRequest(str(exc)) from None
        part_dir = partition_path(self.layout, device, policy, partition)
        wanted = await self.devices.run(device, _wanted, self.devices, device, part_dir, offers)
        return web.Response(
            body=msgpack.packb({"wanted": wanted}), content_type="application/msgpack"
        )

    async def receive(self, request: web.Request, device: str, partition: int, policy: int):
        part_dir = partition_path(self.layout, device, policy, partition)
        await self.devices.run(device, self.devices.check, device)
        received = skipped = 0
        failed: list[list[str]] = []
        invalidated: set[str] = set()
        while True:
            try:
                async with asyncio.timeout(RECEIVE_READ_TIMEOUT_S):
                    header = await read_frame_header(request.content)
            except WireError as exc:
                raise BadRequest(str(exc)) from None
            except TimeoutError:
                raise RequestTimeout("replication stream stalled") from None
            except (asyncio.IncompleteReadError, OSError) as exc:
                raise ClientDisconnect(f"replication stream ended early: {exc!r}") from None
            if header is None:
                break
            if header["size"] - header["body_bytes"] > METADATA_BYTES_MAX + FOOTER_BYTES:
                raise BadRequest(f"frame of {header['name']} announces an oversized trailer")
            target = _Target(
                self.devices, device, part_dir, header["hash"], header["name"], invalidated
            )
            outcome = await self._receive_file(
                request, target, header["size"], header["body_bytes"]
            )
            if outcome == "linked":
                received += 1
            elif outcome == "skipped":
                skipped += 1
            else:
                failed.append([target.name_hash, target.name, outcome])
        if invalidated:  # again after the last link: a rehash that ran meanwhile saw too little
            await self.devices.run(device, _invalidate_all, part_dir, sorted(invalidated))
        answer = {"received": received, "skipped": skipped, "failed": failed}
        return web.Response(body=msgpack.packb(answer), content_type="application/msgpack")

    async def _receive_file(self, request: web.Request, target: _Target, size: int,
                            body_bytes: int) -> str:  # fmt: skip
        """Stream one file into a temp file, check it, link it; "linked", "skipped" or why not.

        A file of at most one write buffer (most objects) is read whole and handled in one
        hop to the disk thread."""
        devices, device = self.devices, target.device
        if size <= WRITE_BUFFER_BYTES:
            piece = await _read_exactly(request, size)
            return await devices.run(device, _receive_small, target, piece, body_bytes)
        temp = await devices.run(device, TempFile, devices, device)
        try:
            md5 = hashlib.md5()
            tail = _Tail(size, body_bytes)
            remaining, offset = size, 0
            while remaining > 0:
                piece = await _read_exactly(request, min(remaining, WRITE_BUFFER_BYTES))
                if offset < body_bytes:
                    md5.update(piece[: body_bytes - offset])
                tail.add(offset, piece)
                await devices.run(device, devices.io.write, temp.fd, piece)
                offset += len(piece)
                remaining -= len(piece)
            return await devices.run(device, _check_and_link, target, temp, tail, md5.hexdigest())
        finally:
            await devices.run(device, temp.close)


async def _read_exactly(request: web.Request, count: int) -> bytes:
    if count == 0:
        return b""
    try:
        async with asyncio.timeout(RECEIVE_READ_TIMEOUT_S):
            return await request.content.readexactly(count)
    except TimeoutError:
        raise RequestTimeout("replication stream stalled") from None
    except (asyncio.IncompleteReadError, OSError) as exc:
        raise ClientDisconnect(f"replication stream ended early: {exc!r}") from None


def _receive_small(target: _Target, data: bytes, body_bytes: int) -> str:
    """A whole small file in one disk hop: temp file, write, check, link (see _check_and_link)."""
    temp = TempFile(target.devices, target.device)
    try:
        target.devices.io.write(temp.fd, data)
        tail = _Tail(len(data), body_bytes)
        tail.add(0, data)
        return _check_and_link(target, temp, tail, hashlib.md5(data[:body_bytes]).hexdigest())
    finally:
        temp.close()


def _invalidate_all(part_dir: str, suffixes: list[str]) -> None:
    for suffix in suffixes:
        invalidate_suffix(part_dir, suffix)


def _hashes_checked(devices: Devices, device: str, part_dir: str, recalculate: list[str],
                    max_age_s: float | None) -> dict[str, str]:  # fmt: skip
    devices.check(device)
    return get_hashes(part_dir, recalculate=recalculate, max_age_s=max_age_s)


def _wanted(devices: Devices, device: str, part_dir: str,
            offers: list[FileOffer]) -> dict[str, list[bool]]:  # fmt: skip
    devices.check(device)
    wanted: dict[str, list[bool]] = {}
    for offer in offers:
        hash_dir = os.path.join(part_dir, hash_suffix(offer.name_hash), offer.name_hash)
        try:
            names = os.listdir(hash_dir)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        want_state, want_meta = wanted_of(names, offer)
        if want_state or want_meta:
            wanted[offer.name_hash] = [want_state, want_meta]
    return wanted


class _Tail:
    """The last bytes of a file being received: enough to check its trailer without reading the
    temp file back (it is write-only). A trailer longer than any reader accepts is corrupt."""

    def __init__(self, size: int, body_bytes: int):
        self.size = size
        self.start = max(0, min(body_bytes, size - TRAILER_READ_BYTES))
        self.data = bytearray()

    def add(self, offset: int, piece: bytes) -> None:
        end = offset + len(piece)
        if end > self.start:
            self.data += piece[max(0, self.start - offset) :]

    def pread(self, _fd: int, count: int, offset: int) -> bytes:
        if offset < self.start:
            raise CorruptFile("trailer starts before the bytes kept for it")
        return bytes(self.data[offset - self.start : offset - self.start + count])


def _check_and_link(target: _Target, temp: TempFile, tail: _Tail, body_md5: str) -> str:
    devices = target.devices
    io = devices.io
    try:
        if tail.size - tail.start > METADATA_BYTES_MAX + FOOTER_BYTES + TRAILER_READ_BYTES:
            raise CorruptFile(f"trailer of {tail.size - tail.start} bytes")
        data = read_file(tail, -1, tail.size)  # type: ignore[arg-type]
    except CorruptFile as exc:
        return f"corrupt: {exc}"
    if target.name.endswith(DATA):
        if data.metadata.get("ETag") != body_md5:
            return "corrupt: MD5 of the body does not match its ETag"
        if data.metadata.get("Content-Length") != str(data.body_bytes):
            return "corrupt: size does not match Content-Length"
    io.fsync(temp.fd)
    hash_dir = target.hash_dir
    try:
        names = io.listdir(hash_dir)
    except FileNotFoundError:
        names = []
    chosen = choose_files([*names, target.name])
    if target.name in names or target.name in chosen.obsolete:
        return "skipped"  # we hold it already, or something newer
    suffix = hash_suffix(target.name_hash)
    if suffix not in target.invalidated:
        io.makedirs(target.partition_dir)
        invalidate_suffix(target.partition_dir, suffix)
        target.invalidated.add(suffix)
    try:
        link_into(devices, temp, hash_dir, target.name)
    except FileExistsError:
        return "skipped"
    for obsolete in chosen.obsolete:
        try:
            io.unlink(os.path.join(hash_dir, obsolete))
        except FileNotFoundError:
            pass
    return "linked"


async def _read_control_body(request: web.Request) -> dict[str, Any]:
    length = request.content_length
    if length is None or length > CONTROL_BODY_BYTES_MAX:
        raise BadRequest(f"replication body needs a Content-Length <= {CONTROL_BODY_BYTES_MAX}")
    try:
        body = (
            msgpack.unpackb(await request.content.readexactly(length), raw=False) if length else {}
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise BadRequest(f"replication body is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("replication body must be a map")
    return body
