"""blockd's backups of snapshots to Shoal's object store, and restores, end to end.

Goal: a snapshot goes to the object store as content-addressed chunks plus a manifest; an
incremental backup sends only the chunks that changed; a restore gives a new volume whose bytes,
read through iSCSI, are the snapshot's. Method: a real ``shoal aio`` (4 objectd + the proxy,
tempauth) as the object store, this module's blockd node (reflink + tgt) for the data path, and a
blockd serving the backup routes in this process on the same node (``add_backup_routes`` is
registered here because it is not yet in ``make_app``). Everything is checked through the Swift
API (manifests, chunk objects) and a real iSCSI initiator.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import swiftclient

from blockd.backup import CHUNK_BYTES, chunk_name, manifest_name
from shoal.units import GiB
from tests.block.support import BlockdClient
from tests.cinder.support import blockd_with_backup_routes
from tests.proxy.aio_harness import AioCluster

pytestmark = [pytest.mark.root, pytest.mark.slow]

TASK_TIMEOUT_S = 120.0  # a 1 GiB volume, mostly sparse, over loopback: ~1-5 s


@pytest.fixture(scope="module")
def aio(tmp_path_factory) -> Iterator[AioCluster]:
    cluster = AioCluster(tmp_path_factory.mktemp("aio") / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def swift(aio) -> swiftclient.Connection:
    return swiftclient.Connection(aio.auth_url, "test:tester", "testing", retries=0)


@pytest.fixture(scope="module")
def backup_api(node, tmp_path_factory) -> Iterator[BlockdClient]:
    """blockd with the backup routes, on ``node``'s storage and target (no reconciling)."""
    with blockd_with_backup_routes(node, tmp_path_factory.mktemp("blockd-backup")) as url:
        yield BlockdClient(url)


@pytest.fixture
def store(aio, swift) -> dict:
    """The object_store part of a backup request: the tempauth account, a fresh container."""
    answer = requests.get(
        aio.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}, timeout=10
    )
    return {
        "storage_url": answer.headers["X-Storage-Url"],
        "token": answer.headers["X-Auth-Token"],
        "container": f"backups-{uuid.uuid4().hex[:8]}",
    }


def wait_task(api: BlockdClient, task_id: str) -> dict:
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while True:
        task = api.ok("GET", f"/v1/tasks/{task_id}")["task"]
        if task["state"] != "running":
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.2)


def backup(api: BlockdClient, store: dict, snapshot_id: str, parent_id: str | None = None):
    body = {"snapshot_id": snapshot_id, "object_store": store}
    if parent_id:
        body["parent_id"] = parent_id
    answer = api.ok("POST", "/v1/backups", body, status=202)
    task = wait_task(api, answer["task"]["id"])
    return answer["backup"], task


def manifest(swift, store: dict, backup_id: str) -> dict:
    return json.loads(swift.get_object(store["container"], manifest_name(backup_id))[1])


def snapshot_of(node, volume_id: str) -> str:
    body = {"volume_id": volume_id}
    return node.api.ok("POST", "/v1/snapshots", body, status=201)["snapshot"]["id"]


def test_full_and_incremental_backup_then_restore_over_iscsi(node, backup_api, swift, store):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    chunks = [os.urandom(CHUNK_BYTES) for _ in range(3)]
    for index, data in enumerate(chunks):  # chunks 0, 1 and 5; the other 253 stay zero
        node.initiator.write(export, data, offset=(0, 1, 5)[index] * CHUNK_BYTES)
    first_snapshot = snapshot_of(node, volume["id"])

    first, task = backup(backup_api, store, first_snapshot)
    assert task["state"] == "done", task
    assert task["progress"] == 1.0 and task["done_bytes"] == task["total_bytes"] == GiB
    full = manifest(swift, store, first["id"])
    assert full["uploaded_chunks"] == 3 and full["zero_chunks"] == GiB // CHUNK_BYTES - 3
    assert full["changes_from"] == "none" and full["read_chunks"] == GiB // CHUNK_BYTES
    assert full["chunks"][0] == hashlib.sha256(chunks[0]).hexdigest()
    assert full["chunks"][2] is None
    _, objects = swift.get_container(store["container"])
    assert sorted(o["name"] for o in objects) == sorted(
        [manifest_name(first["id"])] + [chunk_name(c) for c in full["chunks"] if c]
    )

    changed = os.urandom(CHUNK_BYTES)
    node.initiator.write(export, changed, offset=CHUNK_BYTES)  # chunk 1 changes
    second_snapshot = snapshot_of(node, volume["id"])
    second, task = backup(backup_api, store, second_snapshot, parent_id=first["id"])
    assert task["state"] == "done", task
    incremental = manifest(swift, store, second["id"])
    assert incremental["uploaded_chunks"] == 1  # only the changed chunk was sent
    assert incremental["uploaded_bytes"] == CHUNK_BYTES
    assert incremental["parent_id"] == first["id"]
    # reflink cannot list changed blocks: every chunk was read and compared by its hash
    assert incremental["changes_from"] == "chunk_hashes" and incremental["unchanged_chunks"] == 0
    assert incremental["read_chunks"] == GiB // CHUNK_BYTES

    for backup_id, expected in ((second["id"], changed), (first["id"], chunks[1])):
        body = {"object_store": store, "size_gib": 2}
        answer = backup_api.ok("POST", f"/v1/backups/{backup_id}/restore", body, status=202)
        assert wait_task(backup_api, answer["task"]["id"])["state"] == "done"
        restored = node.export(answer["volume"]["id"])
        assert node.initiator.capacity_bytes(restored) == 2 * GiB
        assert node.initiator.read(restored, CHUNK_BYTES) == chunks[0]
        assert node.initiator.read(restored, CHUNK_BYTES, offset=CHUNK_BYTES) == expected
        assert node.initiator.read(restored, CHUNK_BYTES, offset=5 * CHUNK_BYTES) == chunks[2]
        assert node.initiator.read(restored, CHUNK_BYTES, offset=2 * CHUNK_BYTES) == bytes(
            CHUNK_BYTES
        )


def test_identical_chunks_of_another_volume_are_not_sent_again(node, backup_api, swift, store):
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    data = os.urandom(CHUNK_BYTES)
    node.initiator.write(export, data + data)  # two equal chunks in one volume: stored once
    first, _ = backup(backup_api, store, snapshot_of(node, volume["id"]))
    assert manifest(swift, store, first["id"])["uploaded_chunks"] == 1
    clone = node.create_volume(1, source_volume_id=volume["id"])
    second, task = backup(backup_api, store, snapshot_of(node, clone["id"]))  # no parent given
    assert task["state"] == "done"
    assert manifest(swift, store, second["id"])["uploaded_chunks"] == 0  # found by HEAD


def test_a_refused_token_fails_the_task_and_leaves_no_manifest(node, backup_api, swift, store):
    volume = node.create_volume(1)
    snapshot_id = snapshot_of(node, volume["id"])
    volumes_before = node.api.ok("GET", "/v1/volumes")["volumes"]
    bad = {**store, "token": "AUTH_tk-not-a-real-token"}
    answer, task = backup(backup_api, bad, snapshot_id)
    assert task["state"] == "failed" and "401" in task["error"]
    with pytest.raises(swiftclient.ClientException):
        swift.head_object(store["container"], manifest_name(answer["id"]))
    assert node.api.ok("GET", "/v1/volumes")["volumes"] == volumes_before  # no reader left


def test_bad_requests_are_refused_before_any_work(node, backup_api, store):
    volume = node.create_volume(1)
    snapshot_id = snapshot_of(node, volume["id"])
    bad_stores = [None, {**store, "token": ""}, {**store, "storage_url": "ftp://x"},
                  {**store, "container": "a/b"}, {**store, "extra": "x"}]  # fmt: skip
    for bad in bad_stores:
        status, body = backup_api.call(
            "POST", "/v1/backups", {"snapshot_id": snapshot_id, "object_store": bad}
        )
        assert status == 400, (bad, body)
    missing = {"snapshot_id": str(uuid.uuid4()), "object_store": store}
    assert backup_api.call("POST", "/v1/backups", missing)[0] == 404
    restore = {"object_store": store}
    path = f"/v1/backups/{uuid.uuid4()}/restore"
    volumes_before = node.api.ok("GET", "/v1/volumes")["volumes"]
    assert backup_api.call("POST", path, restore)[0] == 404  # no manifest: no volume made
    assert node.api.ok("GET", "/v1/volumes")["volumes"] == volumes_before
    upload = {"url": "file:///etc/passwd"}
    assert backup_api.call("POST", f"/v1/volumes/{volume['id']}/upload", upload)[0] == 400
