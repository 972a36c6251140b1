"""Cinder's own Swift backup driver against Shoal's object store (``shoal aio``, tempauth).

Goal: Cinder's ``cinder.backup.drivers.swift`` (python-swiftclient: containers, chunked objects,
metadata and sha256 files) works unchanged on Shoal's proxy. Method: a volume made by Cinder on
blockd is written through iSCSI, backed up by the real driver to the real proxy, restored into a
second volume, and the restored bytes are read back through iSCSI. The volume files are handed to
the driver directly (see ``cinder_host.op_swift_backup``).
"""

from __future__ import annotations

import os

import pytest
import swiftclient

from shoal.units import MiB
from tests.cinder.support import attach
from tests.proxy.aio_harness import AioCluster

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def aio(tmp_path_factory):
    cluster = AioCluster(tmp_path_factory.mktemp("aio-cinder") / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop()


def volume_file(node, volume_id: str) -> str:
    return str(node.mount / "volumes" / f"volume-{volume_id}")


def test_cinder_swift_backup_and_restore_on_shoal(cinder, node, aio):
    source = cinder.call("create_volume", size=1)
    attachment, info = attach(cinder, source["id"])
    head, tail = os.urandom(4 * MiB), os.urandom(MiB)
    node.initiator.write(info, head)
    node.initiator.write(info, tail, offset=700 * MiB)
    cinder.call("detach", volume_id=source["id"], attachment_id=attachment)
    target = cinder.call("create_volume", size=1)

    swift = {
        "auth": "single_user",
        "auth_version": "1",
        "auth_url": aio.auth_url,
        "user": "test:tester",
        "key": "testing",
        "container": "cinder-backups",
    }
    result = cinder.call(
        "swift_backup",
        volume_id=source["id"],
        volume_path=volume_file(node, source["id"]),
        target_id=target["id"],
        target_path=volume_file(node, target["id"]),
        swift=swift,
    )
    connection = swiftclient.Connection(aio.auth_url, "test:tester", "testing", retries=0)
    _, objects = connection.get_container(result["container"])
    names = [o["name"] for o in objects]
    assert any(n.endswith("_metadata") for n in names)
    assert any(n.endswith("_sha256file") for n in names)
    assert result["objects"] >= 1

    attachment, restored = attach(cinder, target["id"])
    assert node.initiator.read(restored, len(head)) == head
    assert node.initiator.read(restored, len(tail), offset=700 * MiB) == tail
    cinder.call("detach", volume_id=target["id"], attachment_id=attachment)
    for volume in (source, target):
        cinder.call("delete_volume", volume_id=volume["id"])
