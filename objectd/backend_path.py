"""Parse the backend request path: ``/<device>/<partition>/<account>[/<container>[/<object>]]``.

Public: :class:`BackendPath`, :func:`parse_backend_path`, :func:`parse_query`,
:func:`valid_device_name`.

The path is split from the raw request target, before any percent-decoding, so that an encoded
``/`` in an object name stays part of the name, and ``.``/``..`` segments are never normalised
away (Swift allows both in object names). Each piece is then decoded as UTF-8; a piece that is not
valid UTF-8 or contains NUL is refused with 412, as Swift does.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import parse_qsl, unquote

from objectd.errors import BadRequest, PreconditionFailed

_DEVICE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def valid_device_name(name: str) -> bool:
    """Device names are plain directory names: no ``/``, no leading dot."""
    return len(name) <= 255 and bool(_DEVICE_RE.match(name))


@dataclasses.dataclass(frozen=True, slots=True)
class BackendPath:
    device: str
    partition: int
    account: str
    container: str | None = None
    obj: str | None = None

    @property
    def name(self) -> str:
        """``/account[/container[/object]]``: the name stored in metadata and hashed."""
        parts = [self.account]
        if self.container is not None:
            parts.append(self.container)
        if self.obj is not None:
            parts.append(self.obj)
        return "/" + "/".join(parts)


def _decode(piece: str, what: str) -> str:
    try:
        text = unquote(piece, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise PreconditionFailed(f"invalid UTF-8 in {what}") from None
    if "\x00" in text:
        raise PreconditionFailed(f"NUL in {what}")
    return text


def parse_backend_path(raw_path: str) -> BackendPath:
    """Split the path of a raw request target (query string already removed or not).

    Raises:
        BadRequest: too few segments, a bad device name, a partition that is not a
            non-negative integer, or an empty account, container or object name.
        PreconditionFailed: a name that is not UTF-8 or holds NUL.
    """
    path = raw_path.partition("?")[0]
    segments = path.split("/", 5)
    if len(segments) < 4 or segments[0] != "":
        raise BadRequest(f"expected /device/partition/account[/container[/object]], got {path!r}")
    device = _decode(segments[1], "device")
    if not valid_device_name(device):
        raise BadRequest(f"bad device name {device!r}")
    partition_text = segments[2]
    if not partition_text.isdigit() or len(partition_text) > 10:
        raise BadRequest(f"bad partition {partition_text!r}")
    names = [_decode(piece, "path") for piece in segments[3:]]
    if any(not name for name in names):
        raise BadRequest("empty account, container or object name")
    account = names[0]
    container = names[1] if len(names) > 1 else None
    obj = names[2] if len(names) > 2 else None
    return BackendPath(device, int(partition_text), account, container, obj)


def parse_query(raw_path: str) -> dict[str, str]:
    """The query parameters of a raw request target (``+`` is a space, as in Swift)."""
    query = raw_path.partition("?")[2]
    if not query:
        return {}
    try:
        return dict(parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict"))
    except UnicodeDecodeError:
        raise PreconditionFailed("invalid UTF-8 in the query string") from None
