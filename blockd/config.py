"""blockd's configuration: the ``[blockd]`` table of its TOML file.

Public: :class:`BlockdConfig`, :func:`load_config`.

Every option has a default that makes the all-in-one node work: dev auth with a static token, the
reflink backend in ``/var/lib/shoal/blockd/volumes``, the tgt target on 127.0.0.1:3260.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shoal.config import ConfigError, load, option

BACKENDS = ("reflink", "lvm-thin")
TARGETS = ("tgt", "lio")
AUTH_MODES = ("dev", "keystone")
DEFAULT_CONVERSION_DIR = Path("/var/lib/shoal/blockd/conversion")


@dataclasses.dataclass(frozen=True)
class BlockdConfig:
    """Options of ``[blockd]``; see ``shoal config-defaults blockd`` for the rendered file."""

    host: str = option("127.0.0.1", "address the API listens on")
    port: int = option(9776, "API port", check=lambda v: 0 <= v < 65536)
    log_level: str = option("INFO", "logging level")

    auth_mode: str = option(
        "dev", "dev (static token) or keystone", check=lambda v: v in AUTH_MODES
    )
    dev_token: str = option("blockd-dev-token", "the static X-Auth-Token accepted in dev mode")
    allowed_roles: list[str] = option(["service", "admin"], "keystone: a token needs one of these")
    keystone_auth_url: str = option("http://127.0.0.1:5000/v3", "keystone: identity v3 endpoint")
    keystone_username: str = option("blockd", "keystone: blockd's own service user")
    keystone_password: str = option("", "keystone: that user's password")
    keystone_project_name: str = option("service", "keystone: that user's project")
    keystone_user_domain_name: str = option("Default", "keystone: the user's domain")
    keystone_project_domain_name: str = option("Default", "keystone: the project's domain")

    backend: str = option("reflink", "reflink or lvm-thin", check=lambda v: v in BACKENDS)
    reflink_dir: Path = option(
        Path("/var/lib/shoal/blockd/volumes"), "reflink: directory on XFS or btrfs with reflink"
    )
    lvm_vg: str = option("shoal-volumes", "lvm-thin: volume group")
    lvm_pool: str = option("", "lvm-thin: thin pool LV name (default <vg>-pool, as Cinder)")
    image_conversion_dir: str = option(
        "",
        "where non-raw images are downloaded before qemu-img converts them (Cinder's "
        "image_conversion_dir); empty = reflink_dir for reflink, /var/lib/shoal/blockd/conversion "
        "for lvm-thin",
    )
    max_over_subscription_ratio: float = option(
        20.0, "provisioned / total allowed before create answers 507 (Cinder's default)"
    )

    target: str = option("tgt", "tgt or lio", check=lambda v: v in TARGETS)
    target_portals: list[str] = option(["127.0.0.1:3260"], "ip:port the initiators connect to")
    target_iqn_prefix: str = option("iqn.2010-10.org.openstack:", "target IQN = prefix + LV name")
    tgt_conf_dir: Path = option(
        Path("/var/lib/shoal/blockd/tgt"), "tgt: one config file per exported volume"
    )
    tgt_control_port: int = option(0, "tgt: tgtd's control port (-C), 0 = tgtd's default")
    reconcile_interval_s: float = option(
        30.0,
        "how often saved exports missing from the running target are re-created (a restarted "
        "tgtd); 0 = only at start",
        check=lambda v: v >= 0,
    )
    lio_save_file: Path = option(
        Path("/etc/target/saveconfig.json"), "lio: rtslib saveconfig, restored at start"
    )

    @property
    def thin_pool(self) -> str:
        return self.lvm_pool or f"{self.lvm_vg}-pool"

    @property
    def conversion_dir(self) -> Path:
        if self.image_conversion_dir:
            return Path(self.image_conversion_dir)
        if self.backend == "reflink":
            return self.reflink_dir
        return DEFAULT_CONVERSION_DIR


def load_config(path: str | Path | None) -> BlockdConfig:
    """Load and cross-check ``[blockd]``; raises :class:`ConfigError` naming the option."""
    config = load(BlockdConfig, path, table="blockd")
    if config.auth_mode == "keystone" and not config.keystone_password:
        raise ConfigError("option 'blockd.keystone_password' must be set when auth_mode = keystone")
    if not config.target_portals:
        raise ConfigError("option 'blockd.target_portals' needs at least one ip:port")
    for portal in config.target_portals:
        host, _, port = portal.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"option 'blockd.target_portals': bad portal {portal!r} (ip:port)")
    return config
