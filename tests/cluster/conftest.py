"""Fixtures: one namespace cluster per module (4 storage hosts + 1 spare + the proxy), the
client inside the proxy's namespace, and the ledger of every write made in the module.

Host 0's device is a small (256 MiB) loop-mounted ext4 filesystem, so a test can fill it for real.
Everything is torn down at the end, also when a test or the set-up fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.cluster.netns_cluster import NetnsCluster
from tests.cluster.swift_load import CONTAINER, Ledger, SwiftClient

SMALL_DEVICE_BYTES = 256 * 1024 * 1024


def _why_not_runnable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, loop mounts)"
    for command in ("ip", "mount", "mkfs.ext4"):
        if shutil.which(command) is None:
            return f"no {command} (make system-packages)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _why_not_runnable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("netns-cluster")
    cluster = NetnsCluster(root, small_device_bytes=SMALL_DEVICE_BYTES)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def client(cluster):
    assert cluster.proxy_host is not None
    swift = SwiftClient(cluster.proxy_host.name, cluster.proxy_url, threads=16)
    try:
        assert swift.request("PUT", f"/{CONTAINER}").status_code in (201, 202)
        yield swift
    finally:
        swift.close()


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()
