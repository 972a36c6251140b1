"""The auditor quarantines a corrupt object and the replicator restores it; the updater replays
async pendings until the container has the row; the expirer deletes expired objects and their
listing rows.

Method: real objectd processes and rings on loopback (``local_cluster``); bytes are corrupted
in the real files; daemons run in the test process with ``run_once``; the expirer's clock is a
``ManualClock`` set past the expiry, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import xxhash

from objectd.auditor import ObjectAuditor
from objectd.diskio import DiskIO
from objectd.expirer import ObjectExpirer
from objectd.metadata import BODY_CHECKSUM_KEY, encode_trailer, read_file
from objectd.replicator import ObjectReplicator
from objectd.updater import ObjectUpdater
from shoal.clock import ManualClock
from tests.objectd_daemons.local_cluster import LocalCluster, ts


def _data_file(cluster: LocalCluster, node, name: str) -> str:
    hash_dir = cluster.hash_dir(node, "a", "c", name)
    (data,) = [f for f in os.listdir(hash_dir) if f.endswith(".data")]
    return os.path.join(hash_dir, data)


def _flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_corrupt_object_is_quarantined_by_auditor_and_restored_by_replicator(
    cluster3: LocalCluster,
):
    body = os.urandom(300 * 1024)  # larger than one audit read and than a small object
    small = b"small object body"
    cluster3.put_object(cluster3.nodes, "a", "c", "big", body, ts())
    cluster3.put_object(cluster3.nodes, "a", "c", "small", small, ts())
    victim = cluster3.nodes[1]
    _flip_byte(_data_file(cluster3, victim, "big"), 1234)
    _flip_byte(_data_file(cluster3, victim, "small"), 3)

    audit = asyncio.run(ObjectAuditor(cluster3.daemon_config(victim, "auditor")).run_once())

    assert audit.quarantined == 2 and audit.objects >= 2
    assert list((victim.device_path / "quarantined" / "objects").iterdir())
    assert cluster3.get_object(victim, "a", "c", "big").status_code == 404
    asyncio.run(ObjectReplicator(cluster3.daemon_config(cluster3.nodes[0])).run_once())
    for name, expected in (("big", body), ("small", small)):
        response = cluster3.get_object(victim, "a", "c", name)
        assert response.status_code == 200 and response.content == expected
        assert response.headers["ETag"].strip('"') == hashlib.md5(expected).hexdigest()
    again = asyncio.run(ObjectAuditor(cluster3.daemon_config(victim, "auditor")).run_once())
    assert again.quarantined == 0


def test_auditor_quarantines_a_wrong_recorded_xxh3(cluster3: LocalCluster):
    """Readers verify bodies with the recorded xxh3-64 (objectd.metadata.BODY_CHECKSUM_KEY), so
    the auditor checks it as well as the MD5: a wrong one is caught before a reader trips."""
    node = cluster3.nodes[0]
    body = os.urandom(200 * 1024)
    cluster3.put_object([node], "a", "c", "xxh3", body, ts())
    path = _data_file(cluster3, node, "xxh3")
    fd = os.open(path, os.O_RDONLY)
    try:
        metadata = read_file(DiskIO(), fd, os.fstat(fd).st_size).metadata
    finally:
        os.close(fd)
    assert metadata[BODY_CHECKSUM_KEY] == xxhash.xxh3_64_hexdigest(body)
    metadata[BODY_CHECKSUM_KEY] = "f" * 16
    with open(path, "wb") as f:
        f.write(body + encode_trailer(metadata, len(body)))
    audit = asyncio.run(ObjectAuditor(cluster3.daemon_config(node, "auditor")).run_once())
    assert audit.quarantined == 1


def test_auditor_reads_at_its_byte_rate(cluster3: LocalCluster):
    node = cluster3.nodes[0]
    for i in range(4):
        cluster3.put_object([node], "a", "c", f"rate{i}", os.urandom(256 * 1024), ts())
    config = cluster3.daemon_config(node, "auditor", audit_bytes_per_s_max=512 * 1024)
    started = time.monotonic()
    report = asyncio.run(ObjectAuditor(config).run_once())
    elapsed = time.monotonic() - started
    assert report.bytes_read == 4 * 256 * 1024
    # 1 MiB at 512 KiB/s with a one-second burst: at least ~1 s
    assert elapsed >= 0.9, elapsed


def _container_nodes(cluster: LocalCluster, account: str, container: str):
    part, nodes = cluster.ring("container").get_nodes(account, container)
    return part, [cluster.node_of(dev) for dev in nodes]


def _put_container(cluster: LocalCluster, account: str, container: str) -> None:
    part, nodes = _container_nodes(cluster, account, container)
    for node in nodes:
        response = node.request(
            "PUT", f"/{node.device}/{part}/{account}/{container}", headers={"X-Timestamp": ts()}
        )
        assert response.status_code in (201, 202)


def _listing(cluster: LocalCluster, account: str, container: str) -> list[list[str]]:
    part, nodes = _container_nodes(cluster, account, container)
    return [
        [
            row["name"]
            for row in node.request("GET", f"/{node.device}/{part}/{account}/{container}").json()
        ]
        for node in nodes
    ]


def _update_headers(cluster: LocalCluster, account: str, container: str, index: int) -> dict:
    part, nodes = _container_nodes(cluster, account, container)
    node = nodes[index % len(nodes)]
    return {
        "X-Container-Host": f"{node.ip}:{node.port}",
        "X-Container-Device": node.device,
        "X-Container-Partition": str(part),
    }


def test_updater_replays_async_pendings_until_the_container_has_the_row(cluster3: LocalCluster):
    # the container does not exist yet: every container update fails (404) and is kept
    primaries = cluster3.primaries("a", "late", "o")
    for index, node in enumerate(primaries):
        headers = _update_headers(cluster3, "a", "late", index)
        assert cluster3.put_object([node], "a", "late", "o", b"body", ts(), **headers) == [201]
    pendings = [
        f for n in cluster3.nodes for f in cluster3.files_under(n, "") if "async_pending" in f
    ]
    assert pendings
    first = asyncio.run(
        ObjectUpdater(cluster3.daemon_config(cluster3.nodes[0], "updater")).run_once()
    )
    assert first.failed >= 1 and first.succeeded == 0

    _put_container(cluster3, "a", "late")
    for node in cluster3.nodes:
        report = asyncio.run(ObjectUpdater(cluster3.daemon_config(node, "updater")).run_once())
        assert report.failed == 0 and report.errors == 0

    assert _listing(cluster3, "a", "late") == [["o"]] * 3
    assert not [
        f for n in cluster3.nodes for f in cluster3.files_under(n, "") if "async_pending/" in f
    ]


def test_expirer_deletes_expired_objects_and_their_rows(cluster3: LocalCluster):
    _put_container(cluster3, "a", "exp")
    delete_at = int(time.time()) + 60
    for name, extra in (("doomed", {"X-Delete-At": str(delete_at)}), ("kept", {})):
        for index, node in enumerate(cluster3.primaries("a", "exp", name)):
            headers = {**_update_headers(cluster3, "a", "exp", index), **extra}
            assert cluster3.put_object(
                [node], "a", "exp", name, name.encode(), ts(), **headers
            ) == [201]
    assert _listing(cluster3, "a", "exp") == [["doomed", "kept"]] * 3

    config = cluster3.daemon_config(cluster3.nodes[0], "expirer")
    early = asyncio.run(ObjectExpirer(config, clock=ManualClock(time.time())).run_once())
    assert early.expired == 0
    report = asyncio.run(ObjectExpirer(config, clock=ManualClock(delete_at + 1.0)).run_once())

    assert report.expired == 1 and report.deleted == 1
    assert _listing(cluster3, "a", "exp") == [["kept"]] * 3
    for node in cluster3.nodes:
        assert cluster3.files_under(node, ".ts")
        hash_dir = cluster3.hash_dir(node, "a", "exp", "doomed")
        assert not [f for f in os.listdir(hash_dir) if f.endswith(".data")]


def test_object_quarantined_by_a_reader_is_restored_by_the_replicator(cluster3: LocalCluster):
    body = b"read-path quarantine"
    cluster3.put_object(cluster3.nodes, "a", "c", "readq", body, ts())
    for node in cluster3.nodes:  # caches settle: no invalidation is left pending anywhere
        asyncio.run(ObjectReplicator(cluster3.daemon_config(node)).run_once())
    victim = cluster3.nodes[2]
    _flip_byte(_data_file(cluster3, victim, "readq"), 2)
    assert cluster3.get_object(victim, "a", "c", "readq").status_code == 404  # quarantined

    noticed = asyncio.run(ObjectReplicator(cluster3.daemon_config(victim)).run_once())
    assert noticed.quarantines_noticed == 1
    asyncio.run(ObjectReplicator(cluster3.daemon_config(cluster3.nodes[0])).run_once())

    assert cluster3.get_object(victim, "a", "c", "readq").content == body
