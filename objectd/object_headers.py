"""Which request headers become object metadata, how a ``.meta`` overrides a ``.data``, and
which headers a GET or HEAD returns. Swift's rules, in one place.

Public: :func:`put_metadata`, :func:`post_metadata`, :func:`merge_meta`,
:func:`response_headers`, :func:`normalize_etag`, :func:`delete_at_of`, :data:`METADATA_PREFIXES`.

Stored keys are title-cased header names (``X-Object-Meta-Color``), plus ``name`` (the object's
``/account/container/object``), as in Swift's metadata dictionaries:

- PUT stores ``X-Timestamp``, ``Content-Type``, ``Content-Length``, ``ETag``, every
  ``X-Object-Meta-*``, ``X-Object-Sysmeta-*`` and ``X-Object-Transient-Sysmeta-*`` header, and
  the ``allowed_headers`` of the config (``Content-Disposition``, ``X-Delete-At``, ...).
- POST writes a ``.meta`` with ``X-Timestamp``, user metadata, transient system metadata, the
  allowed headers and (optionally) ``Content-Type``. It *replaces* all of those from the
  ``.data``; system metadata (``X-Object-Sysmeta-*``), size and ETag stay as the PUT left them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from objectd.errors import BadRequest
from objectd.metadata import BODY_CHECKSUM_KEY
from shoal.timestamp import Timestamp

USER_PREFIX = "x-object-meta-"
SYSMETA_PREFIX = "x-object-sysmeta-"
TRANSIENT_PREFIX = "x-object-transient-sysmeta-"
METADATA_PREFIXES = (USER_PREFIX, SYSMETA_PREFIX, TRANSIENT_PREFIX)
_POST_PREFIXES = (USER_PREFIX, TRANSIENT_PREFIX)

# keys that are ours, not headers to return
_INTERNAL_KEYS = frozenset({"name", BODY_CHECKSUM_KEY})


def _title(name: str) -> str:
    return name.title()


def normalize_etag(value: str | None) -> str | None:
    """``"abc"`` → ``abc``; Swift compares ETags without quotes."""
    if value and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value or None


def delete_at_of(value: str | None, *, now: float | None = None) -> int | None:
    """Parse ``X-Delete-At``; with ``now``, refuse a time in the past (as Swift's PUT/POST).

    Raises:
        BadRequest: not an integer, or in the past.
    """
    if value is None or value == "":
        return None
    try:
        delete_at = int(value)
    except ValueError:
        raise BadRequest(f"non-integer X-Delete-At {value!r}") from None
    if now is not None and delete_at <= now:
        raise BadRequest("X-Delete-At in past")
    return delete_at


def _selected(
    headers: Mapping[str, str], prefixes: tuple[str, ...], allowed: frozenset[str]
) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower.startswith(prefixes) or lower in allowed:
            chosen[_title(key)] = value
    return chosen


def put_metadata(
    headers: Mapping[str, str], name: str, timestamp: Timestamp, allowed: frozenset[str]
) -> dict[str, str]:
    """Metadata of a new ``.data`` (``ETag`` and ``Content-Length`` are added at commit).

    ``allowed`` holds the lower-cased allowed header names.

    Raises:
        BadRequest: no Content-Type.
    """
    content_type = headers.get("Content-Type")
    if not content_type:
        raise BadRequest("No content type")
    metadata = _selected(headers, METADATA_PREFIXES, allowed)
    metadata["name"] = name
    metadata["X-Timestamp"] = timestamp.internal
    metadata["Content-Type"] = content_type
    return metadata


def post_metadata(
    headers: Mapping[str, str], name: str, timestamp: Timestamp, allowed: frozenset[str]
) -> dict[str, str]:
    """Metadata of a ``.meta`` written by POST."""
    metadata = _selected(headers, _POST_PREFIXES, allowed)
    metadata["name"] = name
    metadata["X-Timestamp"] = timestamp.internal
    if headers.get("Content-Type"):
        metadata["Content-Type"] = headers["Content-Type"]
    return metadata


def merge_meta(
    data_metadata: dict[str, str], meta_metadata: dict[str, str] | None, allowed: frozenset[str]
) -> dict[str, str]:
    """What a reader sees: the ``.data``'s metadata, the ``.meta``'s replacing what POST owns."""
    if not meta_metadata:
        return data_metadata
    merged = {
        key: value
        for key, value in data_metadata.items()
        if not (key.lower().startswith(_POST_PREFIXES) or key.lower() in allowed)
    }
    merged.update(meta_metadata)
    return merged


def response_headers(
    metadata: dict[str, str], data_timestamp: Timestamp, timestamp: Timestamp
) -> dict[str, str]:
    """Headers of a GET/HEAD: the stored metadata plus Swift's computed ones.

    ``Content-Length`` is left to the caller (it differs for ranges).
    """
    headers = {
        key: value
        for key, value in metadata.items()
        if key not in _INTERNAL_KEYS and key != "Content-Length"
    }
    headers["X-Timestamp"] = timestamp.normal
    headers["X-Backend-Timestamp"] = timestamp.internal
    headers["X-Backend-Data-Timestamp"] = data_timestamp.internal
    headers["X-Backend-Durable-Timestamp"] = data_timestamp.internal
    headers["Last-Modified"] = timestamp.http_date()
    headers["Accept-Ranges"] = "bytes"
    return headers


def lowered(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)
