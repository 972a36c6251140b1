"""The reflink backend on btrfs (the other file system it supports): the same data path as on
XFS, shortened to the copy-on-write core: write over iSCSI, snapshot, write more, clone the
snapshot, read the snapshot-time data back over iSCSI."""

from __future__ import annotations

import os

import pytest

from shoal.units import MiB
from tests.block.support import host_node

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def btrfs_node(tmp_path_factory):
    with host_node(tmp_path_factory.mktemp("blockd-btrfs"), fs="btrfs") as node:
        yield node


def test_snapshot_and_clone_on_btrfs(btrfs_node):
    node = btrfs_node
    volume = node.create_volume(1)
    export = node.export(volume["id"])
    before, after = os.urandom(4 * MiB), os.urandom(4 * MiB)
    node.initiator.write(export, before)
    snapshot = node.api.ok("POST", "/v1/snapshots", {"volume_id": volume["id"]}, status=201)
    node.initiator.write(export, after)
    clone = node.create_volume(1, snapshot_id=snapshot["snapshot"]["id"])
    assert node.initiator.read(node.export(clone["id"]), 4 * MiB) == before
    assert node.initiator.read(export, 4 * MiB) == after
