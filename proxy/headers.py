"""Which headers pass between client and backend, and Swift's metadata constraints.

Public: :func:`check_metadata`, :func:`client_headers`, :func:`object_backend_headers`,
:func:`metadata_headers`, :func:`delete_at`, :data:`OBJECT_ALLOWED_HEADERS`.

Clients never set or see ``X-Backend-*`` and ``*-Sysmeta-*`` headers (Swift's gatekeeper): they
are internal to the cluster. Hop-by-hop headers are the HTTP layer's business.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from multidict import CIMultiDict

from proxy import limits
from proxy.errors import SwiftError

OBJECT_ALLOWED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Cache-Control",
        "Expires",
        "X-Delete-At",
        "X-Object-Manifest",
        "X-Robots-Tag",
    )
)
_HIDDEN_PREFIXES = ("x-backend-", "x-object-sysmeta-", "x-container-sysmeta-", "x-account-sysmeta-",
                    "x-object-transient-sysmeta-")  # fmt: skip
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "server", "date", "content-length")
)
CONTAINER_BACKEND_HEADERS = frozenset(
    h.lower()
    for h in (
        "X-Container-Read",
        "X-Container-Write",
        "X-Container-Sync-To",
        "X-Container-Sync-Key",
        "X-Versions-Location",
        "X-History-Location",
    )
)


def _is_hidden(name: str) -> bool:
    return name.lower().startswith(_HIDDEN_PREFIXES)


def check_metadata(headers: Mapping[str, str], kind: str) -> None:
    """Swift's ``check_metadata`` for ``X-<kind>-Meta-*`` request headers.

    Raises:
        SwiftError: 400 with Swift's message for an empty or long name, a long value, too many
        items or too many bytes in all.
    """
    prefix = f"x-{kind}-meta-"
    count = 0
    size = 0
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(prefix):
            continue
        key = lower[len(prefix) :]
        if not key:
            raise SwiftError(400, "Metadata name cannot be empty")
        count += 1
        size += len(key.encode()) + len(value.encode())
        if len(key.encode()) > limits.MAX_META_NAME_LENGTH:
            raise SwiftError(
                400, f"Metadata name too long: {name}; max {limits.MAX_META_NAME_LENGTH}"
            )
        if len(value.encode()) > limits.MAX_META_VALUE_LENGTH:
            raise SwiftError(
                400, f"Metadata value longer than {limits.MAX_META_VALUE_LENGTH}: {name}"
            )
        if count > limits.MAX_META_COUNT:
            raise SwiftError(400, f"Too many metadata items; max {limits.MAX_META_COUNT}")
        if size > limits.MAX_META_OVERALL_SIZE:
            raise SwiftError(400, f"Total metadata too large; max {limits.MAX_META_OVERALL_SIZE}")


def client_headers(backend: Mapping[str, str]) -> CIMultiDict[str]:
    """The backend answer's headers a client may see."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in backend.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or _is_hidden(lower):
            continue
        out.add(name, value)
    return out


def metadata_headers(request_headers: Mapping[str, str], kind: str) -> dict[str, str]:
    """``X-<kind>-Meta-*`` and ``X-Remove-<kind>-Meta-*`` (as an empty value) of a request, and
    for containers the ACL/sync/versioning headers Swift stores with the container."""
    prefix = f"x-{kind}-meta-"
    remove = f"x-remove-{kind}-meta-"
    out: dict[str, str] = {}
    for name, value in request_headers.items():
        lower = name.lower()
        if lower.startswith(prefix):
            out[name] = value
        elif lower.startswith(remove):
            out[f"X-{kind.capitalize()}-Meta-" + name[len(remove) :]] = ""
        elif kind == "container" and lower in CONTAINER_BACKEND_HEADERS:
            out[name] = value
        elif (
            kind == "container"
            and lower.startswith("x-remove-")
            and ("x-" + lower[len("x-remove-") :] in CONTAINER_BACKEND_HEADERS)
        ):
            out["X-" + name[len("X-Remove-") :]] = ""
    return out


def object_backend_headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    """The object metadata of a PUT or POST: user metadata and Swift's allowed headers."""
    out: dict[str, str] = {}
    for name, value in request_headers.items():
        lower = name.lower()
        if lower.startswith("x-object-meta-") or lower in OBJECT_ALLOWED_HEADERS:
            out[name] = value
    return out


def delete_at(request_headers: Mapping[str, str]) -> str | None:
    """``X-Delete-At`` from ``X-Delete-At`` or ``X-Delete-After``; None if neither.

    Raises:
        SwiftError: 400 with Swift's messages for a non-integer or past value.
    """
    after = request_headers.get("X-Delete-After")
    if after is not None:
        try:
            seconds = int(after)
        except ValueError:
            raise SwiftError(400, "Non-integer X-Delete-After") from None
        if seconds < 0:
            raise SwiftError(400, "X-Delete-After in past")
        return str(int(time.time() + seconds))
    at = request_headers.get("X-Delete-At")
    if at is None:
        return None
    try:
        when = int(at)
    except ValueError:
        raise SwiftError(400, "Non-integer X-Delete-At") from None
    if when < time.time():
        raise SwiftError(400, "X-Delete-At in past")
    return str(when)
