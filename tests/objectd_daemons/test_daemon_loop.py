"""The daemons' shared pass loop and ring cache: a failed pass is logged and the next starts on
time; rings load once, come back after a change, and a missing ring is None where allowed.

Method: the loop runs on a ManualClock and is cancelled after a few passes; rings are real files
built with the ring builder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from objectd.daemon_loop import RingCache, run_passes
from ring import RingBuilder, write_ring
from ring.errors import RingFileError
from shoal.clock import ManualClock


@dataclasses.dataclass
class _Report:
    number: int

    def as_dict(self) -> dict[str, int]:
        return {"number": self.number}


def test_a_failed_pass_is_logged_and_the_next_starts_on_time(caplog):
    clock = ManualClock(start=0.0)
    started: list[float] = []

    async def run_once() -> _Report:
        started.append(clock.time())
        if len(started) == 2:
            raise RuntimeError("disk gone")
        if len(started) == 4:
            raise asyncio.CancelledError
        return _Report(len(started))

    caplog.set_level(logging.INFO, logger="test.loop")
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_passes("test", run_once, clock, 30.0, logging.getLogger("test.loop")))
    assert started == [0.0, 30.0, 60.0, 90.0]
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["test pass: {'number': 1}", "test pass failed", "test pass: {'number': 3}"]
    assert caplog.records[1].exc_info is not None


def _write(path, devices: int) -> None:
    builder = RingBuilder(part_power=4, replicas=1, min_part_hours=0)
    for index in range(devices):
        builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": 6200 + index,
                         "device": f"d{index}", "weight": 1.0})  # fmt: skip
    builder.rebalance()
    write_ring(builder, path)


def test_ring_cache_loads_once_and_missing_rings_are_none(tmp_path):
    cache = RingCache(tmp_path)
    assert cache.get_if_present("account.ring") is None
    with pytest.raises(RingFileError):
        cache.get("account.ring")
    _write(tmp_path / "container.ring", devices=1)
    first = cache.get("container.ring")
    assert cache.get_if_present("container.ring") is first
    assert len(first.devs) == 1
