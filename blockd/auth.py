"""Who may call blockd: every API call carries ``X-Auth-Token``.

Public: :class:`Caller`, :class:`DevAuth`, :class:`KeystoneAuth`, :func:`make_auth`.

Two modes (``auth_mode``): ``dev`` accepts one static token from the config (the all-in-one
default: blockd listens on loopback and the Cinder driver on the same node knows the token);
``keystone`` validates the token with Keystone through the shared validator in
``shoal.keystone`` (which caches validations) and requires one of ``allowed_roles``
(default ``service`` or ``admin``: Cinder's service user, or an operator).
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import TYPE_CHECKING, Protocol

from blockd.errors import AuthUnavailable, Forbidden, Unauthorized

if TYPE_CHECKING:
    from blockd.config import BlockdConfig

TOKEN_HEADER = "X-Auth-Token"
TOKEN_BYTES_MAX = 8192  # Fernet tokens are ~200 bytes; PKI-era tokens were a few KiB


@dataclasses.dataclass(frozen=True)
class Caller:
    user_id: str
    project_id: str | None
    roles: frozenset[str]


class Authenticator(Protocol):
    async def authenticate(self, token: str | None) -> Caller: ...
    async def close(self) -> None: ...


def _require_token(token: str | None) -> str:
    if not token:
        raise Unauthorized(f"missing {TOKEN_HEADER}")
    if len(token) > TOKEN_BYTES_MAX:
        raise Unauthorized("token too long")
    return token


class DevAuth:
    """The static token of the all-in-one node; compared in constant time."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("dev auth needs a non-empty token")
        self._token = token.encode()

    async def authenticate(self, token: str | None) -> Caller:
        given = _require_token(token).encode()
        if not hmac.compare_digest(given, self._token):
            raise Unauthorized("invalid token")
        return Caller("dev", None, frozenset({"admin"}))

    async def close(self) -> None:
        return None


class KeystoneAuth:
    """Keystone v3 validation (cached by the shared validator) plus a role check."""

    def __init__(
        self,
        validator,
        allowed_roles: list[str],
        invalid_token: type[Exception],
        unavailable: type[Exception],
    ):
        self._validator = validator
        self._allowed_roles = frozenset(allowed_roles)
        self._invalid_token = invalid_token
        self._unavailable = unavailable

    async def authenticate(self, token: str | None) -> Caller:
        given = _require_token(token)
        try:
            identity = await self._validator.validate(given)
        except self._invalid_token:
            raise Unauthorized("invalid or expired token") from None
        except self._unavailable as exc:
            raise AuthUnavailable(f"cannot validate the token now: {exc}") from None
        roles = frozenset(identity.roles)
        if not roles & self._allowed_roles:
            wanted = " or ".join(sorted(self._allowed_roles))
            raise Forbidden(f"the token's roles do not include {wanted}")
        return Caller(identity.user_id, identity.project_id, roles)

    async def close(self) -> None:
        await self._validator.close()


def make_auth(config: BlockdConfig) -> Authenticator:
    if config.auth_mode == "dev":
        return DevAuth(config.dev_token)
    from shoal.keystone import (
        InvalidToken,
        KeystoneConfig,
        KeystoneUnavailable,
        KeystoneValidator,
    )

    keystone = KeystoneConfig(
        auth_url=config.keystone_auth_url,
        username=config.keystone_username,
        password=config.keystone_password,
        project_name=config.keystone_project_name,
        user_domain_name=config.keystone_user_domain_name,
        project_domain_name=config.keystone_project_domain_name,
    )
    return KeystoneAuth(
        KeystoneValidator(keystone), config.allowed_roles, InvalidToken, KeystoneUnavailable
    )
