"""The expirer deletes expired objects of every storage policy with that policy's object ring,
and skips (without failing the pass) the objects of a policy that has no ring file.

Method: real objectd processes and rings on loopback (``local_cluster``). The policy-1 ring
(``object-1.ring``) has another part power than ``object.ring``, so a DELETE sent with the
policy-0 ring would name the wrong partition and leave the ``.data`` files in place. Objects are
written straight to the object servers with ``X-Backend-Storage-Policy-Index`` (as the proxy
does), into a container created with that policy; the expirer runs in the test process with a
``ManualClock`` set before or past the expiry, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from objectd.expirer import ObjectExpirer
from ring import Ring, RingBuilder, ring_name, write_ring
from shoal.clock import ManualClock
from tests.objectd_daemons.local_cluster import LocalCluster, Node, ts

POLICY_1_PART_POWER = 4  # the cluster's rings use 3: the partitions of a name differ


def _write_object_ring(cluster: LocalCluster, policy: int, part_power: int) -> Ring:
    builder = RingBuilder(part_power, cluster.replicas, 0)
    builder.hash_seed = cluster.layout_seed
    for node in cluster.nodes:
        builder.add_dev(
            {"region": 1, "zone": node.index, "ip": node.ip, "port": node.port,
             "device": node.device, "weight": 100.0}
        )  # fmt: skip
    builder.rebalance(seed=7)
    path = cluster.ring_dir / ring_name("object", policy)
    write_ring(builder, path)
    return Ring(path)


def _put_container(cluster: LocalCluster, account: str, container: str, policy: int) -> None:
    part, devs = cluster.ring("container").get_nodes(account, container)
    for dev in devs:
        node = cluster.node_of(dev)
        response = node.request(
            "PUT",
            f"/{node.device}/{part}/{account}/{container}",
            headers={"X-Timestamp": ts(), "X-Backend-Storage-Policy-Index": str(policy)},
        )
        assert response.status_code in (201, 202)


def _listings(cluster: LocalCluster, account: str, container: str) -> list[list[str]]:
    part, devs = cluster.ring("container").get_nodes(account, container)
    listings = []
    for dev in devs:
        node = cluster.node_of(dev)
        response = node.request("GET", f"/{node.device}/{part}/{account}/{container}")
        assert response.status_code == 200
        listings.append([row["name"] for row in response.json()])
    return listings


def _put_object(cluster: LocalCluster, ring: Ring, policy: int, account: str, container: str,
                obj: str, delete_at: int, *, with_rows: bool = True) -> list[Node]:  # fmt: skip
    """PUT ``obj`` on each of its primaries in ``ring``, updating the container (one container
    replica per object replica) unless ``with_rows`` is false; the primaries."""
    part, devs = ring.get_nodes(account, container, obj)
    container_part, container_devs = cluster.ring("container").get_nodes(account, container)
    primaries = [cluster.node_of(dev) for dev in devs]
    for index, node in enumerate(primaries):
        headers = {
            "X-Timestamp": ts(),
            "Content-Type": "application/octet-stream",
            "X-Delete-At": str(delete_at),
            "X-Backend-Storage-Policy-Index": str(policy),
        }
        if with_rows:
            target = cluster.node_of(container_devs[index % len(container_devs)])
            headers["X-Container-Host"] = f"{target.ip}:{target.port}"
            headers["X-Container-Device"] = target.device
            headers["X-Container-Partition"] = str(container_part)
        response = node.request(
            "PUT", f"/{node.device}/{part}/{account}/{container}/{obj}", data=obj.encode(),
            headers=headers,
        )  # fmt: skip
        assert response.status_code == 201, response.text
    return primaries


def _files(cluster: LocalCluster, node: Node, ring: Ring | None, policy: int, account: str,
           container: str, obj: str) -> list[str]:  # fmt: skip
    """The file names in the object's hash directory of ``policy`` on ``node``."""
    part = (ring or cluster.ring()).get_part(account, container, obj)
    layout = cluster.layout(node)
    hash_dir = Path(
        layout.object_dir(node.device, part, policy, layout.hash_of(account, container, obj))
    )
    return sorted(os.listdir(hash_dir)) if hash_dir.is_dir() else []


def test_expirer_deletes_expired_policy_1_objects_on_their_primaries_and_rows(
    cluster4: LocalCluster,
):
    ring1 = _write_object_ring(cluster4, 1, POLICY_1_PART_POWER)
    _put_container(cluster4, "a", "p1", policy=1)
    now = int(time.time())
    delete_at = now + 60
    doomed = _put_object(cluster4, ring1, 1, "a", "p1", "doomed", delete_at)
    _put_object(cluster4, ring1, 1, "a", "p1", "later", now + 3600)
    assert _listings(cluster4, "a", "p1") == [["doomed", "later"]] * 3
    worker = doomed[0]  # the expirer of one primary finds the object on its own disk
    config = cluster4.daemon_config(worker, "expirer")

    early = asyncio.run(ObjectExpirer(config, clock=ManualClock(now)).run_once())
    assert early.expired == 0
    report = asyncio.run(ObjectExpirer(config, clock=ManualClock(delete_at + 1.0)).run_once())

    assert report.expired == 1 and report.deleted == 1 and report.failed == 0
    assert _listings(cluster4, "a", "p1") == [["later"]] * 3
    for node in doomed:
        files = _files(cluster4, node, ring1, 1, "a", "p1", "doomed")
        assert files and all(name.endswith(".ts") for name in files), (node.device, files)
    for node in cluster4.nodes:  # the policy-0 directories were never touched
        assert not (node.device_path / "objects").exists()
    later_nodes = [cluster4.node_of(dev) for dev in ring1.get_nodes("a", "p1", "later")[1]]
    for node in later_nodes:
        files = _files(cluster4, node, ring1, 1, "a", "p1", "later")
        assert [name for name in files if name.endswith(".data")], (node.device, files)


def test_expirer_skips_a_policy_without_ring_and_still_expires_policy_0(
    cluster3: LocalCluster, caplog
):
    _put_container(cluster3, "a", "p0", policy=0)
    delete_at = int(time.time()) + 60
    ring0 = cluster3.ring()
    _put_object(cluster3, ring0, 0, "a", "p0", "doomed", delete_at)
    for name in ("orphan1", "orphan2"):  # policy 2: no object-2.ring in the ring directory
        _put_object(cluster3, ring0, 2, "a", "p2", name, delete_at, with_rows=False)
    worker = cluster3.nodes[0]  # three nodes, three replicas: a primary of everything
    config = cluster3.daemon_config(worker, "expirer")

    with caplog.at_level(logging.WARNING, logger="objectd.expirer"):
        report = asyncio.run(ObjectExpirer(config, clock=ManualClock(delete_at + 1.0)).run_once())

    assert report.expired == 1 and report.deleted == 1 and report.errors == 0
    assert report.skipped_no_ring == 2
    assert _listings(cluster3, "a", "p0") == [[]] * 3
    for node in cluster3.nodes:
        assert all(f.endswith(".ts") for f in _files(cluster3, node, None, 0, "a", "p0", "doomed"))
        for name in ("orphan1", "orphan2"):  # left for an expirer that has the ring
            files = _files(cluster3, node, None, 2, "a", "p2", name)
            assert [f for f in files if f.endswith(".data")], (node.device, files)
    no_ring = [
        r for r in caplog.records if r.name == "objectd.expirer" and "object-2.ring" in r.message
    ]
    assert len(no_ring) == 1, [r.message for r in caplog.records]
