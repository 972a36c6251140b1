"""Listings in Swift's three formats: JSON (the backend's), XML and plain text.

Public: :func:`choose_format`, :func:`render_listing`, :func:`check_listing_query`.

The format comes from ``?format=`` (``json``, ``xml``, ``plain``), else from ``Accept``, as
Swift's listing_formats middleware does; plain is the default. An empty plain listing is
``204 No Content``; JSON and XML always answer 200 with a document.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from proxy import limits
from proxy.errors import SwiftError

CONTENT_TYPES = {
    "json": "application/json; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
    "plain": "text/plain; charset=utf-8",
}


def choose_format(request: web.Request) -> str:
    fmt = request.query.get("format", "").lower()
    if fmt in ("json", "xml"):
        return fmt
    if fmt in ("plain", "text"):
        return "plain"
    accept = request.headers.get("Accept", "")
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media == "application/json":
            return "json"
        if media in ("application/xml", "text/xml"):
            return "xml"
        if media in ("text/plain", "*/*", "text/*"):
            return "plain"
    return "plain"


def check_listing_query(request: web.Request, limit_max: int) -> dict[str, Any]:
    """The listing parameters to pass on; Swift's 412s for a bad ``limit`` or ``delimiter``."""
    query = request.query
    out: dict[str, Any] = {}
    for key in ("prefix", "delimiter", "marker", "end_marker"):
        if key in query:
            out[key] = query[key]
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise SwiftError(412, "Value of limit must be a positive integer") from None
        if limit < 0:
            raise SwiftError(412, "Value of limit must be a positive integer")
        if limit > limit_max:
            raise SwiftError(412, f"Maximum limit is {limit_max}")
        out["limit"] = limit
    delimiter = query.get("delimiter")
    if delimiter is not None and (len(delimiter) != 1 or ord(delimiter) > 254):
        raise SwiftError(412, "Bad delimiter")
    if query.get("reverse", "").lower() in ("true", "1", "yes", "on", "t", "y"):
        out["reverse"] = True
    return out


assert limits.CONTAINER_LISTING_LIMIT == limits.ACCOUNT_LISTING_LIMIT


def _xml_item(kind: str, item: dict[str, Any]) -> str:
    if "subdir" in item:
        name = escape(item["subdir"])
        return f"<subdir name={quoteattr(item['subdir'])}><name>{name}</name></subdir>"
    fields = (
        ("name", "hash", "bytes", "content_type", "last_modified")
        if kind == "container"
        else ("name", "count", "bytes", "last_modified")
    )
    tag = "object" if kind == "container" else "container"
    inner = "".join(f"<{f}>{escape(str(item[f]))}</{f}>" for f in fields if f in item)
    return f"<{tag}>{inner}</{tag}>"


def render_listing(
    items: list[dict[str, Any]], fmt: str, kind: str, name: str
) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of a listing of ``kind`` (``container``: object rows;
    ``account``: container rows) named ``name``."""
    if fmt == "json":
        return 200, json.dumps(items, ensure_ascii=True).encode(), CONTENT_TYPES["json"]
    if fmt == "xml":
        body = "".join(_xml_item(kind, item) for item in items)
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<{kind} name={quoteattr(name)}>{body}</{kind}>"
        )
        return 200, document.encode(), CONTENT_TYPES["xml"]
    if not items:
        return 204, b"", CONTENT_TYPES["plain"]
    lines = "".join((item.get("subdir") or item["name"]) + "\n" for item in items)
    return 200, lines.encode(), CONTENT_TYPES["plain"]
