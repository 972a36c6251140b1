"""The sending side of object replication: ask a peer for its suffix hashes, offer objects, push
the files it lacks or has older, as a rate-limited stream.

Public: :class:`ReplicationClient`, :class:`SyncResult`, :class:`PeerError`.

Wire format: :mod:`objectd.ssync_wire`. Local disk work runs in threads (``asyncio.to_thread``);
each file is read in ``SEND_READ_BYTES`` pieces, every piece paid for at the rate limiter first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack

from objectd.diskio import DiskIO
from objectd.metadata import CorruptFile, read_file
from objectd.rate_limit import RateLimiter
from objectd.ssync_wire import (
    OFFERS_MAX,
    OP_HASHES,
    OP_HEADER,
    OP_MISSING_CHECK,
    OP_RECEIVE,
    FileOffer,
    encode_frame_header,
    end_frame,
    offers_of_dir,
)
from objectd.suffix_hashes import is_suffix

SEND_READ_BYTES = 256 * 1024
"""One read of a file being sent (and one rate-limiter payment)."""

_IO = DiskIO()


class PeerError(Exception):
    """The peer could not be reached or answered with an error (status in the message)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(slots=True)
class SyncResult:
    """What one sync of some suffixes to one peer achieved."""

    offered: int = 0
    sent: int = 0
    failed: list[list[str]] = dataclasses.field(default_factory=list)
    in_sync: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (hash, file name)

    @property
    def ok(self) -> bool:
        return not self.failed


class ReplicationClient:
    """Object replication requests to peers over one aiohttp session (create inside a loop)."""

    def __init__(self, *, conn_timeout_s: float, node_timeout_s: float, rate: RateLimiter):
        self.rate = rate
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=conn_timeout_s, sock_read=node_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "shoal-replicator"}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, node: dict[str, Any], partition: int, policy: int, op: str,
                    data: Any) -> Any:  # fmt: skip
        host = f"[{node['ip']}]" if ":" in node["ip"] else node["ip"]
        url = f"http://{host}:{node['port']}/{node['device']}/{partition}"
        headers = {OP_HEADER: op, "X-Backend-Storage-Policy-Index": str(policy)}
        try:
            async with self.session.post(url, data=data, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    text = body[:200].decode(errors="replace")
                    raise PeerError(f"{url} {op}: {response.status} {text}", response.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerError(f"{url} {op}: {type(exc).__name__}: {exc}") from exc
        try:
            return msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise PeerError(f"{url} {op}: answer is not msgpack: {exc}") from None

    async def hashes(self, node: dict[str, Any], partition: int, policy: int, *,
                     recalculate: list[str] = (), max_age_s: float | None = None) -> dict[str, str]:  # fmt: skip
        body = msgpack.packb({"recalculate": list(recalculate), "max_age_s": max_age_s})
        answer = await self._post(node, partition, policy, OP_HASHES, body)
        if not isinstance(answer, dict):
            raise PeerError(f"hashes answer is not a map: {answer!r}")
        return {k: v for k, v in answer.items() if is_suffix(k) and isinstance(v, str)}

    async def sync(self, node: dict[str, Any], partition: int, policy: int, partition_dir: str,
                   suffixes: list[str]) -> SyncResult:  # fmt: skip
        """Offer every object of ``suffixes`` to ``node`` and send what it wants.

        Raises:
            PeerError: the peer is unreachable or refused a request.
        """
        result = SyncResult()
        offers = await asyncio.to_thread(_collect_offers, partition_dir, suffixes)
        for start in range(0, len(offers), OFFERS_MAX):
            batch = offers[start : start + OFFERS_MAX]
            result.offered += len(batch)
            body = msgpack.packb({"offers": [offer.as_list() for offer in batch]})
            answer = await self._post(node, partition, policy, OP_MISSING_CHECK, body)
            wanted = answer.get("wanted", {}) if isinstance(answer, dict) else {}
            to_send = []
            for offer in batch:
                want_state, want_meta = wanted.get(offer.name_hash, (False, False))
                for name, want in ((offer.state_name, want_state), (offer.meta_name, want_meta)):
                    if name is None:
                        continue
                    if want:
                        to_send.append((offer.name_hash, name))
                    else:
                        result.in_sync.add((offer.name_hash, name))
            if to_send:
                await self._send_files(node, partition, policy, partition_dir, to_send, result)
        return result

    async def _send_files(self, node: dict[str, Any], partition: int, policy: int,
                          partition_dir: str, files: list[tuple[str, str]],
                          result: SyncResult) -> None:  # fmt: skip
        sent: list[tuple[str, str]] = []
        stream = self._frames(partition_dir, files, sent)
        answer = await self._post(node, partition, policy, OP_RECEIVE, stream)
        failed = answer.get("failed", []) if isinstance(answer, dict) else []
        result.failed.extend(failed)
        bad = {(item[0], item[1]) for item in failed if len(item) >= 2}
        for item in sent:
            if item not in bad:
                result.in_sync.add(item)
                result.sent += 1

    async def _frames(self, partition_dir: str, files: list[tuple[str, str]],
                      sent: list[tuple[str, str]]) -> AsyncIterator[bytes]:  # fmt: skip
        for name_hash, name in files:
            path = os.path.join(partition_dir, name_hash[-3:], name_hash, name)
            opened = await asyncio.to_thread(_open_for_send, path)
            if opened is None:
                continue  # replaced by a newer write meanwhile: the next pass sends that
            fd, size, body_bytes, whole = opened
            if whole is not None:  # a small file, read in the same hop that opened it
                await self.rate.acquire(size)
                yield encode_frame_header(name_hash, name, size, body_bytes) + whole
                sent.append((name_hash, name))
                continue
            try:
                yield encode_frame_header(name_hash, name, size, body_bytes)
                offset = 0
                while offset < size:
                    count = min(SEND_READ_BYTES, size - offset)
                    await self.rate.acquire(count)
                    piece = await asyncio.to_thread(os.pread, fd, count, offset)
                    if len(piece) != count:
                        raise OSError(f"{path} shrank while being sent")
                    yield piece
                    offset += count
            finally:
                os.close(fd)
            sent.append((name_hash, name))
        yield end_frame()


def _open_for_send(path: str) -> tuple[int, int, int, bytes | None] | None:
    """``(fd, size, body_bytes, whole)`` of a file to send, ``whole`` being its bytes when it
    is small (the fd is then closed already); None if it is gone or corrupt (the auditor or a
    reader quarantines corrupt files; a corrupt copy is never sent)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        body_bytes = read_file(_IO, fd, size).body_bytes
        whole = os.pread(fd, size, 0) if size <= SEND_READ_BYTES else None
    except (CorruptFile, OSError):
        os.close(fd)
        return None
    if whole is not None:
        os.close(fd)
        if len(whole) != size:
            return None  # truncated under us: the next pass sends what is there then
    return fd, size, body_bytes, whole


def _collect_offers(partition_dir: str, suffixes: list[str]) -> list[FileOffer]:
    offers = []
    for suffix in sorted(suffixes):
        suffix_dir = os.path.join(partition_dir, suffix)
        try:
            names = sorted(os.listdir(suffix_dir))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name_hash in names:
            offer = offers_of_dir(os.path.join(suffix_dir, name_hash))
            if offer is not None:
                offers.append(offer)
    return offers
