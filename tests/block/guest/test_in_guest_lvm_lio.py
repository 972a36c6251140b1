"""blockd's production path, run INSIDE the User-Mode-Linux guest: the lvm-thin backend on a real
dm-thin pool, the LIO kernel target through rtslib-fb, and open-iscsi's kernel initiator
(``iscsiadm``), with the data checked on ``/dev/sdX``.

Goal: the same scenario as the host test (tests/block/test_reflink_tgt.py) on the path the host
kernel cannot run (no device-mapper, no configfs there). Method: ``tests/block/test_guest.py``
boots the guest and runs this module with pytest; everywhere else it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from shoal.units import GiB, MiB
from tests.block.guest.support import (
    CLEAR_LIO,
    DEVICE_WAIT_S,
    DISKS,
    GUEST_ONLY,
    VG,
    Iscsiadm,
    guest_node,
    own_initiator,
    read,
    sh,
    write,
)
from tests.block.support import BlockdClient, ImageServer, wait_task

pytestmark = GUEST_ONLY

OTHER_INITIATOR = "iqn.2024-01.org.example:not-exported"
DATA_BYTES = 4 * MiB


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with guest_node(tmp_path_factory.mktemp("blockd-guest"), DISKS[0]) as guest:
        yield guest


def test_blockd_made_the_thin_pool_and_reports_it(node):
    stats = node.api.ok("GET", "/v1/stats")
    assert stats["thin_provisioning_support"] is True
    assert 7 < stats["total_capacity_gb"] < 8  # 95% of an 8 GiB VG
    lvs = sh("lvs", "--noheadings", "-o", "lv_attr", f"{VG}/{VG}-pool").stdout.strip()
    assert lvs.startswith("t")  # a thin pool


def test_snapshot_then_clone_reads_back_the_snapshot_time_data_on_dev_sdx(node):
    volume = node.create_volume(1)
    export, device = node.attach(volume["id"])
    assert export["target_lun"] == 0  # LIO puts the volume at LUN 0
    before, after = os.urandom(DATA_BYTES), os.urandom(DATA_BYTES)
    write(device, before)
    snapshot = node.api.ok("POST", "/v1/snapshots", {"volume_id": volume["id"]}, status=201)
    write(device, after)
    clone = node.create_volume(2, snapshot_id=snapshot["snapshot"]["id"])
    _, clone_device = node.attach(clone["id"])
    assert read(clone_device, DATA_BYTES) == before
    assert read(device, DATA_BYTES) == after
    assert int(sh("blockdev", "--getsize64", clone_device).stdout) == 2 * GiB
    lv = f"/dev/{VG}/{volume['name']}"
    assert read(lv, DATA_BYTES) == after  # the iSCSI write reached the thin LV


def test_wrong_chap_and_unlisted_initiator_are_rejected(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    with pytest.raises(PermissionError):
        node.iscsi.login(export, password="wrong-secret-123")
    sh("iscsiadm", "-m", "iface", "-I", "stranger", "-o", "new")
    sh("iscsiadm", "-m", "iface", "-I", "stranger", "-o", "update",
       "-n", "iface.initiatorname", "-v", OTHER_INITIATOR)  # fmt: skip
    stranger = Iscsiadm("stranger")
    with pytest.raises(PermissionError):
        stranger.login(export)  # the right CHAP secret, but no ACL for this IQN
    node.iscsi.login(export)
    node.iscsi.device(export)
    node.iscsi.logout(export)


def test_unexport_cuts_a_logged_in_initiator_off(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    # fail I/O 5 s after the session drops instead of open-iscsi's default 120 s of retrying
    node.iscsi.login(export, node__session__timeo__replacement_timeout="5")
    device = node.iscsi.device(export)
    assert len(read(device, MiB)) == MiB
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{own_initiator()}", status=204)
    with pytest.raises(subprocess.CalledProcessError):
        read(device, MiB, offset=8 * MiB)  # LIO dropped the session with the ACL
    node.iscsi.logout(export)


def test_online_extend_is_seen_by_the_initiator(node):
    volume = node.create_volume(1)
    export, device = node.attach(volume["id"])
    data = os.urandom(DATA_BYTES)
    write(device, data)
    node.api.ok("POST", f"/v1/volumes/{volume['id']}/extend", {"size_gib": 2})
    node.iscsi.rescan(export)
    deadline = time.monotonic() + DEVICE_WAIT_S
    while int(sh("blockdev", "--getsize64", device).stdout) != 2 * GiB:
        assert time.monotonic() < deadline, "the initiator never saw the new size"
        time.sleep(0.2)
    tail = os.urandom(MiB)
    write(device, tail, offset=GiB + 8 * MiB)
    assert read(device, MiB, offset=GiB + 8 * MiB) == tail
    assert read(device, DATA_BYTES) == data


def test_revert_a_thin_volume_to_its_snapshot_and_outlive_it(node):
    volume = node.create_volume(1)
    lv = node.api.ok("GET", f"/v1/volumes/{volume['id']}")  # exists
    path = f"/dev/{VG}/{lv['volume']['name']}"
    old = os.urandom(DATA_BYTES)
    sh("lvchange", "-ay", f"{VG}/{volume['name']}")
    write(path, old)
    snapshot = node.api.ok("POST", "/v1/snapshots", {"volume_id": volume["id"]}, status=201)
    write(path, os.urandom(DATA_BYTES))
    node.api.ok("POST", f"/v1/volumes/{volume['id']}/revert",
                {"snapshot_id": snapshot["snapshot"]["id"]})  # fmt: skip
    assert read(path, DATA_BYTES) == old
    snapshots = node.api.ok("GET", f"/v1/snapshots?volume_id={volume['id']}")["snapshots"]
    assert [s["id"] for s in snapshots] == [snapshot["snapshot"]["id"]]
    # dm-thin snapshots are independent of their origin: the volume can go first
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)
    again = node.create_volume(1, snapshot_id=snapshot["snapshot"]["id"])
    assert read(f"/dev/{VG}/{again['name']}", DATA_BYTES) == old


def test_export_survives_blockd_restart_and_a_lost_lio_config(node):
    volume = node.create_volume(1)
    export, device = node.attach(volume["id"])
    data = os.urandom(DATA_BYTES)
    write(device, data)
    node.restart_blockd()
    assert read(device, DATA_BYTES) == data  # the session never noticed
    assert node.export(volume["id"]) == export  # same CHAP pair after the restart

    saved = json.loads(Path(node.config["lio_save_file"]).read_text())
    target = next(t for t in saved["targets"] if t["wwn"] == export["target_iqn"])
    (tpg,) = target["tpgs"]
    assert tpg["attributes"]["authentication"] == 1
    assert tpg["attributes"]["generate_node_acls"] == 0  # no demo mode: listed initiators only
    assert [lun["index"] for lun in tpg["luns"]] == [0]
    assert [(p["ip_address"], p["port"]) for p in tpg["portals"]] == [("127.0.0.1", 3260)]
    (acl,) = tpg["node_acls"]
    assert (acl["node_wwn"], acl["chap_userid"]) == (own_initiator(), export["auth_username"])
    assert [m["index"] for m in acl["mapped_luns"]] == [0]

    sh("iscsiadm", "-m", "node", "--logoutall=all")
    node.blockd.stop()  # a reboot: the kernel forgets LIO's configuration
    sh("python3", "-c", CLEAR_LIO)
    assert not list(Path("/sys/kernel/config/target/iscsi").glob("iqn.*"))
    node.blockd.start()
    node.api = BlockdClient(node.blockd.url)
    node.iscsi.login(export)
    assert read(node.iscsi.device(export), DATA_BYTES) == data


def test_a_qcow2_image_is_converted_into_a_thin_volume_that_stays_thin(node, tmp_path):
    """qemu-img convert writes into the thin LV (a block device) and skips the zero runs, so a
    1 GiB volume from an 8 MiB image allocates about 8 MiB of the pool, not 1 GiB."""
    head, tail = os.urandom(DATA_BYTES), os.urandom(DATA_BYTES)
    raw = tmp_path / "image.raw"
    with raw.open("wb") as f:
        f.write(head)
        f.seek(512 * MiB)
        f.write(tail)
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_path / "image.qcow2"))
    server = ImageServer(tmp_path)
    try:
        image = {"url": f"{server.url}/image.qcow2", "disk_format": "qcow2"}
        status, data = node.api.call("POST", "/v1/volumes", {"size_gib": 1, "image": image})
        assert status == 202, data
        task = wait_task(node.api, data["task"]["id"], timeout_s=300)
    finally:
        server.close()
    assert task["state"] == "done" and task["phase"] == "converting", task
    volume = data["volume"]
    lv = f"/dev/{VG}/{volume['name']}"
    assert read(lv, DATA_BYTES) == head
    assert read(lv, DATA_BYTES, offset=512 * MiB) == tail
    assert read(lv, DATA_BYTES, offset=256 * MiB) == bytes(DATA_BYTES)
    usage = sh("lvs", "--noheadings", "-o", "data_percent", f"{VG}/{volume['name']}").stdout
    assert float(usage.strip()) < 5.0, usage  # ~0.8% (8 MiB of 1 GiB), not 100%
    assert not list(Path("/var/lib/shoal/blockd/conversion").glob(".tmp-image-*"))
