"""``/info`` (what clients read to decide which features to use) and ``/healthcheck``.

Public: :func:`info_document`.

Only what actually works is advertised: clients such as python-swiftclient choose their upload
strategy from it.
"""

from __future__ import annotations

from typing import Any

from proxy import limits
from proxy.config import ProxyConfig

VERSION = "2.34.0-shoal"  # the Swift API level Shoal speaks, with our suffix


def info_document(config: ProxyConfig) -> dict[str, Any]:
    swift: dict[str, Any] = {
        **limits.SWIFT_CONSTRAINTS,
        "version": VERSION,
        "account_autocreate": config.account_autocreate,
        "allow_account_management": config.allow_account_management,
        "policies": [
            {"name": p.name, **({"default": True} if p.default else {})} for p in config.policy_list
        ],
        "strict_cors_mode": True,
    }
    # No "dlo" key: Swift 2.38 does not publish one either (DLO always works; clients check
    # "slo" to choose static large objects, which Shoal does not have yet).
    document: dict[str, Any] = {"swift": swift}
    if config.auth == "tempauth":
        document["tempauth"] = {"account_acls": False}
    else:
        document["keystoneauth"] = {}
    return document
