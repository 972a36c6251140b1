"""Keystone auth: Swift's keystoneauth decisions over :class:`shoal.keystone.Identity`.

Public: :class:`KeystoneAuth`, :class:`KeystonePrincipal`.

``X-Auth-Token`` (and ``X-Service-Token``) are validated by :class:`shoal.keystone.KeystoneValidator`
(cached, bounded by the token's expiry). A project ``P`` owns account ``AUTH_P``; the decision
order is Swift's (``keystoneauth.authorize``), with one deliberate difference noted below:

1. reseller admin role → owner of every account;
2. system reader roles → read anything;
3. nobody but a reseller admin may DELETE an account;
4. (Swift checks container ACLs here; we check them after the owner test, which only matters in
   that Swift's owner loses ``swift_owner`` on a container whose ACL also names them: an oddity
   that costs every owner request a container lookup);
5. the token's project must be the account's, else the ACL decides;
6. an operator role makes the user owner; for ``SERVICE_P`` the ``X-Service-Token`` must also
   hold a service role (so users cannot touch a service's data directly);
7. project reader roles may GET and HEAD (``SERVICE_P`` only with a service token as well:
   Keystone's ``member`` implies ``reader``, so otherwise every member could read service data);
8. container ACLs: ``project_id:user_id``, ``project_id:*``, ``*:user_id``, ``*:*`` (and names
   in the default domain), referrers (``.r:*``, ``.rlistings``), or a role the user holds.

Denials are 403 for a known user and 401 for anonymous requests; an invalid token is 401 with
``WWW-Authenticate: Keystone uri="<auth_url>"``; Keystone unreachable is 503.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from proxy.acl import READ_METHODS, Decision, deny, parse_acl, referrer_allowed
from proxy.config import ProxyConfig
from proxy.errors import SwiftError
from proxy.routing import SwiftPath
from shoal.keystone import Identity, InvalidToken, KeystoneUnavailable, KeystoneValidator

DEFAULT_DOMAIN_ID = "default"


@dataclasses.dataclass(frozen=True, slots=True)
class KeystonePrincipal:
    identity: Identity
    service: Identity | None  # from X-Service-Token

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.lower() for r in self.identity.roles)

    @property
    def service_roles(self) -> frozenset[str]:
        return frozenset(r.lower() for r in self.service.roles) if self.service else frozenset()


class KeystoneAuth:
    kind = "keystone"

    def __init__(self, config: ProxyConfig):
        self.keystone = config.keystone_config
        self.validator = KeystoneValidator(self.keystone)
        self.prefixes = (config.reseller_prefix, config.service_reseller_prefix)
        self.service_prefix = config.service_reseller_prefix
        self.operator_roles = frozenset(r.lower() for r in config.operator_roles)
        self.service_roles = frozenset(r.lower() for r in config.service_roles)
        self.reseller_admin_role = config.reseller_admin_role.lower()
        self.reader_roles = frozenset(r.lower() for r in config.reader_roles)
        self.system_reader_roles = frozenset(r.lower() for r in config.system_reader_roles)

    async def close(self) -> None:
        await self.validator.close()

    async def _validate(self, token: str) -> Identity:
        try:
            return await self.validator.validate(token)
        except InvalidToken:
            raise SwiftError(
                401, headers={"WWW-Authenticate": f'Keystone uri="{self.keystone.auth_url}"'}
            ) from None
        except KeystoneUnavailable:
            raise SwiftError(503) from None

    async def authenticate(self, request: web.Request) -> KeystonePrincipal | None:
        token = request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token")
        if not token:
            return None
        identity = await self._validate(token)
        service_token = request.headers.get("X-Service-Token")
        service = await self._validate(service_token) if service_token else None
        return KeystonePrincipal(identity, service)

    def authorize(
        self,
        principal: KeystonePrincipal | None,
        method: str,
        path: SwiftPath,
        acl: str | None,
        referrer: str | None,
    ) -> Decision:
        """The decision for ``method`` on ``path`` (see the module docstring for the order).

        Raises:
            SwiftError: 401 (anonymous) or 403 (authenticated) when nothing allows it.
        """
        try:
            return self._authorize(principal, method, path, acl, referrer)
        except SwiftError as error:
            if error.status == 401:  # tell the client where to get a token, as authtoken does
                error.headers["WWW-Authenticate"] = f'Keystone uri="{self.keystone.auth_url}"'
            raise

    def _authorize(
        self,
        principal: KeystonePrincipal | None,
        method: str,
        path: SwiftPath,
        acl: str | None,
        referrer: str | None,
    ) -> Decision:
        if method == "OPTIONS":
            return Decision.ALLOWED
        if principal is not None:
            decided = self._by_role(principal, method, path)
            if decided is not None:
                return decided
        if path.container is None:
            raise deny(principal is not None)
        if acl is None:
            return Decision.NEED_ACL
        if self._acl_allows(principal, method, path, acl, referrer):
            return Decision.ALLOWED
        raise deny(principal is not None)

    def _by_role(
        self, principal: KeystonePrincipal, method: str, path: SwiftPath
    ) -> Decision | None:
        roles = principal.roles
        if self.reseller_admin_role in roles:
            return Decision.OWNER
        if method in READ_METHODS and roles & self.system_reader_roles:
            return Decision.OWNER
        if path.container is None and method == "DELETE":
            raise SwiftError(403)
        project_id = principal.identity.project_id
        prefix = next((p for p in self.prefixes if path.account.startswith(p)), None)
        if project_id is None or prefix is None or path.account != prefix + project_id:
            return None  # not the user's account: only an ACL can allow it
        service_ok = prefix != self.service_prefix or principal.service_roles & self.service_roles
        if roles & self.operator_roles and service_ok:
            return Decision.OWNER
        if method in READ_METHODS and roles & self.reader_roles and service_ok:
            return Decision.ALLOWED
        return None

    def _acl_allows(
        self,
        principal: KeystonePrincipal | None,
        method: str,
        path: SwiftPath,
        acl_text: str,
        referrer: str | None,
    ) -> bool:
        acl = parse_acl(acl_text)
        if principal is not None and self._grants(principal) & acl.groups:
            return True  # cross-project grant: Swift checks it before referrers
        if method in READ_METHODS and referrer_allowed(referrer, acl.referrers):
            return path.obj is not None or ".rlistings" in acl.groups
        if principal is None:
            return False
        return bool(principal.roles & {g.lower() for g in acl.groups})

    @staticmethod
    def _grants(principal: KeystonePrincipal) -> set[str]:
        """The ACL entries that name this user: ids always, names in the default domain."""
        identity = principal.identity
        project_id = identity.project_id or ""
        grants = {f"{project_id}:{identity.user_id}", f"{project_id}:*",
                  f"*:{identity.user_id}", "*:*"}  # fmt: skip
        in_default_domain = (
            identity.user_domain_id == DEFAULT_DOMAIN_ID
            and (identity.project_domain_id or DEFAULT_DOMAIN_ID) == DEFAULT_DOMAIN_ID
        )
        if in_default_domain:
            project_name = identity.project_name or ""
            grants |= {f"{project_name}:{identity.user_name}", f"{project_name}:*",
                       f"*:{identity.user_name}"}  # fmt: skip
        return grants
