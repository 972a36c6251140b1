"""ShoalISCSIDriver inside Cinder 29's real VolumeManager against a real blockd (level 2).

Goal: what cinder-volume does with the driver is what Shoal's block node does, byte for byte.
Method: the manager runs in its own process with Cinder's venv (``cinder_host.py``: SQLite, the
``fake://`` transport), loads the driver from ``volume_driver`` like the service, and talks to a
real blockd (reflink on a loop-mounted XFS, a private tgtd). Every ``connection_info`` Cinder
hands to Nova is used as is by a real iSCSI initiator (QEMU's libiscsi driver) to write and read
the volume. Failure paths are real (blockd stopped) or fault injections named as such in
``cinder_host.py``; what is checked is Cinder's rows and blockd's own state afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from shoal.units import GiB, MiB
from tests.block.support import DEV_TOKEN, INITIATOR, OTHER_INITIATOR, BlockdClient, Initiator
from tests.cinder.support import (
    CinderCallError,
    CinderHost,
    attach,
    blockd_exports,
    write_cinder_conf,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

DATA_BYTES = 2 * MiB
IQN_PREFIX = "iqn.2010-10.org.openstack:"


def login_refused(initiator: Initiator, info: dict) -> bool:
    try:
        initiator.qemu_io(info, "read -q 0 4k")
    except subprocess.CalledProcessError:
        return True
    return False


def test_cinder_loads_the_driver_and_reports_blockd_capacity(cinder, node):
    assert cinder.ready["driver_initialized"] is True
    assert cinder.ready["driver_class"] == "blockd.cinder_driver.ShoalISCSIDriver"
    stats = cinder.call("stats")
    blockd = node.api.ok("GET", "/v1/stats")
    assert stats["storage_protocol"] == "iSCSI"
    assert stats["volume_backend_name"] == "shoal1"
    (pool,) = stats["pools"]
    assert pool["thin_provisioning_support"] is True
    assert pool["thick_provisioning_support"] is False
    assert pool["total_capacity_gb"] == blockd["total_capacity_gb"]
    assert pool["provisioned_capacity_gb"] == blockd["provisioned_capacity_gb"]
    assert pool["max_over_subscription_ratio"] == blockd["max_over_subscription_ratio"]
    assert pool["online_extend_support"] is True


def test_lifecycle_through_cinder_with_data_checked_over_iscsi(cinder, node):
    cinder.call("calls")  # forget earlier calls
    v1 = cinder.call("create_volume", size=1)
    assert v1["status"] == "available"
    assert v1["provider_id"] == v1["id"]
    assert v1["provider_location"] is None  # no export before an attach (Cinder's contract)
    assert node.api.ok("GET", f"/v1/volumes/{v1['id']}")["volume"]["size_bytes"] == GiB

    attachment, info = attach(cinder, v1["id"])
    assert info["driver_volume_type"] == "iscsi"
    assert info["target_iqn"] == f"{IQN_PREFIX}volume-{v1['id']}"
    assert info["target_portal"] == node.tgtd.portal
    assert info["target_lun"] == 1  # tgt: LUN 0 is the controller
    assert info["target_discovered"] is False
    assert info["auth_method"] == "CHAP"
    assert len(info["auth_username"]) == 20 and len(info["auth_password"]) == 16
    assert info["volume_id"] == v1["id"] and info["attachment_id"] == attachment
    assert info["access_mode"] == "rw"
    row = cinder.call("show_volume", volume_id=v1["id"])
    assert row["provider_location"] == f"{node.tgtd.portal},1 {info['target_iqn']} 1"
    assert row["provider_auth"] == f"CHAP {info['auth_username']} {info['auth_password']}"
    assert row["status"] == "in-use" and row["attach_status"] == "attached"

    before, after = os.urandom(DATA_BYTES), os.urandom(DATA_BYTES)
    node.initiator.write(info, before)  # exactly the connection_info Nova would get
    snapshot = cinder.call("create_snapshot", volume_id=v1["id"])
    assert snapshot["status"] == "available" and snapshot["progress"] == "100%"
    node.initiator.write(info, after)

    v2 = cinder.call("create_volume", size=2, snapshot_id=snapshot["id"])
    assert v2["status"] == "available"
    v3 = cinder.call("create_volume", size=1, source_volid=v1["id"])
    assert v3["status"] == "available"
    a2, info2 = attach(cinder, v2["id"])
    a3, info3 = attach(cinder, v3["id"])
    assert node.initiator.read(info2, DATA_BYTES) == before  # the snapshot-time data
    assert node.initiator.capacity_bytes(info2) == 2 * GiB  # larger than its snapshot
    assert node.initiator.read(info3, DATA_BYTES) == after  # the clone has the current data
    assert info3["auth_username"] != info["auth_username"]  # every volume its own CHAP pair

    extended = cinder.call("extend_volume", volume_id=v1["id"], new_size=3)  # online
    assert extended["size"] == 3 and extended["status"] == "in-use"
    assert cinder.call("nova_events")[-1][2] == v1["id"]  # Nova told to rescan (recorded)
    assert node.initiator.capacity_bytes(info) == 3 * GiB
    tail = os.urandom(MiB)
    node.initiator.write(info, tail, offset=2 * GiB + MiB)
    assert node.initiator.read(info, MiB, offset=2 * GiB + MiB) == tail

    for volume, att in ((v1, attachment), (v2, a2), (v3, a3)):
        detached = cinder.call("detach", volume_id=volume["id"], attachment_id=att)
        assert detached["status"] == "available"
        assert blockd_exports(node, volume["id"]) == []
    assert login_refused(node.initiator, info)

    for volume in (v3, v2):
        assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True
    assert cinder.call("delete_snapshot", snapshot_id=snapshot["id"])["deleted"] is True
    assert cinder.call("delete_volume", volume_id=v1["id"])["deleted"] is True
    calls = cinder.call("calls")
    assert calls.count("create_export") == calls.count("initialize_connection") == 3
    assert calls.count("terminate_connection") == 3
    deletes = [i for i, c in enumerate(calls) if c == "delete_volume"]
    assert len(deletes) == 3 and all(calls[i - 1] == "remove_export" for i in deletes)
    for volume in (v1, v2, v3):
        assert node.api.call("GET", f"/v1/volumes/{volume['id']}")[0] == 404
    assert node.api.call("GET", f"/v1/snapshots/{snapshot['id']}")[0] == 404


def test_two_hosts_share_an_export_until_the_last_detach(cinder, node, tmp_path):
    volume = cinder.call("create_volume", size=1)
    first, info = attach(cinder, volume["id"], INITIATOR)
    second, other_info = attach(cinder, volume["id"], OTHER_INITIATOR)
    assert other_info["auth_password"] == info["auth_password"]  # one pair per volume
    other = Initiator(OTHER_INITIATOR, tmp_path)
    cinder.call("calls")

    cinder.call("detach", volume_id=volume["id"], attachment_id=first)
    assert cinder.call("calls") == ["terminate_connection"]  # shared: no remove_export
    assert blockd_exports(node, volume["id"]) == [OTHER_INITIATOR]
    assert login_refused(node.initiator, info)
    other.qemu_io(other_info, "read -q 0 4k")  # the other host keeps its disk

    cinder.call("detach", volume_id=volume["id"], attachment_id=second)
    assert cinder.call("calls") == ["terminate_connection", "remove_export"]
    assert blockd_exports(node, volume["id"]) == []
    assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True


def test_revert_to_snapshot_through_cinder(cinder, node):
    volume = cinder.call("create_volume", size=1)
    attachment, info = attach(cinder, volume["id"])
    old, new = os.urandom(DATA_BYTES), os.urandom(DATA_BYTES)
    node.initiator.write(info, old)
    snapshot = cinder.call("create_snapshot", volume_id=volume["id"])
    node.initiator.write(info, new)
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)

    reverted = cinder.call("revert", volume_id=volume["id"], snapshot_id=snapshot["id"])
    assert reverted["status"] == "available"
    attachment, info = attach(cinder, volume["id"])
    assert node.initiator.read(info, DATA_BYTES) == old
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    snapshots = node.api.ok("GET", f"/v1/snapshots?volume_id={volume['id']}")["snapshots"]
    assert [s["id"] for s in snapshots] == [snapshot["id"]]  # Cinder's safety snapshot is gone
    cinder.call("delete_snapshot", snapshot_id=snapshot["id"])
    cinder.call("delete_volume", volume_id=volume["id"])


def test_manage_and_unmanage_a_blockd_volume(cinder, node):
    existing = node.create_volume(2)
    managed = cinder.call("manage", ref={"source-name": existing["name"]})
    assert managed["status"] == "available" and managed["size"] == 2
    assert managed["provider_id"] == existing["id"] != managed["id"]
    attachment, info = attach(cinder, managed["id"])
    assert info["target_iqn"] == IQN_PREFIX + existing["name"]  # blockd's own volume
    node.initiator.qemu_io(info, "read -q 0 4k")
    cinder.call("detach", volume_id=managed["id"], attachment_id=attachment)
    assert cinder.call("unmanage", volume_id=managed["id"])["deleted"] is True
    assert node.api.ok("GET", f"/v1/volumes/{existing['id']}")["volume"]["id"] == existing["id"]
    node.api.ok("DELETE", f"/v1/volumes/{existing['id']}", status=204)

    with pytest.raises(CinderCallError) as refused:
        cinder.call("manage", ref={"source-id": str(uuid.uuid4())})
    assert refused.value.type == "ManageExistingInvalidReference"


def test_deleted_volume_data_never_reaches_the_next_volume(cinder, node):
    """A tenant's bytes must not be readable by whoever gets the space next (through iSCSI)."""
    secret = os.urandom(DATA_BYTES)
    volume = cinder.call("create_volume", size=1)
    attachment, info = attach(cinder, volume["id"])
    for offset in (0, 64 * MiB, GiB - DATA_BYTES):
        node.initiator.write(info, secret, offset=offset)
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    cinder.call("delete_volume", volume_id=volume["id"])

    for _ in range(2):  # the next volumes, on the blocks just freed
        fresh = cinder.call("create_volume", size=1)
        attachment, info = attach(cinder, fresh["id"])
        for offset in (0, 64 * MiB, GiB - DATA_BYTES):
            assert node.initiator.read(info, DATA_BYTES, offset=offset) == bytes(DATA_BYTES)
        cinder.call("detach", volume_id=fresh["id"], attachment_id=attachment)
        cinder.call("delete_volume", volume_id=fresh["id"])


def test_busy_volume_stays_available_and_intact(cinder, node):
    """blockd refuses to delete an exported volume; Cinder must keep it, not lose it."""
    volume = cinder.call("create_volume", size=1)
    cinder.call("inject", kind="export_after_remove_export", initiator=OTHER_INITIATOR)
    row = cinder.call("delete_volume", volume_id=volume["id"])
    assert row["deleted"] is False and row["status"] == "available"
    assert blockd_exports(node, volume["id"]) == [OTHER_INITIATOR]
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{OTHER_INITIATOR}", status=204)
    assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True
    assert node.api.call("GET", f"/v1/volumes/{volume['id']}")[0] == 404


def test_failed_connection_removes_the_export(cinder, node):
    volume = cinder.call("create_volume", size=1)
    cinder.call("calls")
    cinder.call("inject", kind="initialize_connection_fails")
    with pytest.raises(CinderCallError) as failed:
        attach(cinder, volume["id"])
    assert failed.value.type == "VolumeBackendAPIException"
    assert cinder.call("calls") == ["create_export", "initialize_connection", "remove_export"]
    assert blockd_exports(node, volume["id"]) == []  # nobody can log in to a failed attach
    cinder.call("delete_volume", volume_id=volume["id"])


def test_blockd_down_fails_cleanly_and_recovers(cinder, node):
    volume = cinder.call("create_volume", size=1)
    node.blockd.stop()
    try:
        with pytest.raises(CinderCallError) as failed:
            cinder.call("create_volume", size=1)
        assert failed.value.result["status"] == "error"
        assert "unreachable" in failed.value.message
        with pytest.raises(CinderCallError):
            attach(cinder, volume["id"])
        with pytest.raises(CinderCallError):
            cinder.call("stats")
    finally:
        node.blockd.start()  # a new port: tell the driver, as an operator would in cinder.conf
        node.api = BlockdClient(node.blockd.url)
        cinder.call("set_blockd_url", url=node.blockd.url)
    broken = failed.value.result
    assert cinder.call("delete_volume", volume_id=broken["id"])["deleted"] is True  # 404 = gone
    attachment, info = attach(cinder, volume["id"])
    node.initiator.qemu_io(info, "read -q 0 4k")
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    assert cinder.call("delete_volume", volume_id=volume["id"])["deleted"] is True


def test_cinder_volume_restart_keeps_attached_volumes_usable(cinder_venv, node, tmp_path):
    """init_host after a restart calls ensure_export for every in-use volume: it must not put
    them in error, and the export Nova is using keeps working."""
    options = {"shoal_blockd_url": node.blockd.url, "shoal_blockd_token": DEV_TOKEN}
    conf = write_cinder_conf(tmp_path, options)
    first = CinderHost(cinder_venv, tmp_path, conf)
    try:
        volume = first.call("create_volume", size=1)
        attachment, info = attach(first, volume["id"])
        data = os.urandom(DATA_BYTES)
        node.initiator.write(info, data)
    finally:
        first.stop()
    second = CinderHost(cinder_venv, tmp_path, conf)  # same database: a restarted cinder-volume
    try:
        assert second.ready["driver_initialized"] is True
        assert second.call("show_volume", volume_id=volume["id"])["status"] == "in-use"
        assert second.call("calls") == ["ensure_export"]  # by init_host, for the in-use volume
        assert node.initiator.read(info, DATA_BYTES) == data
        second.call("detach", volume_id=volume["id"], attachment_id=attachment)
        assert second.call("delete_volume", volume_id=volume["id"])["deleted"] is True
    finally:
        second.stop()
