"""The proxy's configuration: one TOML file (``[proxy]`` table or top level), every option
documented, checked at start-up.

Public: :class:`ProxyConfig`, :class:`Policy`, :func:`load_config`, :data:`DEFAULT_TEMPAUTH_USERS`.

Tempauth users are Swift's ``user_<account>_<user> = <key> [groups...]`` lines as a list of
strings ``"account:user key [group ...]"``; the all-in-one default ships the users of Swift's
own development setup.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from shoal.config import ConfigError, from_mapping, option
from shoal.keystone import KeystoneConfig

DEFAULT_TEMPAUTH_USERS: list[str] = [
    "admin:admin admin .admin .reseller_admin",
    "test:tester testing .admin",
    "test:tester2 testing2 .admin",
    "test:tester3 testing3",
    "test2:tester2 testing2 .admin",
    "test5:tester5 testing5 service",
]

DEFAULT_POLICIES: list[dict[str, Any]] = [
    {"index": 0, "name": "gold", "default": True},
    {"index": 1, "name": "silver", "default": False},
]


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """A storage policy: its index (``object-<index>.ring``), its name, whether default."""

    index: int
    name: str
    default: bool = False


def _policies_ok(value: list[Any]) -> bool:
    try:
        policies = [_policy(item) for item in value]
    except (KeyError, TypeError, ValueError):
        return False
    names = {p.name.lower() for p in policies}
    indexes = {p.index for p in policies}
    defaults = [p for p in policies if p.default]
    return bool(policies) and len(names) == len(indexes) == len(policies) and len(defaults) == 1


def _policy(item: dict[str, Any]) -> Policy:
    return Policy(int(item["index"]), str(item["name"]), bool(item.get("default", False)))


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """Every option of the proxy, with its default and one line of documentation."""

    bind_ip: str = option("127.0.0.1", "address to listen on")
    bind_port: int = option(8080, "port to listen on (0: any)", check=lambda v: 0 <= v < 65536)
    workers: int = option(
        0, "worker processes sharing the port (0: one per core)", check=lambda v: 0 <= v <= 256
    )
    ring_dir: Path = option(Path("/etc/shoal"), "directory of the ring files")
    auth: str = option(
        "tempauth", "tempauth (users below) or keystone ([keystone] table)",
        check=lambda v: v in ("tempauth", "keystone"),
    )  # fmt: skip
    reseller_prefix: str = option("AUTH_", "account prefix of users' accounts")
    tempauth_users: list[str] = option(
        DEFAULT_TEMPAUTH_USERS,
        "tempauth users: 'account:user key [group ...]'",
        check=lambda users: all(":" in u.split()[0] and len(u.split()) >= 2 for u in users),
    )
    token_secret: str = option(
        "", "hex secret signing tempauth tokens (empty: random per start; tokens then die)"
    )
    operator_roles: list[str] = option(["admin", "member"], "keystone roles owning their account")
    reseller_admin_role: str = option("ResellerAdmin", "keystone role with access to everything")
    reader_roles: list[str] = option(["reader"], "keystone project roles that may only read")
    system_reader_roles: list[str] = option([], "keystone roles that may read every account")
    service_roles: list[str] = option(
        ["service"], "roles an X-Service-Token must have for SERVICE_-prefixed accounts"
    )
    service_reseller_prefix: str = option(
        "SERVICE_", "account prefix needing a user token and a service token"
    )
    policies: list[dict[str, Any]] = option(
        DEFAULT_POLICIES, "storage policies: {index, name, default}", check=_policies_ok
    )
    account_autocreate: bool = option(True, "create an account on its first write")
    allow_account_management: bool = option(False, "let reseller admins PUT and DELETE accounts")
    conn_timeout_s: float = option(0.5, "backend connect timeout", check=lambda v: v > 0)
    node_timeout_s: float = option(10.0, "backend response/chunk timeout", check=lambda v: v > 0)
    client_timeout_s: float = option(
        60.0, "wait for the client's next chunk", check=lambda v: v > 0
    )
    whole_put_buffer_bytes_max: int = option(
        256 * 1024 * 1024,
        "bytes of PUT bodies (each up to 2 MiB) a worker may hold whole at once; beyond, they "
        "stream (more CPU, bounded memory)",
        check=lambda v: v >= 0,
    )
    post_quorum_timeout_s: float = option(
        0.5, "after a quorum, how long to wait for the other replicas", check=lambda v: v >= 0
    )
    error_suppression_limit: int = option(
        10, "errors before a node is skipped", check=lambda v: v > 0
    )
    error_suppression_interval_s: float = option(
        60.0, "window of error_suppression_limit and how long a node is skipped",
        check=lambda v: v > 0,
    )  # fmt: skip
    backend_connections_max: int = option(
        1024,
        "open backend connections per worker, in each of its two pools (whole exchanges, streams)",
        check=lambda v: v > 0,
    )
    log_level: str = option(
        "INFO", "DEBUG, INFO, WARNING or ERROR",
        check=lambda v: v in ("DEBUG", "INFO", "WARNING", "ERROR"),
    )  # fmt: skip
    shutdown_timeout_s: float = option(30.0, "how long requests in flight may finish")
    keystone: dict[str, Any] = option({}, "the [keystone] table (shoal.keystone.KeystoneConfig)")

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    @property
    def policy_list(self) -> list[Policy]:
        return [_policy(item) for item in self.policies]

    @property
    def keystone_config(self) -> KeystoneConfig:
        return from_mapping(KeystoneConfig, self.keystone, where="keystone")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ProxyConfig:
    """Read ``path`` (``[proxy]`` table or top level; a top-level ``[keystone]`` table is used
    for keystone), apply ``overrides``, validate.

    Raises:
        ConfigError: missing/unreadable file, bad TOML, unknown option or bad value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
        data = dict(document.get("proxy", document))
        if "keystone" in document and "keystone" not in data:
            data["keystone"] = document["keystone"]
    data.update(overrides or {})
    config = from_mapping(ProxyConfig, data, where="proxy")
    if config.auth == "keystone":
        config.keystone_config  # noqa: B018 (validates the table now, not mid-request)
    if config.token_secret:
        try:
            bytes.fromhex(config.token_secret)
        except ValueError:
            raise ConfigError(
                f"option 'proxy.token_secret': not hex: {config.token_secret!r}"
            ) from None
    return config
