"""Request paths: ``/v1/<account>[/<container>[/<object>]]`` → :class:`SwiftPath`; nothing else.

Public: :class:`SwiftPath`, :func:`parse_path`, :func:`check_names`.

The raw (still percent-encoded) path is split on its first four ``/`` before decoding, so an
object name keeps its own ``/`` and ``%2F`` and its ``.``/``..`` segments; a name that is not
UTF-8 or holds NUL is refused with 412, as Swift does.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote_to_bytes

from proxy import limits
from proxy.errors import SwiftError


@dataclasses.dataclass(frozen=True, slots=True)
class SwiftPath:
    version: str
    account: str
    container: str | None = None
    obj: str | None = None

    @property
    def kind(self) -> str:
        """``account``, ``container`` or ``object``."""
        if self.obj is not None:
            return "object"
        if self.container is not None:
            return "container"
        return "account"


def _decode(segment: str) -> str:
    raw = unquote_to_bytes(segment)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SwiftError(412, "Invalid UTF8 or contains NULL") from None
    if "\x00" in text:
        raise SwiftError(412, "Invalid UTF8 or contains NULL")
    return text


def parse_path(raw_path: str) -> SwiftPath | None:
    """The Swift path of ``raw_path`` (no query), or None if it is not a ``/v1/...`` path.

    Raises:
        SwiftError: 412 for a name that is not UTF-8 or holds NUL; 400 for an empty account.
    """
    parts = raw_path.split("/", 4)  # "", version, account, container, object
    if len(parts) < 3 or parts[0] != "" or parts[1] not in limits.VALID_API_VERSIONS:
        return None
    account = _decode(parts[2])
    if not account:
        raise SwiftError(400, "Invalid path")
    container = _decode(parts[3]) if len(parts) > 3 else None
    obj = _decode(parts[4]) if len(parts) > 4 else None
    if container == "" and obj is None:
        container = None  # "/v1/a/" is the account
    if obj == "":
        obj = None  # "/v1/a/c/" is the container
    if container == "" and obj is not None:
        raise SwiftError(412, "Invalid path")  # "/v1/a//o"
    return SwiftPath(parts[1], account, container, obj)


def check_names(path: SwiftPath) -> None:
    """Swift's name length constraints.

    Raises:
        SwiftError: 400 naming the limit that was passed.
    """
    if len(path.account.encode()) > limits.MAX_ACCOUNT_NAME_LENGTH:
        raise SwiftError(
            400,
            f"Account name length of {len(path.account.encode())} longer than "
            f"{limits.MAX_ACCOUNT_NAME_LENGTH}",
        )
    if path.container is not None:
        length = len(path.container.encode())
        if length > limits.MAX_CONTAINER_NAME_LENGTH:
            raise SwiftError(
                400,
                f"Container name length of {length} longer than {limits.MAX_CONTAINER_NAME_LENGTH}",
            )
    if path.obj is not None:
        length = len(path.obj.encode())
        if length > limits.MAX_OBJECT_NAME_LENGTH:
            raise SwiftError(
                400,
                f"Object name length of {length} longer than {limits.MAX_OBJECT_NAME_LENGTH}",
            )
