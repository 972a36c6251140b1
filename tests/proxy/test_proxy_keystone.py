"""Keystone mode against a real Keystone (tests.support.keystone: PyPI keystone, SQLite, fernet,
gunicorn): Swift's keystoneauth decisions for valid, expired, revoked and garbage tokens, wrong
project, reader role, reseller admin, service tokens and ACLs naming project/user ids.
Method: a keystone-mode ``shoal proxy`` beside the session's ``shoal aio`` (same rings)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from tests.proxy.aio_harness import AioCluster, ProxyProcess
from tests.support.keystone import Keystone, keystone_fixture

keystone = keystone_fixture()


@pytest.fixture(scope="module")
def proxy(aio: AioCluster, keystone: Keystone, tmp_path_factory) -> Iterator[ProxyProcess]:
    config = keystone.keystone_config()
    process = ProxyProcess(
        tmp_path_factory.mktemp("keystone-proxy"),
        {"auth": "keystone", "ring_dir": str(aio.data / "rings"),
         "reseller_admin_role": "admin", "operator_roles": ["member"]},
        {"auth_url": config.auth_url, "username": config.username, "password": config.password,
         "project_name": config.project_name, "cache_ttl_s": 0.0},
    ).start()  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


def call(proxy: ProxyProcess, method: str, path: str, token: str | None = None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["X-Auth-Token"] = token
    return requests.request(method, f"{proxy.url}/v1/{path}", headers=headers, timeout=30, **kwargs)


def test_a_member_owns_its_project_account(proxy: ProxyProcess, keystone: Keystone):
    token, _ = keystone.issue_token("demo")
    account = "AUTH_" + keystone.demo.project_id
    assert call(proxy, "PUT", f"{account}/ks", token).status_code in (201, 202)
    assert call(proxy, "PUT", f"{account}/ks/o", token, data=b"keystone data").status_code == 201
    assert call(proxy, "GET", f"{account}/ks/o", token).content == b"keystone data"
    assert call(proxy, "HEAD", account, token).status_code == 204


def test_garbage_revoked_and_missing_tokens_are_401(proxy: ProxyProcess, keystone: Keystone):
    account = "AUTH_" + keystone.demo.project_id
    garbage = call(proxy, "GET", account, "gAAAAA" + uuid.uuid4().hex)
    assert garbage.status_code == 401
    assert garbage.headers["WWW-Authenticate"].startswith("Keystone uri=")
    token, _ = keystone.issue_token("demo")
    assert call(proxy, "GET", account, token).status_code in (200, 204)
    keystone.revoke_token(token)
    assert call(proxy, "GET", account, token).status_code == 401
    anonymous = call(proxy, "GET", account)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.auth_url}"'


def test_an_expired_token_is_401(proxy: ProxyProcess, keystone: Keystone):
    replica = keystone.spawn_replica(token_expiration_s=8)
    try:
        token, body = keystone.issue_token("demo", auth_url=replica.auth_url)
        account = "AUTH_" + keystone.demo.project_id
        assert call(proxy, "HEAD", account, token).status_code == 204
    finally:
        replica.stop()
    expires_at = datetime.fromisoformat(body["token"]["expires_at"].replace("Z", "+00:00"))
    time.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.5)
    assert call(proxy, "HEAD", account, token).status_code == 401


def test_another_projects_account_is_403(proxy: ProxyProcess, keystone: Keystone):
    token, _ = keystone.issue_token("other")
    assert call(proxy, "GET", "AUTH_" + keystone.demo.project_id, token).status_code == 403
    assert call(proxy, "PUT", "AUTH_" + keystone.demo.project_id + "/x", token).status_code == 403


def test_a_reader_may_read_but_not_write(proxy: ProxyProcess, keystone: Keystone):
    demo, _ = keystone.issue_token("demo")
    account = "AUTH_" + keystone.demo.project_id
    call(proxy, "PUT", f"{account}/readable", demo)
    call(proxy, "PUT", f"{account}/readable/o", demo, data=b"r")
    reader, _ = keystone.issue_token("reader")
    assert call(proxy, "GET", f"{account}/readable/o", reader).content == b"r"
    assert call(proxy, "PUT", f"{account}/readable/p", reader, data=b"w").status_code == 403
    assert call(proxy, "POST", f"{account}/readable", reader).status_code == 403


def test_reseller_admin_reaches_every_account(proxy: ProxyProcess, keystone: Keystone):
    admin, _ = keystone.issue_token("admin")
    account = "AUTH_" + keystone.demo.project_id
    assert call(proxy, "HEAD", account, admin).status_code == 204


def test_service_prefix_needs_a_service_token_too(proxy: ProxyProcess, keystone: Keystone):
    demo, _ = keystone.issue_token("demo")
    svc, _ = keystone.issue_token("svc")
    account = "SERVICE_" + keystone.demo.project_id
    assert call(proxy, "PUT", f"{account}/images", demo).status_code == 403
    both = {"X-Service-Token": svc}
    assert call(proxy, "PUT", f"{account}/images", demo, headers=both).status_code in (201, 202)
    assert (
        call(proxy, "PUT", f"{account}/images/i", demo, headers=dict(both), data=b"img").status_code
        == 201
    )
    assert call(proxy, "GET", f"{account}/images/i", demo).status_code == 403
    not_service = {"X-Service-Token": keystone.issue_token("other")[0]}
    assert call(proxy, "GET", f"{account}/images/i", demo, headers=not_service).status_code == 403


def test_an_acl_naming_project_and_user_ids_grants_access(proxy: ProxyProcess, keystone: Keystone):
    demo, _ = keystone.issue_token("demo")
    other, _ = keystone.issue_token("other")
    account = "AUTH_" + keystone.demo.project_id
    call(proxy, "PUT", f"{account}/shared", demo)
    call(proxy, "PUT", f"{account}/shared/o", demo, data=b"shared")
    assert call(proxy, "GET", f"{account}/shared/o", other).status_code == 403
    grant = f"{keystone.other.project_id}:{keystone.other.user_id}"
    call(proxy, "POST", f"{account}/shared", demo, headers={"X-Container-Read": grant})
    assert call(proxy, "GET", f"{account}/shared/o", other).content == b"shared"
    assert call(proxy, "PUT", f"{account}/shared/p", other, data=b"x").status_code == 403
    call(proxy, "POST", f"{account}/shared", demo,
         headers={"X-Container-Write": f"{keystone.other.project_id}:*"})  # fmt: skip
    assert call(proxy, "PUT", f"{account}/shared/p", other, data=b"x").status_code == 201
