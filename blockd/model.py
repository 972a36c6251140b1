"""What blockd manages: volumes, snapshots, capacity, export details; and how they are named.

Public: :class:`Volume`, :class:`Snapshot`, :class:`Capacity`, :class:`Chap`, :class:`Export`,
:func:`volume_name`, :func:`snapshot_name`, :func:`parse_uuid`, :func:`parse_iqn`, :data:`GiB`.

Names are Cinder's LVM driver's (``volume-<uuid>``, ``_snapshot-<uuid>``: LVM reserves the
``snapshot`` prefix), so an operator sees the same names on a blockd node as on a Cinder LVM node.
Ids are UUIDs, checked on entry, which also keeps every name safe as a file or LV name.
"""

from __future__ import annotations

import dataclasses
import re
import uuid

from blockd.errors import InvalidRequest
from shoal.units import GiB

VOLUME_PREFIX = "volume-"
SNAPSHOT_PREFIX = "_snapshot-"
SIZE_GIB_MAX = 64 * 1024  # 64 TiB: beyond what one node's pool holds; catches unit mistakes
# RFC 3720 iqn. names; eui./naa. forms are accepted too. Bounded (223 bytes is the RFC's limit).
_IQN_RE = re.compile(
    r"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[\x21-\x7e]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$"
)
IQN_BYTES_MAX = 223


def parse_uuid(value: object, what: str) -> str:
    """The canonical lower-case form of a UUID string; InvalidRequest otherwise."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a UUID string, got {value!r}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(f"{what} must be a UUID, got {value!r}") from None


def parse_iqn(value: object, what: str = "initiator") -> str:
    if not isinstance(value, str) or len(value) > IQN_BYTES_MAX or not _IQN_RE.match(value):
        raise InvalidRequest(f"{what} must be an iSCSI name (iqn.YYYY-MM.domain:...): {value!r}")
    return value


def parse_size_gib(value: object, what: str = "size_gib") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= SIZE_GIB_MAX:
        raise InvalidRequest(f"{what} must be an integer number of GiB in 1..{SIZE_GIB_MAX}")
    return value


def volume_name(volume_id: str) -> str:
    return VOLUME_PREFIX + volume_id


def snapshot_name(snapshot_id: str) -> str:
    return SNAPSHOT_PREFIX + snapshot_id


def id_from_name(name: str, prefix: str) -> str | None:
    """The UUID in ``<prefix><uuid>``, or None for any other name (temporary files, foreign LVs)."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    try:
        return str(uuid.UUID(rest)) if len(rest) == 36 else None
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Volume:
    id: str
    size_bytes: int

    @property
    def name(self) -> str:
        return volume_name(self.id)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "size_gib": self.size_bytes // GiB,
            "size_bytes": self.size_bytes,
        }


@dataclasses.dataclass(frozen=True)
class Snapshot:
    id: str
    volume_id: str
    size_bytes: int

    @property
    def name(self) -> str:
        return snapshot_name(self.id)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "volume_id": self.volume_id,
            "size_gib": self.size_bytes // GiB,
            "size_bytes": self.size_bytes,
        }


@dataclasses.dataclass(frozen=True)
class Capacity:
    """What Cinder's scheduler needs, in bytes (the API also reports GiB as Cinder does)."""

    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    volume_count: int
    max_over_subscription_ratio: float
    thin_provisioning_support: bool = True

    def as_dict(self) -> dict:
        return {
            "total_capacity_gb": round(self.total_bytes / GiB, 2),
            "free_capacity_gb": round(self.free_bytes / GiB, 2),
            "provisioned_capacity_gb": round(self.provisioned_bytes / GiB, 2),
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "provisioned_bytes": self.provisioned_bytes,
            "total_volumes": self.volume_count,
            "thin_provisioning_support": self.thin_provisioning_support,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": self.max_over_subscription_ratio,
            "online_extend_support": True,
        }


@dataclasses.dataclass(frozen=True)
class Chap:
    username: str
    password: str


@dataclasses.dataclass(frozen=True)
class Export:
    """Where an initiator finds a volume: what os-brick's iSCSI connector reads."""

    target_iqn: str
    target_portals: tuple[str, ...]
    target_lun: int
    chap: Chap

    def as_dict(self) -> dict:
        return {
            "target_iqn": self.target_iqn,
            "target_portal": self.target_portals[0],
            "target_portals": list(self.target_portals),
            "target_lun": self.target_lun,
            "auth_method": "CHAP",
            "auth_username": self.chap.username,
            "auth_password": self.chap.password,
        }
