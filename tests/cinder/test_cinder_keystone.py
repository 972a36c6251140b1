"""ShoalISCSIDriver with Keystone service credentials against a blockd in keystone auth mode.

Goal: the production auth path: cinder-volume's driver gets its own Keystone token (a user with
role ``service``), blockd validates it against the same real Keystone (tests/support/keystone.py);
a revoked token is replaced without failing the call; a user without the role is refused at
start-up (the driver stays uninitialized, as Cinder does with a backend it cannot use).
"""

from __future__ import annotations

import pytest

from tests.block.support import BlockdClient, BlockdProcess
from tests.cinder.support import CinderHost, attach, blockd_exports, write_cinder_conf
from tests.support.keystone import keystone_fixture

pytestmark = [pytest.mark.root, pytest.mark.slow]

keystone = keystone_fixture()


@pytest.fixture(scope="module")
def keystone_blockd(node, keystone, tmp_path_factory):
    svc = keystone.svc
    workdir = tmp_path_factory.mktemp("blockd-keystone")
    config = {
        **node.config,
        # Its own saved exports: node's blockd (same tgtd) re-creates the targets saved in its
        # conf dir every second, and with a shared dir it could re-create a target this blockd
        # had just removed (a detached volume then stayed exported: a flaky test).
        "tgt_conf_dir": str(workdir / "tgt-conf"),
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


def start_cinder(cinder_venv, tmp_path_factory, blockd, keystone, user) -> CinderHost:
    workdir = tmp_path_factory.mktemp("cinder-keystone")
    options = {
        "shoal_blockd_url": blockd.url,
        "shoal_auth_url": keystone.auth_url,
        "shoal_username": user.name,
        "shoal_password": user.password,
        "shoal_project_name": user.project_name,
    }
    return CinderHost(cinder_venv, workdir, write_cinder_conf(workdir, options))


@pytest.fixture(scope="module")
def cinder_user(keystone):
    """Cinder's own service user (not blockd's), so revoking its tokens spares blockd's."""
    return keystone.create_user("cinder-volume", "service", "service")


@pytest.fixture(scope="module")
def cinder(keystone_blockd, cinder_venv, keystone, cinder_user, tmp_path_factory):
    host = start_cinder(cinder_venv, tmp_path_factory, keystone_blockd, keystone, cinder_user)
    try:
        yield host
    finally:
        host.stop()


def test_volume_lifecycle_with_keystone_tokens(cinder, node, keystone_blockd):
    assert cinder.ready["driver_initialized"] is True
    volume = cinder.call("create_volume", size=1)
    assert volume["status"] == "available"
    attachment, info = attach(cinder, volume["id"])
    data = (b"keystone-authenticated" * 200)[:4096]  # whole sectors
    node.initiator.write(info, data)
    assert node.initiator.read(info, len(data)) == data
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    assert blockd_exports(node, volume["id"]) == []
    assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True
    assert BlockdClient(keystone_blockd.url).call("GET", f"/v1/volumes/{volume['id']}")[0] == 401


def test_a_revoked_token_is_replaced_transparently(cinder, keystone, cinder_user):
    cinder.call("stats")  # the driver holds a token now
    keystone.set_user_enabled(cinder_user, False)  # Keystone revokes every token of the user
    keystone.set_user_enabled(cinder_user, True)
    volume = cinder.call("create_volume", size=1)  # 401 once, a new token, the call succeeds
    assert volume["status"] == "available"
    assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True


def test_a_user_without_the_service_role_is_refused_at_start(
    keystone_blockd, cinder_venv, keystone, tmp_path_factory
):
    host = start_cinder(cinder_venv, tmp_path_factory, keystone_blockd, keystone, keystone.demo)
    try:
        assert host.ready["driver_initialized"] is False
        assert "403" in (host.workdir / "cinder.log").read_text()
    finally:
        host.stop()
