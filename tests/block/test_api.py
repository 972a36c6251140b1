"""blockd's HTTP API contract on a real node (reflink on XFS, tgtd, blockd as a process):
authentication, validation, the status codes of every refusal, capacity stats, the lifecycle of
volumes and snapshots, and image imports running as tasks with progress.

Goal: what Cinder's driver can rely on. Method: requests over loopback; each refusal is checked
for its status, a JSON message, an X-Trans-Id, and the absence of a stack trace.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from shoal.units import GiB, MiB
from tests.block.support import (
    INITIATOR,
    BlockdClient,
    BlockdProcess,
    ImageServer,
    Tgtd,
    wait_task,
)

pytestmark = [pytest.mark.root]

TASK_WAIT_S = 60.0


def assert_error(node, method: str, path: str, status: int, body=None, token: str | None = ""):
    got, data = node.api.call(method, path, body, token=token)
    assert got == status, (method, path, got, data)
    assert set(data) == {"error"} and data["error"]["code"] == status, data
    assert data["error"]["message"] and "Traceback" not in data["error"]["message"]
    return data["error"]["message"]


def test_every_call_needs_the_token(node):
    assert_error(node, "GET", "/v1/volumes", 401, token=None)
    assert_error(node, "GET", "/v1/stats", 401, token="not-the-token")
    with urllib.request.urlopen(node.blockd.url + "/healthcheck", timeout=10) as response:
        assert response.read() == b"OK"
        assert response.headers["X-Trans-Id"].startswith("tx")


def test_malformed_requests_are_400_with_the_reason(node):
    assert "size_gib" in assert_error(node, "POST", "/v1/volumes", 400, {"size_gib": 0})
    assert "unknown field" in assert_error(node, "POST", "/v1/volumes", 400,
                                           {"size_gib": 1, "colour": "red"})  # fmt: skip
    assert "UUID" in assert_error(node, "GET", "/v1/volumes/not-a-uuid", 400)
    path = f"/v1/volumes/{node.create_volume(1)['id']}"
    assert "iSCSI name" in assert_error(node, "PUT", f"{path}/exports/bogus", 400)
    assert "not larger" in assert_error(node, "POST", f"{path}/extend", 400, {"size_gib": 1})
    status, data = node.api.raw("POST", "/v1/volumes", b"{not json")
    assert status == 400 and "JSON" in data["error"]["message"]


def test_unknown_things_are_404(node):
    missing = str(uuid.uuid4())
    assert_error(node, "GET", f"/v1/volumes/{missing}", 404)
    assert_error(node, "DELETE", f"/v1/snapshots/{missing}", 404)
    assert_error(node, "POST", "/v1/volumes", 404, {"size_gib": 1, "snapshot_id": missing})
    assert_error(node, "GET", "/v1/nothing-here", 404)


def test_conflicts_are_409(node):
    volume = node.create_volume(1)
    assert_error(node, "POST", "/v1/volumes", 409, {"id": volume["id"], "size_gib": 1})
    node.export(volume["id"])
    message = assert_error(node, "DELETE", f"/v1/volumes/{volume['id']}", 409)
    assert INITIATOR in message
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}/exports/{INITIATOR}", status=204)
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)


def test_over_subscription_beyond_the_ratio_is_507(node):
    stats = node.api.ok("GET", "/v1/stats")
    too_big = int(stats["total_capacity_gb"] * stats["max_over_subscription_ratio"]) + 1
    assert "over the limit" in assert_error(node, "POST", "/v1/volumes", 507,
                                            {"size_gib": too_big})  # fmt: skip


def test_stats_report_what_cinders_scheduler_needs(node):
    before = node.api.ok("GET", "/v1/stats")
    volume = node.create_volume(3)
    after = node.api.ok("GET", "/v1/stats")
    assert after["provisioned_capacity_gb"] == before["provisioned_capacity_gb"] + 3
    assert after["total_volumes"] == before["total_volumes"] + 1
    assert 7 < after["total_capacity_gb"] <= 8 and after["free_capacity_gb"] > 0
    assert after["thin_provisioning_support"] is True
    assert after["max_over_subscription_ratio"] == 20.0
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)


def test_volume_and_snapshot_lifecycle(node):
    volume = node.create_volume(2)
    assert volume["name"] == f"volume-{volume['id']}" and volume["size_bytes"] == 2 * GiB
    assert volume in node.api.ok("GET", "/v1/volumes")["volumes"]
    snapshot_id = str(uuid.uuid4())
    created = node.api.ok("POST", "/v1/snapshots", {"id": snapshot_id, "volume_id": volume["id"]},
                          status=201)["snapshot"]  # fmt: skip
    assert created["name"] == f"_snapshot-{snapshot_id}" and created["volume_id"] == volume["id"]
    assert_error(node, "POST", "/v1/snapshots", 409, {"id": snapshot_id, "volume_id": volume["id"]})
    listed = node.api.ok("GET", f"/v1/snapshots?volume_id={volume['id']}")["snapshots"]
    assert listed == [created]
    # reflink snapshots are independent files: the volume can go first
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)
    assert node.api.ok("GET", f"/v1/snapshots/{snapshot_id}")["snapshot"] == created
    restored = node.create_volume(2, snapshot_id=snapshot_id)
    assert_error(node, "POST", "/v1/volumes", 400, {"size_gib": 1, "snapshot_id": snapshot_id})
    node.api.ok("DELETE", f"/v1/snapshots/{snapshot_id}", status=204)
    node.api.ok("DELETE", f"/v1/volumes/{restored['id']}", status=204)
    assert not list((node.mount / "volumes").glob(f"*{snapshot_id}*"))


def test_image_import_runs_as_a_task_and_lands_in_the_volume(node, tmp_path):
    image = os.urandom(24 * MiB + 512)
    (tmp_path / "image.raw").write_bytes(image)
    server = ImageServer(tmp_path)
    try:
        body = {"size_gib": 1, "image": {"url": f"{server.url}/image.raw"}}
        status, data = node.api.call("POST", "/v1/volumes", body)
        assert status == 202, data
        task = wait_task(node.api, data["task"]["id"])
        assert task["state"] == "done" and task["progress"] == 1.0, task
        assert task["done_bytes"] == task["total_bytes"] == len(image)
        export = node.export(data["volume"]["id"])
        assert node.initiator.read(export, 24 * MiB) == image[: 24 * MiB]

        body = {"size_gib": 1, "image": {"url": f"{server.url}/missing.raw"}}
        status, data = node.api.call("POST", "/v1/volumes", body)
        failed = wait_task(node.api, data["task"]["id"])
        assert failed["state"] == "failed" and "404" in failed["error"]
    finally:
        server.close()


def test_blockd_refuses_to_start_without_reflink(node, tmp_path):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm tmpfs to stand for a file system without reflink")
    shm = Path(f"/dev/shm/shoal-noreflink-{os.getpid()}")
    shm.mkdir()
    try:
        config = {**node.config, "reflink_dir": str(shm), "tgt_conf_dir": str(tmp_path / "c")}
        blockd = BlockdProcess(tmp_path, config)
        with pytest.raises(RuntimeError, match="exited 1"):
            blockd.start()
        assert "does not support reflink" in blockd.log_tail()
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_bad_config_is_a_one_line_error(tmp_path):
    config = tmp_path / "blockd.toml"
    config.write_text('[blockd]\nbackend = "zfs"\n')
    result = subprocess.run(
        [sys.executable, "-m", "blockd", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "backend" in result.stderr and "Traceback" not in result.stderr


def test_client_sees_json_even_for_unknown_methods(node):
    client = BlockdClient(node.blockd.url)
    status, data = client.call("PATCH", "/v1/volumes")
    assert status == 405 and data["error"]["code"] == 405


def test_blockd_refuses_to_start_without_tgtd(node, tmp_path):
    nobody = Tgtd.free_control_port()  # a control port no tgtd listens on
    config = {**node.config, "tgt_control_port": nobody}
    blockd = BlockdProcess(tmp_path, config)
    with pytest.raises(RuntimeError, match="exited 1"):
        blockd.start()
    assert "tgtd is not reachable" in blockd.log_tail()


def test_concurrent_creates_of_one_id_make_one_volume(node):
    volume_id = str(uuid.uuid4())
    body = {"id": volume_id, "size_gib": 1}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(lambda _: node.api.call("POST", "/v1/volumes", body)[0],
                                   range(8)))  # fmt: skip
    assert statuses == [201] + [409] * 7
    snapshot_bodies = [{"volume_id": volume_id} for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda b: node.api.call("POST", "/v1/snapshots", b),
                                snapshot_bodies))  # fmt: skip
    assert [status for status, _ in results] == [201] * 6
    listed = node.api.ok("GET", f"/v1/snapshots?volume_id={volume_id}")["snapshots"]
    assert len(listed) == 6
