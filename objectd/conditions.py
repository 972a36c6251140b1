"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
If-Range; evaluated as Swift's swob does, so the proxy's answers match Swift's.

Public: :func:`conditional_status`, :func:`etag_in`, :func:`range_applies`.

Order (swob ``_get_conditional_response_status``): If-None-Match matching → 304; If-Match not
matching → 412; If-Modified-Since not older than Last-Modified → 304; If-Unmodified-Since older
than Last-Modified → 412. Last-Modified is the X-Timestamp rounded up to the second.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping

from objectd.object_headers import normalize_etag


def etag_in(header: str, etag: str) -> bool:
    """Whether ``etag`` matches the ETag list in an If-Match/If-None-Match header value."""
    tags = {normalize_etag(tag.strip()) for tag in header.split(",") if tag.strip()}
    return "*" in tags or etag in tags


def _http_date_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.timestamp()


def conditional_status(headers: Mapping[str, str], etag: str, last_modified_s: int) -> int | None:
    """304, 412, or None to proceed, for an existing object with ``etag``.

    ``last_modified_s`` is Last-Modified in whole seconds (the X-Timestamp rounded up).
    """
    if_none_match = headers.get("If-None-Match")
    if if_none_match and etag_in(if_none_match, etag):
        return 304
    if_match = headers.get("If-Match")
    if if_match and not etag_in(if_match, etag):
        return 412
    modified_since = _http_date_seconds(headers.get("If-Modified-Since"))
    if modified_since is not None and last_modified_s <= modified_since:
        return 304
    unmodified_since = _http_date_seconds(headers.get("If-Unmodified-Since"))
    if unmodified_since is not None and last_modified_s > unmodified_since:
        return 412
    return None


def range_applies(headers: Mapping[str, str], etag: str, last_modified_s: int) -> bool:
    """If-Range: the Range header applies only if the validator still matches."""
    if_range = headers.get("If-Range")
    if not if_range:
        return True
    since = _http_date_seconds(if_range)
    if since is not None:
        return last_modified_s <= since
    return normalize_etag(if_range.strip()) == etag
