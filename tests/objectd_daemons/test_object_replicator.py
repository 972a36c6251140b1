"""The object replicator makes replicas converge: a lost replica comes back, a handoff partition
moves to its primaries and disappears, old tombstones are reclaimed, newer versions win.

Method: real objectd processes on loopback with real ring files (``local_cluster``); objects
are written straight to the backend as a proxy would; the replicator runs in the test process
(``run_once``) for one node at a time and the files on every node are checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from objectd.replicator import ObjectReplicator
from tests.objectd_daemons.local_cluster import LocalCluster, ts


def _replicate(cluster: LocalCluster, node, **options):
    return asyncio.run(ObjectReplicator(cluster.daemon_config(node, **options)).run_once())


def test_replica_deleted_on_one_node_comes_back(cluster3: LocalCluster):
    bodies = {f"o{i}": os.urandom(100 + i * 3000) for i in range(12)}
    for name, body in bodies.items():
        assert (
            cluster3.put_object(cluster3.primaries("a", "c", name), "a", "c", name, body, ts())
            == [201] * 3
        )
    victim, healer = cluster3.nodes[1], cluster3.nodes[0]
    shutil.rmtree(victim.device_path / "objects")
    assert all(cluster3.get_object(victim, "a", "c", n).status_code == 404 for n in bodies)

    report = _replicate(cluster3, healer)

    assert report.errors == 0 and report.files_sent >= len(bodies)
    for name, body in bodies.items():
        response = cluster3.get_object(victim, "a", "c", name)
        assert response.status_code == 200 and response.content == body
        assert response.headers["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_second_pass_sends_nothing_when_replicas_agree(cluster3: LocalCluster):
    for i in range(5):
        cluster3.put_object(cluster3.nodes, "a", "c", f"same{i}", b"x" * i, ts())
    first = _replicate(cluster3, cluster3.nodes[0])
    second = _replicate(cluster3, cluster3.nodes[0])
    assert first.files_sent == 0 and second.files_sent == 0 and second.suffixes_synced == 0


def test_newer_version_and_metadata_replace_older_on_peer(cluster3: LocalCluster):
    old, new = b"old" * 10, b"new" * 10
    cluster3.put_object(cluster3.nodes, "a", "c", "v", old, ts())
    cluster3.put_object([cluster3.nodes[0]], "a", "c", "v", new, ts())
    part = cluster3.ring().get_part("a", "c", "v")
    posted = cluster3.nodes[0].request(
        "POST", f"/d0/{part}/a/c/v", headers={"X-Timestamp": ts(), "X-Object-Meta-Color": "blue"}
    )
    assert posted.status_code == 202

    _replicate(cluster3, cluster3.nodes[0])

    for node in cluster3.nodes:
        response = cluster3.get_object(node, "a", "c", "v")
        assert response.content == new and response.headers["X-Object-Meta-Color"] == "blue"


def test_deletion_replicates_as_a_tombstone(cluster3: LocalCluster):
    cluster3.put_object(cluster3.nodes, "a", "c", "gone", b"data", ts())
    part = cluster3.ring().get_part("a", "c", "gone")
    assert (
        cluster3.nodes[2]
        .request("DELETE", f"/d2/{part}/a/c/gone", headers={"X-Timestamp": ts()})
        .status_code
        == 204
    )

    _replicate(cluster3, cluster3.nodes[2])

    for node in cluster3.nodes:
        assert cluster3.get_object(node, "a", "c", "gone").status_code == 404
        assert cluster3.files_under(node, ".ts") and not cluster3.files_under(node, ".data")


def test_handoff_partition_is_reverted_to_primaries_and_removed(cluster4: LocalCluster):
    ring = cluster4.ring()
    names = [f"h{i}" for i in range(40)]
    handoff_of: dict[str, object] = {}
    for name in names:
        part = ring.get_part("a", "c", name)
        primaries = [cluster4.node_of(d) for d in ring.get_part_nodes(part)]
        handoff = next(n for n in cluster4.nodes if n not in primaries)
        handoff_of[name] = handoff
        # the third primary was "down": the write went to the handoff instead
        statuses = cluster4.put_object(
            [*primaries[:2], handoff], "a", "c", name, name.encode(), ts()
        )
        assert statuses == [201] * 3
    for node in cluster4.nodes:
        _replicate(cluster4, node)

    for name in names:
        for primary in cluster4.primaries("a", "c", name):
            assert cluster4.get_object(primary, "a", "c", name).content == name.encode()
        assert not cluster4.hash_dir(handoff_of[name], "a", "c", name).exists()
    for node in cluster4.nodes:  # no partition dir is left on a node that is not its primary
        for part_dir in (node.device_path / "objects").iterdir():
            primaries = [cluster4.node_of(d) for d in ring.get_part_nodes(int(part_dir.name))]
            assert node in primaries, f"handoff partition {part_dir} left on node {node.index}"


def test_tombstones_older_than_reclaim_age_are_reclaimed(cluster3: LocalCluster):
    old = f"{time.time() - 3600:.5f}"
    fresh = ts()
    part_old = cluster3.ring().get_part("a", "c", "old")
    part_new = cluster3.ring().get_part("a", "c", "fresh")
    for node in cluster3.nodes:
        node.request("DELETE", f"/{node.device}/{part_old}/a/c/old", headers={"X-Timestamp": old})
        node.request(
            "DELETE", f"/{node.device}/{part_new}/a/c/fresh", headers={"X-Timestamp": fresh}
        )
    for node in cluster3.nodes:
        _replicate(cluster3, node, reclaim_age_s=600.0)
    for node in cluster3.nodes:
        assert not cluster3.hash_dir(node, "a", "c", "old").exists()
        assert cluster3.hash_dir(node, "a", "c", "fresh").exists()


def test_shoal_replicator_once_prints_its_report(cluster3: LocalCluster):
    cluster3.put_object(cluster3.nodes[:1], "a", "c", "cli", b"cli-body", ts())
    config = cluster3.nodes[0].write_config(cluster3.ring_dir, {"concurrency": 2})
    done = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "replicator", "--once", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["files_sent"] == 2 and report["errors"] == 0
    for node in cluster3.nodes:
        assert cluster3.get_object(node, "a", "c", "cli").content == b"cli-body"


def test_shoal_replicator_runs_passes_until_sigterm(cluster3: LocalCluster):
    cluster3.put_object(cluster3.nodes[:1], "a", "c", "forever", b"forever-body", ts())
    config = cluster3.nodes[0].write_config(cluster3.ring_dir, {"interval_s": 0.2})
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli", "replicator", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(
                cluster3.get_object(n, "a", "c", "forever").status_code == 200
                for n in cluster3.nodes
            ):
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    for node in cluster3.nodes:
        assert cluster3.get_object(node, "a", "c", "forever").content == b"forever-body"


def test_unmounted_primary_is_replaced_by_a_handoff_until_it_returns(cluster4: LocalCluster):
    ring = cluster4.ring()
    part = ring.get_part("a", "c", "um")
    primaries = [cluster4.node_of(d) for d in ring.get_part_nodes(part)]
    spare = next(n for n in cluster4.nodes if n not in primaries)
    cluster4.put_object(primaries, "a", "c", "um", b"keep three copies", ts())
    gone = primaries[2]
    unmounted = gone.device_path.with_name("unmounted")
    gone.device_path.rename(unmounted)  # objectd now answers 507 for that device
    try:
        report = _replicate(cluster4, primaries[0])
        assert report.handoff_pushes == 1
        assert cluster4.get_object(spare, "a", "c", "um").content == b"keep three copies"
    finally:
        unmounted.rename(gone.device_path)
    time.sleep(0.3)  # objectd rescans unknown devices at most ten times a second
    _replicate(cluster4, spare)  # the device is back: the handoff copy goes home and away
    assert not cluster4.hash_dir(spare, "a", "c", "um").exists()
    assert cluster4.get_object(gone, "a", "c", "um").content == b"keep three copies"
