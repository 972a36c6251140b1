"""Devices of a ring: the record, Swift's ``rRzZ-IP:PORT/DEVICE`` syntax, and search values.

Public: :data:`DEVICE_KEYS`, :func:`parse_add_value`, :func:`parse_search_value`,
:func:`matches`, :func:`validate_device`.

A device is a plain ``dict`` with the keys of :data:`DEVICE_KEYS`; ``get_nodes`` hands the same
dicts to callers (no copy per lookup, which keeps lookups fast), so callers must not mutate them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ring.errors import RingBuilderError

DEVICE_KEYS = ("id", "region", "zone", "ip", "port", "device", "weight", "meta")

# r1z2-10.0.0.1:6200/sdb_meta  or  r1z2-[::1]:6200/sdb ; region is optional (defaults to 1)
_ADD_RE = re.compile(
    r"^(?:r(?P<region>\d+))?z(?P<zone>\d+)-(?P<ip>\[[0-9a-fA-F:.]+\]|[^:/\[\]]+)"
    r":(?P<port>\d+)/(?P<device>[^_\s]+)(?:_(?P<meta>.*))?$"
)
_SEARCH_RE = re.compile(
    r"^(?:d(?P<id>\d+))?(?:r(?P<region>\d+))?(?:z(?P<zone>\d+))?"
    r"(?:-(?P<ip>\[[0-9a-fA-F:.]+\]|[^:/_\[\]]+))?(?::(?P<port>\d+))?"
    r"(?:/(?P<device>[^_]+))?(?:_(?P<meta>.*))?$"
)


def _normalize_ip(text: str) -> str:
    text = text.strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if re.fullmatch(r"[A-Za-z0-9.-]+", text):
            return text  # a host name
        raise RingBuilderError(f"invalid IP address or host name: {text!r}") from None


def parse_add_value(value: str, weight: float | str) -> dict[str, Any]:
    """Parse ``[rR]zZ-IP:PORT/DEVICE[_META]`` and a weight into a device dict (no ``id``)."""
    match = _ADD_RE.match(value.strip())
    if not match:
        raise RingBuilderError(
            f"invalid device {value!r}: expected rREGIONzZONE-IP:PORT/DEVICE, e.g. r1z1-10.0.0.1:6200/sdb"
        )
    device = {
        "region": int(match["region"] or 1),
        "zone": int(match["zone"]),
        "ip": _normalize_ip(match["ip"]),
        "port": int(match["port"]),
        "device": match["device"],
        "weight": parse_weight(weight),
        "meta": match["meta"] or "",
    }
    validate_device(device)
    return device


def parse_weight(weight: float | str) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise RingBuilderError(f"invalid weight {weight!r}: expected a number") from None
    if value != value or value < 0 or value == float("inf"):
        raise RingBuilderError(f"invalid weight {weight!r}: must be a finite number >= 0")
    return value


def validate_device(device: dict[str, Any]) -> None:
    """Raise :class:`RingBuilderError` unless ``device`` is a well-formed device record."""
    for key in ("region", "zone", "port"):
        value = device.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RingBuilderError(f"invalid {key} {value!r}: must be an integer >= 0")
    if not 0 < device["port"] < 65536:
        raise RingBuilderError(f"invalid port {device['port']!r}: must be 1..65535")
    if not device.get("device") or "/" in device["device"]:
        raise RingBuilderError(f"invalid device name {device.get('device')!r}")
    device["ip"] = _normalize_ip(str(device.get("ip", "")))
    device["weight"] = parse_weight(device.get("weight", 0))
    device.setdefault("meta", "")


def parse_search_value(value: str) -> dict[str, Any]:
    """Parse a search value (``d3``, ``r1z2``, ``-10.0.0.1``, ``z1-10.0.0.1:6200/sdb``, ``/sdb``)."""
    text = value.strip()
    if text.isdigit():
        return {"id": int(text)}
    if text and text[0] not in "drz-:/_":
        text = "-" + text  # a bare IP or host name
    match = _SEARCH_RE.match(text)
    if not text or not match or not any(match.groupdict().values()):
        raise RingBuilderError(
            f"invalid search value {value!r}: expected e.g. d3, r1z2, -10.0.0.1:6200/sdb"
        )
    criteria: dict[str, Any] = {}
    for key, raw in match.groupdict().items():
        if raw is None:
            continue
        if key in ("id", "region", "zone", "port"):
            criteria[key] = int(raw)
        elif key == "ip":
            criteria[key] = _normalize_ip(raw)
        else:
            criteria[key] = raw
    return criteria


def matches(device: dict[str, Any], criteria: dict[str, Any]) -> bool:
    return all(device.get(key) == wanted for key, wanted in criteria.items())
