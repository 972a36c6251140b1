"""Parsing Keystone token bodies into Identity: timestamps, scopes, and malformed documents.

Method: pure calls on hand-written bodies shaped like Keystone 30's (real bodies are covered by
test_validator.py against a real Keystone).
"""

from __future__ import annotations

import pytest

from shoal.keystone import KeystoneUnavailable, identity_from_token_body
from shoal.keystone_identity import parse_time, parse_token_body

BODY = {
    "token": {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "u1", "name": "demo"},
        "audit_ids": ["a1"],
        "expires_at": "2026-11-25T19:36:09.000000Z",
        "issued_at": "2026-11-25T18:36:09.000000Z",
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "p1", "name": "demo"},
        "is_domain": False,
        "roles": [{"id": "r1", "name": "reader"}, {"id": "r2", "name": "member"}],
    }
}


def test_keystone_timestamps_are_utc_with_or_without_the_z():
    assert parse_time("1970-01-01T00:00:10.000000Z") == 10.0
    assert parse_time("1970-01-01T00:00:10.500000") == 10.5
    with pytest.raises(ValueError):
        parse_time("yesterday")
    with pytest.raises(ValueError):
        parse_time(None)


def test_project_token_body_gives_every_field():
    identity = parse_token_body(BODY)
    assert (identity.user_id, identity.user_name, identity.user_domain_id) == (
        "u1",
        "demo",
        "default",
    )
    assert (identity.project_id, identity.project_name) == ("p1", "demo")
    assert identity.roles == frozenset({"reader", "member"})
    assert identity.role_ids == frozenset({"r1", "r2"})
    assert identity.expires_at - identity.issued_at == 3600
    assert identity.scope == "project" and identity.audit_ids == ("a1",)
    assert identity.has_any_role(["MEMBER"]) and not identity.has_any_role(["admin"])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": None},
        {"token": {"user": {}}},
        {"token": {**BODY["token"], "expires_at": "soon"}},
        {"token": {**BODY["token"], "roles": [{"name": "no id"}]}},
        [],
    ],
)
def test_malformed_body_is_keystones_fault_not_the_clients(body):
    with pytest.raises(ValueError):
        parse_token_body(body)
    with pytest.raises(KeystoneUnavailable):
        identity_from_token_body(body)
