"""Configuration of the background daemons (replicator, auditor, updater, expirer).

Public: :class:`DaemonConfig`, :func:`load_daemon_config`, :func:`daemon_seed`.

One TOML file can configure objectd and its daemons: a daemon reads the options it shares with
objectd (``devices``, ``ring_dir``, ``bind_ip``, ``bind_port``, ``mount_check``,
``hash_path_seed``, ``tmp_reclaim_age_s``) from the ``[objectd]`` table, then its own table (``[replicator]``,
``[auditor]``, ...) on top. ``bind_ip``/``bind_port`` name the objectd whose devices the daemon
works on: a ring device is local when its port is ``bind_port``, its ip is ``bind_ip`` (any ip
when objectd binds a wildcard address) and its directory exists under ``devices``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from objectd.tmp_reclaim import TMP_RECLAIM_AGE_S_DEFAULT
from ring.ring import Ring
from shoal.config import ConfigError, from_mapping, option, read_toml
from shoal.units import MiB

SHARED_WITH_OBJECTD = (
    "devices",
    "ring_dir",
    "bind_ip",
    "bind_port",
    "mount_check",
    "hash_path_seed",
    "tmp_reclaim_age_s",
)


def _positive(value: float) -> bool:
    return value > 0


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    """Every option of the background daemons, with its default and one line of documentation."""

    devices: Path = option(Path("/srv/node"), "root directory holding one directory per device")
    ring_dir: Path = option(Path("/etc/shoal"), "directory of ring files")
    bind_ip: str = option("0.0.0.0", "address of the local objectd (finds local ring devices)")
    bind_port: int = option(6200, "port of the local objectd", check=lambda v: 0 < v < 65536)
    mount_check: bool = option(True, "skip devices that are not mount points")
    hash_path_seed: str = option("", "hash seed in hex; overrides the seed of the object ring")
    interval_s: float = option(30.0, "pause between two passes of run_forever", check=_positive)
    concurrency: int = option(4, "partitions (or files) worked on at once", check=lambda v: v >= 1)
    io_bytes_per_s_max: int = option(
        50 * MiB, "replication bytes sent per second by this daemon", check=lambda v: v > 0
    )
    reclaim_age_s: float = option(
        7 * 86400.0, "tombstones older than this are removed (Swift's reclaim_age)", check=_positive
    )
    tmp_reclaim_age_s: float = option(
        TMP_RECLAIM_AGE_S_DEFAULT,
        "auditor: files in <device>/tmp untouched this long are removed each pass (crash "
        "leftovers; objectd.tmp_reclaim says why a day is safe)",
        check=_positive,
    )
    hashes_max_age_s: float = option(
        86400.0, "suffix hash caches older than this are rebuilt from a full walk", check=_positive
    )
    conn_timeout_s: float = option(0.5, "connect timeout to other nodes", check=_positive)
    node_timeout_s: float = option(10.0, "response timeout of other nodes", check=_positive)
    audit_bytes_per_s_max: int = option(
        10 * MiB, "auditor: bytes read per second", check=lambda v: v > 0
    )
    audit_files_per_s_max: float = option(20.0, "auditor: files per second", check=_positive)
    expirer_batch_max: int = option(
        1000, "expirer: objects deleted per pass at most", check=lambda v: v >= 1
    )
    log_level: str = option(
        "INFO",
        "DEBUG, INFO, WARNING or ERROR",
        check=lambda v: v in ("DEBUG", "INFO", "WARNING", "ERROR"),
    )


def load_daemon_config(
    path: str | Path | None, table: str, overrides: dict[str, Any] | None = None
) -> DaemonConfig:
    """``[objectd]``'s shared options, then ``[table]``, then ``overrides``.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown option or bad value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        document = read_toml(path)
        objectd = document.get("objectd", {})
        if isinstance(objectd, dict):
            data.update({k: v for k, v in objectd.items() if k in SHARED_WITH_OBJECTD})
        own = document.get(table, {})
        if not isinstance(own, dict):
            raise ConfigError(f"config file {str(path)!r}: [{table}] must be a table")
        data.update(own)
    data.update(overrides or {})
    return from_mapping(DaemonConfig, data, where=table)


def daemon_seed(config: DaemonConfig) -> bytes:
    """``hash_path_seed``, else the object ring's seed. Raises ConfigError."""
    if config.hash_path_seed:
        try:
            return bytes.fromhex(config.hash_path_seed)
        except ValueError:
            raise ConfigError(f"hash_path_seed is not hex: {config.hash_path_seed!r}") from None
    ring_path = config.ring_dir / "object.ring"
    try:
        return bytes(Ring(ring_path).seed)
    except Exception as exc:  # any failure to read the ring is a start-up error
        raise ConfigError(
            f"no hash seed: set hash_path_seed or provide {ring_path}: {exc}"
        ) from None
