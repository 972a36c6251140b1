"""Headers every backend request may carry: ``X-Timestamp``, the storage-policy index, Expect.

Public: :func:`require_timestamp`, :func:`policy_index_of`, :func:`send_continue`,
:func:`wants_continue`, :func:`is_replication`, :data:`POLICY_INDEX_MAX`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import HttpVersion11, web

from objectd.errors import BadRequest
from shoal.timestamp import Timestamp, TimestampError

POLICY_INDEX_MAX = 65_535
"""Storage-policy indexes are small integers; bounding them bounds the directory names."""


def require_timestamp(headers: Mapping[str, str], name: str = "X-Timestamp") -> Timestamp:
    """The request's timestamp. Raises BadRequest if missing or invalid (every write has one)."""
    value = headers.get(name)
    if not value:
        raise BadRequest(f"Missing {name} header")
    try:
        return Timestamp.parse(value)
    except TimestampError:
        raise BadRequest(f"Invalid {name} {value!r}") from None


def optional_timestamp(headers: Mapping[str, str], name: str) -> Timestamp | None:
    return require_timestamp(headers, name) if headers.get(name) else None


def policy_index_of(headers: Mapping[str, str]) -> int:
    """``X-Backend-Storage-Policy-Index`` (0 when absent). Raises BadRequest if malformed."""
    value = headers.get("X-Backend-Storage-Policy-Index")
    if value is None or value == "":
        return 0
    if not value.isdigit() or int(value) > POLICY_INDEX_MAX:
        raise BadRequest(f"Invalid X-Backend-Storage-Policy-Index {value!r}")
    return int(value)


def is_replication(headers: Mapping[str, str]) -> bool:
    """``X-Backend-Replication: true``: a replicator moving data as it is (Swift's header): an
    expired object is still readable and may still be written."""
    return headers.get("X-Backend-Replication", "").lower() in ("true", "yes", "1")


def wants_continue(request: web.Request) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


async def send_continue(request: web.Request) -> None:
    """Tell a client that sent ``Expect: 100-continue`` to send the body now."""
    if request.version >= HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
