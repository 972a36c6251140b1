"""The reflink backend against a model (hypothesis state machine) on a real XFS with reflink.

Goal: whatever sequence of create / write / snapshot / clone / extend / revert / delete runs,
every volume and snapshot holds exactly what the model says (its own content, never a
neighbour's: copy-on-write both ways) and has the model's size. Method: the model is a dict of
name -> (content tag, size); each step applies the same operation to the backend through
BlockService (the layer the API calls) and the invariant reads every file back.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from blockd.backends.reflink import ReflinkBackend
from blockd.service import BlockService
from shoal.units import GiB
from tests.block.support import reflink_mount, require

pytestmark = [pytest.mark.root]

TAG_BYTES = 64  # content that identifies a version, written at offset 0 and at 1 GiB - 64


class NoTarget:
    """Stands in for an iSCSI target: the model exercises storage only (nothing is exported)."""

    lun = 1

    async def start(self) -> None: ...
    async def initiators(self, name: str) -> list[str]:
        return []

    async def remove(self, name: str) -> None: ...


@pytest.fixture(scope="module")
def xfs():
    require("mkfs.xfs", "losetup")
    with reflink_mount("8G") as mount:
        yield mount


def make_machine(mount: Path):
    class ReflinkModel(RuleBasedStateMachine):
        volumes = Bundle("volumes")
        snapshots = Bundle("snapshots")

        def __init__(self):
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.dir = Path(tempfile.mkdtemp(dir=mount))
            backend = ReflinkBackend(self.dir, 20.0)
            self.service = BlockService(backend, NoTarget(), ["127.0.0.1:3260"])
            self.call(self.service.start())
            self.model: dict[str, tuple[bytes, int]] = {}  # volume id -> (tag, size)
            self.snaps: dict[str, tuple[bytes, int, str]] = {}  # id -> (tag, size, volume)

        def call(self, coroutine):
            return self.loop.run_until_complete(coroutine)

        def path(self, volume_id: str) -> Path:
            return self.dir / f"volume-{volume_id}"

        def write_tag(self, volume_id: str, tag: bytes) -> None:
            fd = os.open(self.path(volume_id), os.O_WRONLY)
            try:
                os.pwrite(fd, tag, 0)
                os.pwrite(fd, tag, GiB - TAG_BYTES)
            finally:
                os.close(fd)

        @rule(target=volumes, size_gib=st.integers(1, 3))
        def create(self, size_gib):
            volume_id = str(uuid.uuid4())
            self.call(self.service.create_volume(volume_id, size_gib))
            self.model[volume_id] = (bytes(TAG_BYTES), size_gib * GiB)
            return volume_id

        @precondition(lambda self: self.model)
        @rule(volume=volumes)
        def write(self, volume):
            if volume in self.model:
                tag = os.urandom(TAG_BYTES)
                self.write_tag(volume, tag)
                self.model[volume] = (tag, self.model[volume][1])

        @rule(target=snapshots, volume=volumes)
        def snapshot(self, volume):
            snapshot_id = str(uuid.uuid4())
            if volume not in self.model:
                return snapshot_id  # a deleted volume: nothing is made (checked below)
            self.call(self.service.create_snapshot(snapshot_id, volume))
            tag, size = self.model[volume]
            self.snaps[snapshot_id] = (tag, size, volume)
            return snapshot_id

        @rule(target=volumes, snapshot=snapshots, extra_gib=st.integers(0, 2))
        def clone_snapshot(self, snapshot, extra_gib):
            volume_id = str(uuid.uuid4())
            if snapshot not in self.snaps:
                return volume_id
            tag, size, _ = self.snaps[snapshot]
            size_gib = size // GiB + extra_gib
            self.call(self.service.create_volume(volume_id, size_gib, snapshot_id=snapshot))
            self.model[volume_id] = (tag, size_gib * GiB)
            return volume_id

        @rule(target=volumes, source=volumes)
        def clone_volume(self, source):
            volume_id = str(uuid.uuid4())
            if source not in self.model:
                return volume_id
            tag, size = self.model[source]
            self.call(self.service.create_volume(volume_id, size // GiB, source_volume_id=source))
            self.model[volume_id] = (tag, size)
            return volume_id

        @rule(volume=volumes, more_gib=st.integers(1, 2))
        def extend(self, volume, more_gib):
            if volume in self.model:
                tag, size = self.model[volume]
                self.call(self.service.extend_volume(volume, size // GiB + more_gib))
                self.model[volume] = (tag, size + more_gib * GiB)

        @rule(snapshot=snapshots)
        def revert(self, snapshot):
            if snapshot in self.snaps and self.snaps[snapshot][2] in self.model:
                tag, _, volume = self.snaps[snapshot]
                self.call(self.service.revert_volume(volume, snapshot))
                self.model[volume] = (tag, self.model[volume][1])

        @rule(volume=consumes(volumes))
        def delete_volume(self, volume):
            if volume in self.model:
                self.call(self.service.delete_volume(volume))
                del self.model[volume]

        @rule(snapshot=consumes(snapshots))
        def delete_snapshot(self, snapshot):
            if snapshot in self.snaps:
                self.call(self.service.delete_snapshot(snapshot))
                del self.snaps[snapshot]

        @invariant()
        def storage_matches_the_model(self):
            listed = {v.id: v.size_bytes for v in self.call(self.service.list_volumes())}
            assert listed == {k: size for k, (_, size) in self.model.items()}
            snapshots = {s.id: s.volume_id for s in self.call(self.service.list_snapshots())}
            assert snapshots == {k: volume for k, (_, _, volume) in self.snaps.items()}
            for volume_id, (tag, _) in self.model.items():
                with open(self.path(volume_id), "rb") as f:
                    assert f.read(TAG_BYTES) == tag
                    f.seek(GiB - TAG_BYTES)
                    assert f.read(TAG_BYTES) == tag
            for snapshot_id, (tag, size, _) in self.snaps.items():
                path = self.dir / f"_snapshot-{snapshot_id}"
                assert path.stat().st_size == size
                with open(path, "rb") as f:
                    assert f.read(TAG_BYTES) == tag

        def teardown(self):
            for entry in self.dir.iterdir():
                entry.unlink()
            self.dir.rmdir()
            self.loop.close()

    return ReflinkModel


def test_reflink_backend_follows_its_model(xfs):
    machine = make_machine(xfs)
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
