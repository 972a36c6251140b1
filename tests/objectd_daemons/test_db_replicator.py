"""The database replicator: a replica that has no DB gets a whole copy, rows added on one replica
reach the others (and only once: sync points), a handoff DB moves to its primaries and goes.

Method: real objectd processes and rings on loopback; containers and object rows are written
straight to the container servers; the replicator runs in the test process (``run_once``).
"""

from __future__ import annotations

import asyncio

from objectd.db_replicator import DatabaseReplicator
from tests.objectd_daemons.local_cluster import LocalCluster, ts


def _replicate(cluster: LocalCluster, node):
    return asyncio.run(DatabaseReplicator(cluster.daemon_config(node, "db_replicator")).run_once())


def _container_nodes(cluster: LocalCluster, container: str):
    part, devs = cluster.ring("container").get_nodes("a", container)
    return part, [cluster.node_of(dev) for dev in devs]


def _put_container(node, part: int, container: str) -> None:
    response = node.request(
        "PUT", f"/{node.device}/{part}/a/{container}", headers={"X-Timestamp": ts()}
    )
    assert response.status_code in (201, 202), response.text


def _put_row(node, part: int, container: str, obj: str, size: int) -> None:
    headers = {"X-Backend-Server-Type": "container", "X-Timestamp": ts(), "X-Size": str(size),
               "X-Content-Type": "text/plain", "X-Etag": "d41d8cd98f00b204e9800998ecf8427e"}  # fmt: skip
    response = node.request("PUT", f"/{node.device}/{part}/a/{container}/{obj}", headers=headers)
    assert response.status_code in (201, 204), response.text


def _names(node, part: int, container: str) -> list[str] | None:
    response = node.request("GET", f"/{node.device}/{part}/a/{container}")
    return [row["name"] for row in response.json()] if response.status_code == 200 else None


def test_missing_replica_gets_a_whole_copy_and_later_rows_once(cluster3: LocalCluster):
    part, nodes = _container_nodes(cluster3, "c1")
    for node in nodes[:2]:
        _put_container(node, part, "c1")
        for i in range(30):
            _put_row(node, part, "c1", f"o{i:02d}", i)
    assert _names(nodes[2], part, "c1") is None

    first = _replicate(cluster3, nodes[0])
    assert first.whole_copies == 1 and first.errors == 0
    expected = [f"o{i:02d}" for i in range(30)]
    assert _names(nodes[2], part, "c1") == expected

    _put_row(nodes[0], part, "c1", "late", 5)
    second = _replicate(cluster3, nodes[0])
    # only the new row, once to each of the two peers: the sync points hold the rest
    assert second.whole_copies == 0 and second.rows_pushed == 2
    for node in nodes:
        assert _names(node, part, "c1") == sorted([*expected, "late"])
    third = _replicate(cluster3, nodes[0])
    assert third.rows_pushed == 0


def test_rows_deleted_on_one_replica_are_deleted_everywhere(cluster3: LocalCluster):
    part, nodes = _container_nodes(cluster3, "c2")
    for node in nodes:
        _put_container(node, part, "c2")
        _put_row(node, part, "c2", "x", 1)
    headers = {"X-Backend-Server-Type": "container", "X-Timestamp": ts()}
    assert nodes[1].request(
        "DELETE", f"/{nodes[1].device}/{part}/a/c2/x", headers=headers
    ).status_code in (201, 204)
    _replicate(cluster3, nodes[1])
    for node in nodes:
        assert _names(node, part, "c2") == []


def test_handoff_database_moves_to_primaries_and_is_removed(cluster4: LocalCluster):
    part, primaries = _container_nodes(cluster4, "c3")
    handoff = next(n for n in cluster4.nodes if n not in primaries)
    _put_container(handoff, part, "c3")
    _put_row(handoff, part, "c3", "only-here", 3)

    report = _replicate(cluster4, handoff)

    assert report.handoffs_removed == 1 and report.whole_copies == 3
    for node in primaries:
        assert _names(node, part, "c3") == ["only-here"]
    assert not list((handoff.device_path / "containers").rglob("*.db"))
