"""Account info replication: metadata (``X-Account-Meta-*``, sysmeta), timestamps and the DELETED
status set on one account replica reach the others with one replicator pass, and a newer value
or removal wins whichever replica replicates first.

Method: one loopback cluster of three real objectd processes for the module (every node is a
primary of every partition); each test uses its own account, created on every replica first (so
the replicator pushes rows and info, never a whole copy, which would carry the info anyway). The
replicator runs in the test process (``run_once``) and talks HTTP to the nodes; every assertion
reads the account back with a HEAD on each replica.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from objectd.db_replicator import DatabaseReplicator
from tests.objectd_daemons.local_cluster import LocalCluster, Node, ts

_accounts = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> LocalCluster:
    """Three nodes, three replicas, shared by the tests of this module (distinct accounts)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("account-replication"), 3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _replicate(cluster: LocalCluster, node: Node) -> None:
    report = asyncio.run(
        DatabaseReplicator(cluster.daemon_config(node, "db_replicator")).run_once()
    )
    assert report.errors == 0 and report.peer_failures == 0, report


def _account_on_every_replica(cluster: LocalCluster) -> tuple[str, int, list[Node]]:
    account = f"AUTH_rep{next(_accounts)}"
    part, devs = cluster.ring("account").get_nodes(account)
    nodes = [cluster.node_of(dev) for dev in devs]
    created = ts()
    for node in nodes:
        response = node.request("PUT", f"/{node.device}/{part}/{account}",
                                headers={"X-Timestamp": created})  # fmt: skip
        assert response.status_code == 201, response.text
    return account, part, nodes


def _post(node: Node, part: int, account: str, **headers: str) -> None:
    response = node.request("POST", f"/{node.device}/{part}/{account}",
                            headers={"X-Timestamp": ts(), **headers})  # fmt: skip
    assert response.status_code == 204, response.text


def _head(node: Node, part: int, account: str):
    return node.request("HEAD", f"/{node.device}/{part}/{account}")


def test_metadata_posted_to_one_replica_reaches_the_others(cluster: LocalCluster):
    account, part, nodes = _account_on_every_replica(cluster)
    _post(nodes[0], part, account, **{"X-Account-Meta-Color": "red",
                                      "X-Account-Sysmeta-Owner": "ops"})  # fmt: skip
    assert "X-Account-Meta-Color" not in _head(nodes[1], part, account).headers  # not yet

    _replicate(cluster, nodes[0])

    for node in nodes:
        headers = _head(node, part, account).headers
        assert headers["X-Account-Meta-Color"] == "red", node.index
        assert headers["X-Account-Sysmeta-Owner"] == "ops", node.index


@pytest.mark.parametrize("newer_value", ["blue", ""], ids=["newer-value", "newer-removal"])
@pytest.mark.parametrize("newer_side_first", [False, True], ids=["older-first", "newer-first"])
def test_newer_metadata_wins_whichever_replica_replicates_first(
    cluster: LocalCluster, newer_value: str, newer_side_first: bool
):
    account, part, nodes = _account_on_every_replica(cluster)
    older, newer = nodes[0], nodes[1]
    _post(older, part, account, **{"X-Account-Meta-Color": "red", "X-Account-Meta-Size": "L"})
    _post(newer, part, account, **{"X-Account-Meta-Color": newer_value})  # later X-Timestamp

    for node in (newer, older) if newer_side_first else (older, newer):
        _replicate(cluster, node)

    for node in nodes:
        headers = _head(node, part, account).headers
        assert headers.get("X-Account-Meta-Color") == (newer_value or None), node.index
        assert headers["X-Account-Meta-Size"] == "L", node.index  # other keys merge too
    # and a further pass changes nothing (idempotent)
    _replicate(cluster, nodes[2])
    assert _head(nodes[2], part, account).headers.get("X-Account-Meta-Color") == (
        newer_value or None
    )


def test_account_timestamps_and_delete_converge(cluster: LocalCluster):
    """A newer put reaches every replica; so does a delete (the DELETED status) made on one."""
    account, part, nodes = _account_on_every_replica(cluster)
    newer_put = ts()
    response = nodes[1].request("PUT", f"/{nodes[1].device}/{part}/{account}",
                                headers={"X-Timestamp": newer_put})  # fmt: skip
    assert response.status_code == 202, response.text

    _replicate(cluster, nodes[1])
    put_stamps = {_head(n, part, account).headers["X-Put-Timestamp"] for n in nodes}
    assert put_stamps == {newer_put}

    # a container listed: only the DELETED status (not "empty and delete newer") says deleted
    report = {"X-Backend-Server-Type": "account", "X-Put-Timestamp": ts(), "X-Object-Count": "1",
              "X-Bytes-Used": "3"}  # fmt: skip
    for node in nodes:
        response = node.request("PUT", f"/{node.device}/{part}/{account}/c", headers=report)
        assert response.status_code == 201, response.text
    response = nodes[2].request("DELETE", f"/{nodes[2].device}/{part}/{account}",
                                headers={"X-Timestamp": ts()})  # fmt: skip
    assert response.status_code == 204, response.text
    _replicate(cluster, nodes[2])
    for node in nodes:
        response = _head(node, part, account)
        assert response.status_code == 404, node.index
        assert response.headers["X-Account-Status"] == "Deleted", node.index
