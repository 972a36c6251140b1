"""objectd's configuration: one TOML file, every option documented, checked at start-up.

Public: :class:`ObjectdConfig`, :class:`Reserve`, :func:`load_config`, :func:`resolve_seed`.

The file is either a plain TOML document of options or holds them in an ``[objectd]`` table (so
one file can configure several daemons). Swift's spelling is kept where Swift has the option
(``mount_check``, ``fallocate_reserve``, ``devices``, ``bind_ip``, ``bind_port``).

The hash seed: objectd names object directories and databases by ``xxh3_128(seed + path)``
(``ring.hashing``) and computes that hash itself from the request path, as Swift's servers do
with ``swift_hash_path_prefix/suffix``. Operators expect a storage node to be able to find any
object from its name alone (replicator, auditor, ``swift-object-info``-like tools), and a server
that trusted a proxy-supplied hash could be made to file objects under wrong names. The seed is
read from ``<ring_dir>/object.ring`` (the ring carries the cluster secret); ``hash_path_seed``
overrides it, which is what tests and single-node setups use.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from objectd.tmp_reclaim import TMP_RECLAIM_AGE_S_DEFAULT
from ring.ring import Ring
from shoal.config import ConfigError, from_mapping, option, read_toml

DEFAULT_ALLOWED_HEADERS = [
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
    "X-Delete-At",
    "X-Object-Manifest",
    "X-Robots-Tag",
    "X-Static-Large-Object",
]

_RESERVE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Reserve:
    """Free space a device must keep after a write: ``bytes_min`` or ``percent_min`` of it."""

    bytes_min: int = 0
    percent_min: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Reserve:
        """``"1%"`` or ``"10737418240"`` (bytes). Raises ValueError."""
        match = _RESERVE_RE.match(text)
        if not match:
            raise ValueError(f"not a byte count or a percentage: {text!r}")
        number, percent = match.groups()
        if percent:
            value = float(number)
            if not 0 <= value <= 100:
                raise ValueError(f"percentage out of 0..100: {text!r}")
            return cls(percent_min=value)
        return cls(bytes_min=int(float(number)))

    def violated(self, free_bytes: int, total_bytes: int) -> bool:
        """True when ``free_bytes`` left on a device of ``total_bytes`` is below the reserve."""
        if self.percent_min:
            return total_bytes <= 0 or free_bytes * 100.0 / total_bytes < self.percent_min
        return free_bytes < self.bytes_min


def _reserve_ok(text: str) -> bool:
    try:
        Reserve.parse(text)
    except ValueError:
        return False
    return True


def _seed_ok(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ObjectdConfig:
    """Every option of objectd, with its default and one line of documentation."""

    # option() is a dataclasses.field, which RUF009 does not recognise
    devices: Path = option(Path("/srv/node"), "root directory holding one directory per device")
    bind_ip: str = option("0.0.0.0", "address to listen on")
    bind_port: int = option(
        6200, "port to listen on (0: any free port)", check=lambda v: 0 <= v < 65536
    )
    workers: int = option(1, "worker processes sharing the port", check=lambda v: 1 <= v <= 256)
    mount_check: bool = option(True, "answer 507 for a device that is not a mount point")
    fallocate_reserve: str = option(
        "1%",
        "free space to keep on a device: bytes or a percentage; a PUT that would go below is 507",
        check=_reserve_ok,
    )
    threads_per_device: int = option(
        16, "disk threads per device (one slow disk cannot starve others)", check=lambda v: v >= 1
    )
    conn_timeout_s: float = option(
        0.5, "connect timeout for container updates", check=lambda v: v > 0
    )
    node_timeout_s: float = option(
        3.0, "response timeout for requests objectd makes to other nodes", check=lambda v: v > 0
    )
    client_timeout_s: float = option(
        60.0, "longest wait for the next chunk of a request body (408 after)", check=lambda v: v > 0
    )
    container_update_timeout_s: float = option(
        1.0,
        "how long an object write waits for its container updates before saving them as "
        "async pendings",
        check=lambda v: v > 0,
    )
    ring_dir: Path = option(Path("/etc/shoal"), "directory of ring files (for the seed)")
    hash_path_seed: str = option(
        "", "hash seed in hex; overrides the seed of <ring_dir>/object.ring", check=_seed_ok
    )
    db_synchronous: str = option(
        "FULL",
        "SQLite synchronous mode of container/account DBs: FULL (durable commits) or NORMAL",
        check=lambda v: v in ("FULL", "NORMAL"),
    )
    auto_create_account_prefix: str = option(
        ".", "accounts and containers with this prefix are created on first update"
    )
    allowed_headers: list[str] = option(
        DEFAULT_ALLOWED_HEADERS, "object headers stored as metadata besides X-Object-Meta-*"
    )
    log_level: str = option(
        "INFO",
        "DEBUG, INFO, WARNING or ERROR",
        check=lambda v: v in ("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    shutdown_timeout_s: float = option(
        30.0, "how long requests in flight may finish after SIGTERM", check=lambda v: v >= 0
    )
    tmp_reclaim_age_s: float = option(
        TMP_RECLAIM_AGE_S_DEFAULT,
        "files in <device>/tmp untouched this long are removed at start-up (left by a crash; a "
        "live temp file is written at least every client_timeout_s, which must be shorter)",
        check=lambda v: v > 0,
    )
    keep_cache_bytes_max: int = option(
        64 * 1024,
        "objects written with a body larger than this are dropped from the page cache once "
        "durable (posix_fadvise DONTNEED), as Swift drops every object it writes: large bodies "
        "are rarely read again at once, and the memory serves small objects, inodes and "
        "directories better; -1 keeps everything",
        check=lambda v: v >= -1,
    )
    named_temp_files: bool = option(
        False,
        "write object bodies to named files in <device>/tmp even where O_TMPFILE works (tests "
        "of that fallback, or a filesystem whose O_TMPFILE misbehaves)",
    )
    fault_injection: str = option(
        "", "tests only: syscall faults, e.g. 'fsync@2=EIO,rename%0.1=ENOSPC' (objectd.diskio)"
    )

    @property
    def reserve(self) -> Reserve:
        return Reserve.parse(self.fallocate_reserve)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ObjectdConfig:
    """Read ``path`` (``[objectd]`` table or top level), apply ``overrides``, validate.

    Raises:
        ConfigError: missing or unreadable file, bad TOML, unknown option or bad value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
        if isinstance(data.get("objectd"), dict):
            data = data["objectd"]
    data.update(overrides or {})
    config = from_mapping(ObjectdConfig, data, where="objectd")
    if config.tmp_reclaim_age_s <= config.client_timeout_s:
        raise ConfigError(
            f"objectd: tmp_reclaim_age_s ({config.tmp_reclaim_age_s}) must be longer than "
            f"client_timeout_s ({config.client_timeout_s}): a PUT in flight could lose its "
            "temp file"
        )
    return config


def resolve_seed(config: ObjectdConfig) -> bytes:
    """The cluster's hash seed: ``hash_path_seed`` if set, else the object ring's seed.

    Raises:
        ConfigError: no seed is configured and no ring file can provide one.
    """
    if config.hash_path_seed:
        return bytes.fromhex(config.hash_path_seed)
    for name in ("object.ring", "container.ring", "account.ring"):
        ring_path = config.ring_dir / name
        if ring_path.exists():
            return _seed_from_ring(ring_path)
    raise ConfigError(
        f"no hash seed: set hash_path_seed or put object.ring in ring_dir {str(config.ring_dir)!r}"
    )


def _seed_from_ring(ring_path: Path) -> bytes:
    try:
        seed = Ring(str(ring_path)).seed
    except Exception as exc:  # any failure to read the ring is a start-up error
        raise ConfigError(f"cannot read the hash seed from {str(ring_path)!r}: {exc}") from None
    if isinstance(seed, str):
        try:
            return bytes.fromhex(seed)
        except ValueError:
            return seed.encode("utf-8")
    return bytes(seed)
