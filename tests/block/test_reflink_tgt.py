"""blockd on the host, the real data path: reflink backend on a loop-mounted XFS, the tgt target,
driven through blockd's HTTP API and checked with a real iSCSI initiator (QEMU's libiscsi driver
and libiscsi's tools).

Goal: what Cinder and a compute host would see. Method: every volume is written and read over
iSCSI with CHAP; snapshots and clones are checked by content; failures are checked as refusals
of the login itself. One XFS, one tgtd and one blockd serve the module (about 30 s in all).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from shoal.units import GiB, MiB
from tests.block.support import INITIATOR, OTHER_INITIATOR, Initiator

pytestmark = [pytest.mark.root]

DATA_BYTES = 4 * MiB
RECONCILE_WAIT_S = 20.0  # the node reconciles every 1 s; generous for a loaded machine


def test_snapshot_then_clone_reads_back_the_snapshot_time_data_over_iscsi(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    assert export["target_lun"] == 1  # tgt: LUN 0 is the controller
    assert export["target_iqn"] == "iqn.2010-10.org.openstack:" + volume["name"]
    before, after = os.urandom(DATA_BYTES), os.urandom(DATA_BYTES)
    node.initiator.write(export, before)

    snapshot = node.api.ok("POST", "/v1/snapshots", {"volume_id": volume["id"]}, status=201)
    node.initiator.write(export, after)
    clone = node.create_volume(2, snapshot_id=snapshot["snapshot"]["id"])
    clone_export = node.export(clone["id"])

    assert node.initiator.read(clone_export, DATA_BYTES) == before
    assert node.initiator.read(export, DATA_BYTES) == after
    assert node.initiator.capacity_bytes(clone_export) == 2 * GiB  # larger than its source


def test_clone_of_a_volume_is_independent_of_it(node):
    source = node.create_volume(1)
    source_export = node.export(source["id"])
    original = os.urandom(DATA_BYTES)
    node.initiator.write(source_export, original)
    clone = node.create_volume(1, source_volume_id=source["id"])
    clone_export = node.export(clone["id"])
    node.initiator.write(clone_export, os.urandom(DATA_BYTES))
    assert node.initiator.read(source_export, DATA_BYTES) == original
    assert clone_export["auth_username"] != source_export["auth_username"]


def test_wrong_chap_secret_is_rejected_at_login(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    node.initiator.qemu_io(export, "read -q 0 4k")  # the right secret logs in
    with pytest.raises(subprocess.CalledProcessError):
        node.initiator.qemu_io(export, "read -q 0 4k", password="wrong-secret-123")
    with pytest.raises(subprocess.CalledProcessError):
        node.initiator.qemu_io(export, "read -q 0 4k", password=None)


def test_initiator_not_exported_to_is_rejected_even_with_the_right_secret(node, tmp_path):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    stranger = Initiator(OTHER_INITIATOR, tmp_path)
    with pytest.raises(subprocess.CalledProcessError):
        stranger.qemu_io(export, "read -q 0 4k")
    second = node.export(volume["id"], OTHER_INITIATOR)
    assert second == export  # one CHAP pair per volume, generated once
    stranger.qemu_io(export, "read -q 0 4k")
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{OTHER_INITIATOR}", status=204)
    with pytest.raises(subprocess.CalledProcessError):
        stranger.qemu_io(export, "read -q 0 4k")
    node.initiator.qemu_io(export, "read -q 0 4k")  # the other initiator is untouched
    exports = node.api.ok("GET", f"/v1/volumes/{volume['id']}/exports")
    assert exports == {"initiators": [INITIATOR]}


def test_online_extend_is_seen_by_the_initiator(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    data = os.urandom(DATA_BYTES)
    node.initiator.write(export, data)
    assert node.initiator.capacity_bytes(export) == 1 * GiB
    extended = node.api.ok("POST", f"/v1/volumes/{volume['id']}/extend", {"size_gib": 3})
    assert extended["volume"]["size_gib"] == 3
    assert node.initiator.capacity_bytes(export) == 3 * GiB
    tail = os.urandom(MiB)
    node.initiator.write(export, tail, offset=2 * GiB + 5 * MiB)  # in the new area
    assert node.initiator.read(export, MiB, offset=2 * GiB + 5 * MiB) == tail
    assert node.initiator.read(export, DATA_BYTES) == data


def test_revert_to_snapshot_restores_its_content(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    old = os.urandom(DATA_BYTES)
    node.initiator.write(export, old)
    snapshot = node.api.ok("POST", "/v1/snapshots", {"volume_id": volume["id"]}, status=201)
    snapshot_id = snapshot["snapshot"]["id"]
    node.initiator.write(export, os.urandom(DATA_BYTES))
    path = f"/v1/volumes/{volume['id']}/revert"
    status, body = node.api.call("POST", path, {"snapshot_id": snapshot_id})
    assert status == 409, body  # exported: a revert under a live initiator would corrupt it
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{INITIATOR}", status=204)
    node.api.ok("POST", path, {"snapshot_id": snapshot_id})
    export_again = node.export(volume["id"])
    assert export_again["auth_password"] == export["auth_password"]  # kept across the revert
    assert node.initiator.read(export_again, DATA_BYTES) == old


def test_export_survives_blockd_restart_and_tgtd_restart(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    data = os.urandom(DATA_BYTES)
    node.initiator.write(export, data)

    node.restart_blockd()  # the target lives in tgtd: nothing to redo
    assert node.initiator.read(export, DATA_BYTES) == data
    assert node.api.ok("GET", f"/v1/volumes/{volume['id']}/exports")["initiators"] == [INITIATOR]
    assert node.export(volume["id"]) == export  # same CHAP pair after the restart

    node.blockd.stop()  # a node reboot: tgtd loses every target; blockd re-creates them
    node.tgtd.stop()
    node.tgtd.start()
    node.blockd.start()
    node.api = type(node.api)(node.blockd.url)
    assert node.initiator.read(export, DATA_BYTES) == data
    with pytest.raises(subprocess.CalledProcessError):
        node.initiator.qemu_io(export, "read -q 0 4k", password="wrong-secret-123")


def test_exports_come_back_by_themselves_after_tgtd_restarts_under_blockd(node):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    data = os.urandom(DATA_BYTES)
    node.initiator.write(export, data)
    node.tgtd.stop()  # blockd keeps running; the tests' config reconciles every second
    node.tgtd.start()
    deadline = time.monotonic() + RECONCILE_WAIT_S
    while True:
        try:
            assert node.initiator.read(export, DATA_BYTES) == data
            break
        except subprocess.CalledProcessError:
            assert time.monotonic() < deadline, "blockd did not re-create the export"
            time.sleep(0.5)


def test_unexport_cuts_an_initiator_that_is_logged_in(node, tmp_path):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    node.export(volume["id"], OTHER_INITIATOR)
    stranger = Initiator(OTHER_INITIATOR, tmp_path)
    show = ("--lld", "iscsi", "--op", "show", "--mode", "target")
    # one login: read, wait while blockd unexports this initiator, then try to read again
    session = stranger.start_qemu_io(export, "read 0 4k", "sleep 3000", "read 0 4k")
    try:
        deadline = time.monotonic() + 30
        while f"Initiator: {OTHER_INITIATOR}" not in node.tgtd.tgtadm(*show).stdout:
            assert time.monotonic() < deadline and session.poll() is None, "no login"
            time.sleep(0.1)
        node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{OTHER_INITIATOR}", status=204)
        assert f"Initiator: {OTHER_INITIATOR}" not in node.tgtd.tgtadm(*show).stdout
        time.sleep(6)  # the second read was due at 3 s: it hangs on reconnects the ACL refuses
        assert session.poll() is None, "the unexported initiator completed a read"
    finally:
        session.kill()
        session.communicate(timeout=30)
    node.initiator.qemu_io(export, "read -q 0 4k")  # the still-exported initiator is untouched
