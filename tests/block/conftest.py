"""Fixtures of blockd's host tests (see tests/block/support.py for what each piece is)."""

from __future__ import annotations

import pytest

from tests.block.support import host_node


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """XFS + tgtd + blockd (reflink, tgt, dev auth) for one test module: ~2 s to start."""
    with host_node(tmp_path_factory.mktemp("blockd-host")) as node:
        yield node
