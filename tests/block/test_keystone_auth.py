"""blockd's keystone auth mode against a real Keystone (tests/support/keystone.py).

Goal: Cinder's service user gets in; a project member, a garbage token and a revoked token do
not; and the answers are 401 vs 403 as Keystone's verdict says. Method: a second blockd process
on the module's node, configured with ``auth_mode = "keystone"`` and the provisioned ``svc``
user (role ``service``) as its own credentials; tokens are issued by the real Keystone.
"""

from __future__ import annotations

import pytest

from tests.block.support import BlockdClient, BlockdProcess
from tests.support.keystone import keystone_fixture

pytestmark = [pytest.mark.root]

keystone = keystone_fixture()


@pytest.fixture(scope="module")
def keystone_blockd(node, keystone, tmp_path_factory):
    svc = keystone.svc
    workdir = tmp_path_factory.mktemp("blockd-keystone")
    config = {
        **node.config,
        "tgt_conf_dir": str(workdir / "tgt-conf"),  # node's blockd reconciles its own dir
        "auth_mode": "keystone",
        "keystone_auth_url": keystone.auth_url,
        "keystone_username": svc.name,
        "keystone_password": svc.password,
        "keystone_project_name": svc.project_name,
    }
    blockd = BlockdProcess(workdir, config)
    blockd.start()
    try:
        yield blockd
    finally:
        blockd.stop()


def status_with(blockd: BlockdProcess, token: str | None) -> tuple[int, dict]:
    return BlockdClient(blockd.url, token).call("GET", "/v1/stats")


def test_service_and_admin_roles_are_let_in(keystone_blockd, keystone):
    for user in ("svc", "admin"):
        token, _ = keystone.issue_token(user)
        status, body = status_with(keystone_blockd, token)
        assert status == 200, (user, body)
        assert "total_capacity_gb" in body


def test_a_member_token_is_valid_but_forbidden(keystone_blockd, keystone):
    token, _ = keystone.issue_token("demo")
    status, body = status_with(keystone_blockd, token)
    assert status == 403 and "service" in body["error"]["message"]


def test_garbage_missing_and_revoked_tokens_are_unauthorized(keystone_blockd, keystone):
    assert status_with(keystone_blockd, "garbage-token")[0] == 401
    assert status_with(keystone_blockd, None)[0] == 401
    token, _ = keystone.issue_token("svc")
    keystone.revoke_token(token)
    assert status_with(keystone_blockd, token)[0] == 401  # never validated: nothing cached


def test_the_dev_token_means_nothing_in_keystone_mode(keystone_blockd, node):
    assert status_with(keystone_blockd, node.config["dev_token"])[0] == 401
