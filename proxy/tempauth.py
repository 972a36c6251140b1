"""Development auth compatible with Swift's tempauth: users from config, v1.0 login, groups.

Public: :class:`TempAuth`, :class:`TempAuthUser`.

Login: ``GET /auth/v1.0`` (also ``/auth/v1``, ``/v1.0``) with ``X-Auth-User: account:user`` and
``X-Auth-Key`` answers ``X-Auth-Token`` and ``X-Storage-Url`` (``/v1/AUTH_<account>``).

Tokens are stateless: ``AUTH_tk`` + an HMAC of the user and expiry time under a secret shared by
every worker (one worker issues, any worker checks), so no token store is needed; a restart with
a random secret invalidates them and clients simply log in again (swiftclient does on 401).

Groups, as tempauth: every user is in ``account`` and ``account:user``; ``.admin`` makes the user
the owner of ``AUTH_<account>``; ``.reseller_admin`` owns every account. ``SERVICE_<account>``
needs the owner's token *and* an ``X-Service-Token`` of a user in group ``service``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time

from aiohttp import web

from proxy import limits
from proxy.acl import READ_METHODS, Decision, acl_allows, deny
from proxy.errors import SwiftError
from proxy.routing import SwiftPath

TOKEN_PREFIX = "AUTH_tk"
SERVICE_GROUP = "service"


@dataclasses.dataclass(frozen=True, slots=True)
class TempAuthUser:
    account: str
    user: str
    key: str
    groups: frozenset[str]  # as configured (.admin, .reseller_admin, service, ...)

    @property
    def name(self) -> str:
        return f"{self.account}:{self.user}"


@dataclasses.dataclass(frozen=True, slots=True)
class TempAuthPrincipal:
    user: TempAuthUser
    service_user: TempAuthUser | None
    groups: frozenset[str]  # what ACLs match against


class TempAuth:
    """Users, login, token checks and Swift tempauth's authorize()."""

    kind = "tempauth"

    def __init__(self, users: list[str], secret: bytes, reseller_prefix: str = "AUTH_"):
        self.reseller_prefix = reseller_prefix
        self.service_prefix = "SERVICE_"
        self._secret = secret
        self.users: dict[str, TempAuthUser] = {}
        for line in users:  # "account:user key [group ...]"
            name, key, *groups = line.split()
            account, _, user = name.partition(":")
            self.users[name] = TempAuthUser(account, user, key, frozenset(groups))

    # --- tokens ----------------------------------------------------------------------------
    def issue_token(self, user: TempAuthUser, now_s: float | None = None) -> tuple[str, int]:
        expires = int((now_s or time.time()) + limits.TOKEN_LIFETIME_S)
        payload = f"{expires:010x}{user.name.encode().hex()}"
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{TOKEN_PREFIX}{mac}{payload}", limits.TOKEN_LIFETIME_S

    def user_of_token(self, token: str) -> TempAuthUser | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) < len(TOKEN_PREFIX) + 42:
            return None
        mac, payload = (
            token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 32],
            token[len(TOKEN_PREFIX) + 32 :],
        )
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            expires = int(payload[:10], 16)
            name = bytes.fromhex(payload[10:]).decode()
        except ValueError:
            return None
        if expires < time.time():
            return None
        return self.users.get(name)

    # --- login -----------------------------------------------------------------------------
    def login(self, request: web.Request) -> web.Response:
        name = request.headers.get("X-Auth-User") or request.headers.get("X-Storage-User") or ""
        key = request.headers.get("X-Auth-Key") or request.headers.get("X-Storage-Pass") or ""
        user = self.users.get(name)
        if user is None or not hmac.compare_digest(user.key.encode(), key.encode()):
            raise SwiftError(401)
        token, lifetime = self.issue_token(user)
        url = f"{request.scheme}://{request.host}/v1/{self.reseller_prefix}{user.account}"
        return web.Response(
            status=200,
            headers={
                "X-Auth-Token": token,
                "X-Storage-Token": token,
                "X-Storage-Url": url,
                "X-Auth-Token-Expires": str(lifetime),
                "Content-Type": "text/plain; charset=UTF-8",
            },
        )

    # --- per request -----------------------------------------------------------------------
    async def authenticate(self, request: web.Request) -> TempAuthPrincipal | None:
        token = request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token")
        if not token:
            return None
        user = self.user_of_token(token)
        if user is None:
            raise SwiftError(401)
        service_token = request.headers.get("X-Service-Token")
        service_user = self.user_of_token(service_token) if service_token else None
        groups = {user.name, user.account, *user.groups}
        if ".admin" in user.groups:
            groups.add(self.reseller_prefix + user.account)
        return TempAuthPrincipal(user, service_user, frozenset(groups))

    def authorize(
        self,
        principal: TempAuthPrincipal | None,
        method: str,
        path: SwiftPath,
        acl: str | None,
        referrer: str | None,
    ) -> Decision:
        """Swift tempauth's order: reseller admin, account owner, then container ACLs.

        Raises:
            SwiftError: 401 (anonymous) or 403 (authenticated) when nothing allows the request.
        """
        account = path.account
        if not account.startswith((self.reseller_prefix, self.service_prefix)):
            raise deny(principal is not None)
        if principal is not None:
            if ".reseller_admin" in principal.user.groups and not account.startswith("."):
                return Decision.OWNER
            if self._owns(principal, path, method):
                return Decision.OWNER
        if path.container is None or method == "OPTIONS":
            raise deny(principal is not None)
        if acl is None:
            return Decision.NEED_ACL
        groups = principal.groups if principal is not None else frozenset()
        if acl_allows(method, path.obj is not None, acl, groups, referrer):
            return Decision.ALLOWED
        raise deny(principal is not None)

    def _owns(self, principal: TempAuthPrincipal, path: SwiftPath, method: str) -> bool:
        user = principal.user
        if ".admin" not in user.groups:
            return False
        if path.container is None and method in ("PUT", "DELETE"):
            return False  # account PUT/DELETE are for reseller admins
        if path.account == self.reseller_prefix + user.account:
            return True
        if path.account == self.service_prefix + user.account:
            service = principal.service_user
            return service is not None and SERVICE_GROUP in service.groups
        return False


def acl_for(method: str, read_acl: str, write_acl: str) -> str:
    """The ACL that governs ``method``: read for GET/HEAD, write for the rest."""
    return read_acl if method in READ_METHODS else write_acl
