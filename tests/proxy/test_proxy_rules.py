"""The proxy's pure rules, without processes: path parsing, quorum, ACL parsing and referrers,
error limiting, tempauth tokens, listing formats, and keystoneauth's decision table over
Identity records (the same records shoal.keystone builds from Keystone's answers)."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.acl import Decision, acl_allows, parse_acl, referrer_allowed
from proxy.cluster import best_status, quorum_size
from proxy.config import ProxyConfig
from proxy.error_limiting import ErrorLimiter
from proxy.errors import SwiftError
from proxy.keystoneauth import KeystoneAuth, KeystonePrincipal
from proxy.listing_format import render_listing
from proxy.routing import SwiftPath, parse_path
from proxy.tempauth import TempAuth
from shoal.keystone import Identity


def test_paths_split_on_the_first_four_slashes_and_keep_object_slashes():
    assert parse_path("/v1/AUTH_a/c/d/e%2Ff") == SwiftPath("v1", "AUTH_a", "c", "d/e/f")
    assert parse_path("/v1/AUTH_a/") == SwiftPath("v1", "AUTH_a")
    assert parse_path("/v2/AUTH_a") is None
    with pytest.raises(SwiftError) as caught:
        parse_path("/v1/AUTH_a/c/%FF")
    assert caught.value.status == 412


def test_quorum_is_a_majority_and_the_best_status_needs_one():
    assert [quorum_size(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert best_status([201, 201, 503], 3) == 201
    assert best_status([404, 404, 201], 3) == 404
    assert best_status([201, 503], 3) is None


def test_acl_referrers_and_groups():
    acl = parse_acl(".r:*,.rlistings, test:tester3 ,.r:-bad.example.com")
    assert acl.groups == {".rlistings", "test:tester3"}
    assert referrer_allowed("http://good.example.com/x", acl.referrers)
    assert not referrer_allowed("http://bad.example.com/x", acl.referrers)
    assert acl_allows("GET", False, ".r:*,.rlistings", set(), None)
    assert not acl_allows("GET", False, ".r:*", set(), None)  # listing needs .rlistings
    assert not acl_allows("PUT", True, ".r:*", set(), None)


def test_a_node_is_limited_after_too_many_errors_and_forgiven_later():
    now = [0.0]
    limiter = ErrorLimiter(2, 10.0, clock=lambda: now[0])
    key = ("127.0.0.1", 6000, "d1")
    for _ in range(3):
        limiter.record_error(key, "boom")
    assert limiter.is_limited(key)
    now[0] = 11.0
    assert not limiter.is_limited(key)


def test_tempauth_tokens_name_their_user_and_cannot_be_forged():
    auth = TempAuth(["test:tester testing .admin"], b"k" * 32)
    user = auth.users["test:tester"]
    token, _ = auth.issue_token(user)
    assert auth.user_of_token(token) == user
    assert auth.user_of_token(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    other = TempAuth(["test:tester testing .admin"], b"z" * 32)
    assert other.user_of_token(token) is None


def test_listing_formats():
    rows = [{"name": "a&b", "hash": "h", "bytes": 1, "content_type": "t", "last_modified": "m"},
            {"subdir": "d/"}]  # fmt: skip
    assert render_listing(rows, "plain", "container", "c")[1] == b"a&b\nd/\n"
    xml = render_listing(rows, "xml", "container", "c")[1].decode()
    assert "<name>a&amp;b</name>" in xml and '<subdir name="d/">' in xml
    assert render_listing([], "plain", "container", "c")[0] == 204


def _identity(project_id: str | None, roles: set[str], user_id: str = "u1") -> Identity:
    return Identity(
        user_id=user_id, user_name="user", user_domain_id="default", user_domain_name="Default",
        project_id=project_id, project_name="proj", project_domain_id="default",
        project_domain_name="Default", domain_id=None, domain_name=None, system_scoped=False,
        roles=frozenset(roles), role_ids=frozenset(), expires_at=2e9, issued_at=1e9,
        audit_ids=(), methods=("password",), is_admin_project=True,
    )  # fmt: skip


@pytest.fixture
def keystone_auth() -> KeystoneAuth:
    config = dataclasses.replace(ProxyConfig(), auth="keystone", system_reader_roles=["auditor"])
    return KeystoneAuth(config)


@pytest.mark.parametrize(
    ("roles", "service_roles", "account", "method", "expected"),
    [
        ({"member"}, None, "AUTH_p1", "PUT", Decision.OWNER),
        ({"reader"}, None, "AUTH_p1", "GET", Decision.ALLOWED),
        ({"reader"}, None, "AUTH_p1", "PUT", Decision.NEED_ACL),
        ({"member"}, None, "AUTH_p2", "GET", Decision.NEED_ACL),
        ({"ResellerAdmin"}, None, "AUTH_p2", "DELETE", Decision.OWNER),
        ({"auditor"}, None, "AUTH_p2", "GET", Decision.OWNER),
        ({"member"}, None, "SERVICE_p1", "PUT", Decision.NEED_ACL),
        ({"member"}, {"service"}, "SERVICE_p1", "PUT", Decision.OWNER),
        ({"member"}, {"member"}, "SERVICE_p1", "PUT", Decision.NEED_ACL),
    ],
)
def test_keystoneauth_decision_table(
    keystone_auth, roles, service_roles, account, method, expected
):
    service = _identity("svc", service_roles) if service_roles else None
    principal = KeystonePrincipal(_identity("p1", roles), service)
    path = SwiftPath("v1", account, "c", "o")
    assert keystone_auth.authorize(principal, method, path, None, None) is expected


def test_keystoneauth_acls_name_project_and_user_ids(keystone_auth):
    principal = KeystonePrincipal(_identity("p2", {"member"}, user_id="u2"), None)
    path = SwiftPath("v1", "AUTH_p1", "c", "o")
    assert keystone_auth.authorize(principal, "GET", path, "p2:u2", None) is Decision.ALLOWED
    assert keystone_auth.authorize(principal, "GET", path, "p2:*", None) is Decision.ALLOWED
    with pytest.raises(SwiftError) as caught:
        keystone_auth.authorize(principal, "GET", path, "p3:*", None)
    assert caught.value.status == 403
    with pytest.raises(SwiftError) as caught:
        keystone_auth.authorize(None, "GET", path, "p2:*", None)
    assert caught.value.status == 401
    own = KeystonePrincipal(_identity("p1", {"member"}), None)
    with pytest.raises(SwiftError):
        keystone_auth.authorize(own, "DELETE", SwiftPath("v1", "AUTH_p1"), None, None)
