"""Who a Keystone token speaks for: :class:`Identity`, parsed from a v3 token body.

Public: :class:`Identity`, :func:`parse_token_body`, :func:`parse_time`. Pure (no I/O), so the
proxy's and blockd's tests can build identities from recorded bodies; ``shoal.keystone`` wraps the
parser's ``ValueError`` into ``KeystoneUnavailable`` (a malformed body is Keystone's fault).

The proxy maps an Identity onto Swift's keystoneauth decisions (account ``AUTH_<project_id>``,
operator roles, reader roles, ``X-Service-Token``); blockd checks ``has_any_role``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Identity:
    """Who a validated token speaks for, as Keystone described it.

    ``project_*`` are None unless the token is project-scoped; ``domain_*`` are set only for a
    domain-scoped token; ``system_scoped`` for a system-scoped one. ``roles`` are role names as
    Keystone returned them, implied roles included (``member`` implies ``reader``).
    """

    user_id: str
    user_name: str
    user_domain_id: str
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    project_domain_id: str | None
    project_domain_name: str | None
    domain_id: str | None
    domain_name: str | None
    system_scoped: bool
    roles: frozenset[str]
    role_ids: frozenset[str]
    expires_at: float  # epoch seconds
    issued_at: float  # epoch seconds
    audit_ids: tuple[str, ...]
    methods: tuple[str, ...]
    is_admin_project: bool  # Keystone's flag; True for every project unless admin_project_* set

    @property
    def scope(self) -> str:
        """``'project'``, ``'domain'``, ``'system'`` or ``'unscoped'``."""
        if self.project_id is not None:
            return "project"
        if self.domain_id is not None:
            return "domain"
        if self.system_scoped:
            return "system"
        return "unscoped"

    def has_any_role(self, names: Iterable[str]) -> bool:
        """True if the token holds any of ``names`` (case-insensitive, as Swift compares)."""
        mine = {role.lower() for role in self.roles}
        return any(name.lower() in mine for name in names)


def parse_time(text: Any) -> float:
    """Epoch seconds of a Keystone timestamp (``2026-11-25T19:36:09.000000Z``; naive = UTC).

    Raises:
        ValueError: not a string, or not ISO 8601.
    """
    if not isinstance(text, str):
        raise ValueError(f"timestamp missing or not a string: {text!r}"[:80])
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _scope_fields(token: dict[str, Any]) -> dict[str, Any]:
    project = token.get("project")
    project_domain = (project.get("domain") or {}) if project else {}
    domain = token.get("domain")
    return {
        "project_id": str(project["id"]) if project else None,
        "project_name": str(project.get("name", "")) if project else None,
        "project_domain_id": str(project_domain.get("id", "")) if project else None,
        "project_domain_name": str(project_domain.get("name", "")) if project else None,
        "domain_id": str(domain["id"]) if domain else None,
        "domain_name": str(domain.get("name", "")) if domain else None,
        "system_scoped": bool((token.get("system") or {}).get("all", False)),
    }


def parse_token_body(body: Any) -> Identity:
    """Build an :class:`Identity` from a Keystone ``{"token": {...}}`` document.

    Raises:
        ValueError: the document does not have the v3 token shape.
    """
    try:
        token = body["token"]
        user = token["user"]
        user_domain = user.get("domain") or {}
        roles = token.get("roles") or []
        return Identity(
            user_id=str(user["id"]),
            user_name=str(user.get("name", "")),
            user_domain_id=str(user_domain.get("id", "")),
            user_domain_name=str(user_domain.get("name", "")),
            **_scope_fields(token),
            roles=frozenset(str(role["name"]) for role in roles),
            role_ids=frozenset(str(role["id"]) for role in roles),
            expires_at=parse_time(token.get("expires_at")),
            issued_at=parse_time(token.get("issued_at")),
            audit_ids=tuple(str(audit_id) for audit_id in token.get("audit_ids") or ()),
            methods=tuple(str(method) for method in token.get("methods") or ()),
            is_admin_project=bool(token.get("is_admin_project", True)),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unexpected shape: {exc!r}") from None
