"""HTTP pieces shared by the container and account servers: metadata headers, listings,
replication bodies (POST with X-Backend-Replicate).

Public: :func:`metadata_updates`, :func:`encode_listing`, :func:`listing_response`,
:func:`read_json_body`, :func:`get_items_args`, :func:`merge_info_op`,
:data:`CONTAINER_META`, :data:`ACCOUNT_META`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from objectd.db import Brokers, parse_get_items_args
from objectd.errors import BadRequest
from objectd.limits import REPLICATE_BODY_BYTES_MAX

CONTAINER_META = (
    ("x-container-meta-", "x-container-sysmeta-"),
    frozenset(
        {
            "x-container-read",
            "x-container-write",
            "x-container-sync-key",
            "x-container-sync-to",
            "x-versions-location",
            "x-history-location",
        }
    ),
)
ACCOUNT_META = (("x-account-meta-", "x-account-sysmeta-"), frozenset())


def metadata_updates(
    headers: Mapping[str, str], kind: tuple[tuple[str, ...], frozenset[str]]
) -> dict[str, str]:
    """The metadata headers of a request (title-cased); an empty value deletes the key.

    ``X-Remove-Container-Meta-Foo`` (and the account form) also deletes, as in Swift.
    """
    prefixes, extra = kind
    updates: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower.startswith(prefixes) or lower in extra:
            updates[key.title()] = value
        elif lower.startswith("x-remove-"):
            target = "x-" + lower[len("x-remove-") :]
            if target.startswith(prefixes) or target in extra:
                updates[("X-" + key[len("x-remove-") :]).title()] = ""
    return updates


def encode_listing(items: list[dict]) -> bytes:
    """The JSON body of a listing; called on the disk thread (10,000 rows take milliseconds of
    CPU that the event loop should not spend)."""
    return json.dumps(items, ensure_ascii=False).encode("utf-8")


def listing_response(body: bytes, headers: dict[str, str]) -> web.Response:
    """A JSON listing (200, ``[]`` when empty): what the proxy asks for."""
    headers["Content-Type"] = "application/json; charset=utf-8"
    return web.Response(body=body, headers=headers)


async def read_json_body(request: web.Request) -> dict[str, Any]:
    """The JSON object body of a replication request (bounded). Raises BadRequest."""
    if request.content_length is None or request.content_length > REPLICATE_BODY_BYTES_MAX:
        raise BadRequest(f"replication body needs a Content-Length <= {REPLICATE_BODY_BYTES_MAX}")
    if request.content_length == 0:  # aiohttp's readexactly(0) raises instead of returning b""
        raise BadRequest('REPLICATE body must be {"op": ...}, not empty')
    try:
        body = await request.content.readexactly(request.content_length)
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"replication body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("op"), str):
        raise BadRequest('REPLICATE body must be {"op": ...}')
    return data


def get_items_args(body: Mapping[str, Any], count_default: int, count_max: int) -> tuple[int, int]:
    """``(since, count)`` of a ``get_items`` op. Raises BadRequest naming the bad field."""
    try:
        return parse_get_items_args(body, count_default, count_max)
    except ValueError as exc:
        raise BadRequest(f"get_items: {exc}") from None


async def merge_info_op(
    brokers: Brokers, device: str, db_path: str, merge: Callable[..., None], body: Mapping
) -> web.Response:
    """A ``merge_info`` op: ``merge`` (container_db's or account_db's) checks the whole info
    before it writes, so a malformed one is a 400 that changed nothing."""
    info = body.get("info", {})
    if not isinstance(info, dict):
        raise BadRequest("merge_info takes an info object")
    try:
        await brokers.run(device, db_path, merge, info)
    except (KeyError, ValueError, TypeError) as exc:
        raise BadRequest(f"bad info: {exc}") from None
    return web.Response(status=204)
