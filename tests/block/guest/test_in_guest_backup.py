"""Backups of thin LVM snapshots to the object store, run INSIDE the User-Mode-Linux guest: the
incremental backup reads only the chunks that ``thin_delta`` says changed, and restores are byte
for byte the snapshots.

Goal: the lvm-thin path of blockd's backups (thin_delta on a real dm-thin pool's metadata
snapshot) end to end, with the real object store. Method: blockd (lvm-thin + LIO) and a real
``shoal aio`` (4 objectd + the proxy, tempauth) both in the guest on loopback; data written to the
thin LV directly; the manifests' counters (chunks read, unchanged, uploaded) say what was read
and sent; restored volumes are compared with the snapshots by their sha256, all 1 GiB of them.
``tests/block/test_guest.py`` boots the guest and runs this module; everywhere else it is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request

import pytest

from blockd.backup import CHUNK_BYTES, manifest_name
from shoal.units import GiB, KiB, MiB
from tests.block.guest.support import DISKS, GUEST_ONLY, VG, GuestAio, guest_node, sh, write

pytestmark = GUEST_ONLY

TASK_TIMEOUT_S = 300.0  # a 1 GiB full backup under UML: ~10-40 s
CHUNKS = GiB // CHUNK_BYTES
READ_BYTES = 4 * MiB  # how the devices are hashed


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with guest_node(tmp_path_factory.mktemp("blockd-guest"), DISKS[0]) as guest:
        yield guest


@pytest.fixture(scope="module")
def aio(tmp_path_factory):
    cluster = GuestAio(tmp_path_factory.mktemp("aio") / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_task(node, task_id: str) -> dict:
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while True:
        task = node.api.ok("GET", f"/v1/tasks/{task_id}")["task"]
        if task["state"] != "running":
            assert task["state"] == "done", task
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.5)


def backup(node, store: dict, snapshot_id: str, parent_id: str | None = None) -> dict:
    """Back the snapshot up and return its manifest, read back from the object store."""
    body = {"snapshot_id": snapshot_id, "object_store": store, "parent_id": parent_id}
    answer = node.api.ok("POST", "/v1/backups", body, status=202)
    wait_task(node, answer["task"]["id"])
    url = f"{store['storage_url']}/{store['container']}/{manifest_name(answer['backup']['id'])}"
    request = urllib.request.Request(url, headers={"X-Auth-Token": store["token"]})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def snapshot_of(node, volume_id: str) -> str:
    body = {"volume_id": volume_id}
    return node.api.ok("POST", "/v1/snapshots", body, status=201)["snapshot"]["id"]


def lv_path(node, volume_id: str) -> str:
    name = node.api.ok("GET", f"/v1/volumes/{volume_id}")["volume"]["name"]
    sh("lvchange", "-ay", "-K", f"{VG}/{name}")
    return f"/dev/{VG}/{name}"


def device_sha256(path: str, size_bytes: int = GiB) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in range(0, size_bytes, READ_BYTES):
            digest.update(os.pread(fd, READ_BYTES, offset))
    finally:
        os.close(fd)
    return digest.hexdigest()


def restore(node, store: dict, manifest: dict) -> str:
    """The backup restored into a new volume; the new volume's sha256."""
    path = f"/v1/backups/{manifest['backup_id']}/restore"
    answer = node.api.ok("POST", path, {"object_store": store}, status=202)
    wait_task(node, answer["task"]["id"])
    return device_sha256(lv_path(node, answer["volume"]["id"]))


def test_incremental_backup_reads_only_the_chunks_thin_delta_reports(node, aio):
    store = aio.object_store()
    volume = node.create_volume(1)
    device = lv_path(node, volume["id"])
    for index in (0, 1, 5):
        write(device, os.urandom(CHUNK_BYTES), offset=index * CHUNK_BYTES)
    first_snapshot = snapshot_of(node, volume["id"])
    first_sha = device_sha256(device)
    full = backup(node, store, first_snapshot)
    assert full["changes_from"] == "none" and full["read_chunks"] == CHUNKS
    assert full["uploaded_chunks"] == 3 and full["zero_chunks"] == CHUNKS - 3

    writes = {  # offset -> bytes: a few blocks in chunks 0 (written before), 7 and 25 (zero)
        1 * MiB + 4 * KiB: os.urandom(4 * KiB),
        7 * CHUNK_BYTES + 64 * KiB: os.urandom(64 * KiB),
        25 * CHUNK_BYTES + CHUNK_BYTES - 4 * KiB: os.urandom(4 * KiB),
    }
    for offset, data in writes.items():
        write(device, data, offset=offset)
    second_snapshot = snapshot_of(node, volume["id"])
    second_sha = device_sha256(device)
    incremental = backup(node, store, second_snapshot, parent_id=full["backup_id"])
    written_chunks = {offset // CHUNK_BYTES for offset in writes}
    assert written_chunks == {0, 7, 25}
    assert incremental["changes_from"] == "thin_delta", incremental
    assert incremental["read_chunks"] == len(written_chunks)  # not the other 253
    assert incremental["read_bytes"] == len(written_chunks) * CHUNK_BYTES
    assert incremental["unchanged_chunks"] == CHUNKS - len(written_chunks)
    assert incremental["uploaded_chunks"] == len(written_chunks)
    differs = {i for i in range(CHUNKS) if incremental["chunks"][i] != full["chunks"][i]}
    assert differs == written_chunks

    assert restore(node, store, incremental) == second_sha
    assert restore(node, store, full) == first_sha

    # the parent's snapshot gone: thin_delta has nothing to compare with, chunks are hashed
    node.api.ok("DELETE", f"/v1/snapshots/{second_snapshot}", status=204)
    write(device, os.urandom(4 * KiB), offset=100 * CHUNK_BYTES)
    third_snapshot = snapshot_of(node, volume["id"])
    third_sha = device_sha256(device)
    hashed = backup(node, store, third_snapshot, parent_id=incremental["backup_id"])
    assert hashed["changes_from"] == "chunk_hashes" and hashed["read_chunks"] == CHUNKS
    assert hashed["uploaded_chunks"] == 1 and hashed["unchanged_chunks"] == 0
    assert restore(node, store, hashed) == third_sha
    # no metadata snapshot left reserved: thin-pool status <txid> <meta> <data> <held root> ...
    (pool,) = [line.split() for line in sh("dmsetup", "status").stdout.splitlines()
               if " thin-pool " in line]  # fmt: skip
    assert pool[pool.index("thin-pool") + 4] == "-", pool
