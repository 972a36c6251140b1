"""Container ACLs (``X-Container-Read`` / ``X-Container-Write``) and the shape of an auth decision.

Public: :class:`Decision`, :class:`ParsedAcl`, :func:`parse_acl`, :func:`referrer_allowed`,
:func:`deny`, :data:`READ_METHODS`.

Swift's v1 ACL syntax: a comma-separated list of ``.r:<referrer>`` (``.r:*`` anyone,
``.r:.example.com`` a domain, ``.r:-host`` a denial), ``.rlistings`` (referrers may also list
the container), and *groups*: whatever names the auth system gives a user (tempauth:
``account:user`` or ``account``; keystone: ``project_id:user_id``, ``project_id:*``,
``*:user_id``, and role names).
"""

from __future__ import annotations

import dataclasses
import enum
from urllib.parse import urlparse

from proxy.errors import SwiftError

READ_METHODS = frozenset(("GET", "HEAD"))


class Decision(enum.Enum):
    OWNER = "owner"  # full access to the account, may set ACLs
    ALLOWED = "allowed"  # this request is allowed by an ACL or a read-only role
    NEED_ACL = "need_acl"  # ask again with the container's ACLs


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedAcl:
    referrers: tuple[str, ...]
    groups: frozenset[str]


def parse_acl(text: str) -> ParsedAcl:
    referrers: list[str] = []
    groups: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith((".r:", ".ref:", ".referer:", ".referrer:")):
            referrers.append(item.split(":", 1)[1].strip())
        else:
            groups.add(item)
    return ParsedAcl(tuple(referrers), frozenset(groups))


def referrer_allowed(referrer: str | None, referrers: tuple[str, ...]) -> bool:
    """Swift's ``referrer_allowed``: the last matching rule wins; ``*`` matches anything."""
    host = (urlparse(referrer).hostname or "") if referrer else ""
    allowed = False
    for rule in referrers:
        negative = rule.startswith("-")
        pattern = rule[1:] if negative else rule
        if (
            pattern == "*"
            or (pattern.startswith(".") and host.endswith(pattern))
            or (host and pattern == host)
        ):
            allowed = not negative
    return allowed


def deny(authenticated: bool) -> SwiftError:
    """401 for an anonymous request (it may authenticate and retry), 403 for a known user."""
    return SwiftError(403 if authenticated else 401)


def acl_allows(
    method: str, has_object: bool, acl_text: str, groups: frozenset[str] | set[str],
    referrer: str | None,
) -> bool:  # fmt: skip
    """Whether the container ACL ``acl_text`` (read or write, as fits ``method``) lets a user
    with ``groups`` (empty for anonymous) do ``method``."""
    if not acl_text:
        return False
    acl = parse_acl(acl_text)
    readable = method in READ_METHODS and (has_object or ".rlistings" in acl.groups)
    if readable and referrer_allowed(referrer, acl.referrers):
        return True
    return bool(acl.groups & set(groups))
