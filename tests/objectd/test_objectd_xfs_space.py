"""On XFS, a large object takes the space of its bytes, not three times that.

objectd fallocates a large body, then appends the metadata trailer past it; XFS keeps the
speculative preallocation of a file it knows was fallocated, so without a trim every 1 MiB
object held 3 MiB of disk. Method: a real objectd on a fresh loop-mounted XFS (root only), real
PUTs of bodies just above and well above the one-hop size, the blocks counted by stat.
"""

from __future__ import annotations

import os

import pytest
from objectd_harness import hash_dir_of, start_objectd
from objectd_helpers import object_put_headers

from objectd.limits import SMALL_BODY_BYTES_MAX
from tests.block.support import reflink_mount, require

BLOCK_SLACK_BYTES = 64 * 1024  # trailer and the last partial block


@pytest.fixture
def xfs_root():
    require("mkfs.xfs", "losetup")
    with reflink_mount(size="1G", fs="xfs") as mountpoint:
        yield mountpoint


@pytest.mark.parametrize("size", [SMALL_BODY_BYTES_MAX + 1, 1024 * 1024, 5 * 1024 * 1024 + 7])
def test_a_large_object_holds_no_blocks_past_its_end(xfs_root, size):
    process = start_objectd(xfs_root / "node", devices=("sda",))
    try:
        body = os.urandom(size)
        path = "/sda/1/AUTH_x/box/big"
        response = process.request("PUT", path, data=body, headers=object_put_headers())
        assert response.status_code == 201
        (data_file,) = hash_dir_of(process, "sda", 1, "AUTH_x", "box", "big").glob("*.data")
        stat = data_file.stat()
        assert stat.st_size > size
        assert stat.st_blocks * 512 <= stat.st_size + BLOCK_SLACK_BYTES, (
            f"{stat.st_blocks * 512} bytes on disk for a {stat.st_size}-byte file"
        )
        assert process.request("GET", path).content == body
    finally:
        process.stop()
