"""Fixtures: a loopback cluster of real objectd processes with real ring files."""

from __future__ import annotations

import pytest

from tests.objectd_daemons.local_cluster import LocalCluster


@pytest.fixture
def cluster3(tmp_path) -> LocalCluster:
    """Three nodes, three replicas: every node is a primary of every partition."""
    cluster = LocalCluster(tmp_path, 3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def cluster4(tmp_path) -> LocalCluster:
    """Four nodes, three replicas: each partition has one node that is not a primary."""
    cluster = LocalCluster(tmp_path, 4)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
