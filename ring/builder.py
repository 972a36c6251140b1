"""The ring builder: devices, weights, and a rebalance that places partition-replicas.

Public: :class:`RingBuilder`, :class:`RebalanceReport`, :data:`PART_POWER_MAX`.

Swift's ring is the contract (partitions, replicas, failure domains, weights, minimal movement).
A rebalance runs in three steps, each bounded by the number of partition-replicas:

1. *Gather* what must move: replicas on removed or zero-weight devices (always, whatever
   ``min_part_hours`` says: their data is going away), replicas that share a failure domain when a
   better spread exists (dispersion first), and the excess of overloaded devices (balance).
   Only partitions not moved within ``min_part_hours`` are gathered for dispersion or balance, and
   never more than one replica of a partition per rebalance, so two copies of a partition are
   never in flight at once.
2. *Place* each gathered replica: walk the failure-domain tree from the root, at each level take
   the child holding the fewest replicas of this partition, and among those the one that wants
   the most partition-replicas (target minus assigned). Targets come from :mod:`ring.tiers`.
3. Repeat 1-2 for balance until every device is within ``max(1 %, 1 partition-replica)`` of its
   target or nothing more can move.

Excess is shed by largest remainder, so the number of moved replicas is the sum of the real
over-assignment (close to the ideal when a device is added), not one per device from rounding.
Everything is deterministic for a given builder state and seed.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from array import array
from collections import Counter
from typing import Any

from ring.device import DEVICE_KEYS, matches, parse_weight, validate_device
from ring.errors import RingBuilderError, RingValidationError
from ring.placement import NONE, Progress, Rebalance, overfull_node
from ring.tiers import TierTree

PART_POWER_MAX = 24  # 16 Mi partitions: ~50 MiB per replica of dev ids; plenty for a cluster
MIN_PART_HOURS_MAX = 65_535


@dataclasses.dataclass(frozen=True)
class RebalanceReport:
    """What a rebalance did: moved partition-replicas and the quality of the result."""

    parts_moved: int
    parts_moved_pct: float
    balance_pct: float
    dispersion_pct: float
    devices_removed: int
    passes: int


class RingBuilder:
    """Devices and the partition-replica assignment of one ring."""

    def __init__(self, part_power: int, replicas: int, min_part_hours: int = 1):
        if not isinstance(part_power, int) or not 0 <= part_power <= PART_POWER_MAX:
            raise RingBuilderError(
                f"part_power must be an integer 0..{PART_POWER_MAX}, got {part_power!r}"
            )
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise RingBuilderError(f"replicas must be an integer >= 1, got {replicas!r}")
        if not isinstance(min_part_hours, int) or not 0 <= min_part_hours <= MIN_PART_HOURS_MAX:
            raise RingBuilderError(
                f"min_part_hours must be an integer 0..{MIN_PART_HOURS_MAX}, got {min_part_hours!r}"
            )
        self.part_power = part_power
        self.replicas = replicas
        self.min_part_hours = min_part_hours
        self.devs: list[dict[str, Any] | None] = []
        self.replica2part2dev: list[array] = []  # empty until the first rebalance
        self.last_moved_hour = array("I", [0]) * self.partition_count
        self.hash_seed = os.urandom(16)
        self.version = 0
        self.devs_changed = False

    @property
    def partition_count(self) -> int:
        return 1 << self.part_power

    # ---- devices ---------------------------------------------------------------------------

    def add_dev(self, dev: dict[str, Any]) -> int:
        """Add a device; return its id. Raises :class:`RingBuilderError` on a bad or duplicate one."""
        dev = {key: dev[key] for key in DEVICE_KEYS if key in dev}
        validate_device(dev)
        for other in self.live_devs():
            if (other["ip"], other["port"], other["device"]) == (
                dev["ip"],
                dev["port"],
                dev["device"],
            ):
                raise RingBuilderError(
                    f"duplicate device {dev['ip']}:{dev['port']}/{dev['device']} (already d{other['id']})"
                )
        dev_id = dev.get("id")
        if dev_id is None:
            dev_id = len(self.devs)
        elif not isinstance(dev_id, int) or dev_id < 0:
            raise RingBuilderError(f"invalid device id {dev_id!r}")
        elif dev_id < len(self.devs) and self.devs[dev_id] is not None:
            raise RingBuilderError(f"device id {dev_id} is already in use")
        dev["id"] = dev_id
        while len(self.devs) <= dev_id:
            self.devs.append(None)
        self.devs[dev_id] = dev
        self.devs_changed = True
        return dev_id

    def live_devs(self) -> list[dict[str, Any]]:
        """Devices present and not marked for removal."""
        return [d for d in self.devs if d is not None and not d.get("removed")]

    def search_devs(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        return [d for d in self.live_devs() if matches(d, criteria)]

    def _dev(self, dev_id: int) -> dict[str, Any]:
        if (
            not 0 <= dev_id < len(self.devs)
            or self.devs[dev_id] is None
            or self.devs[dev_id].get("removed")
        ):
            raise RingBuilderError(f"no device with id {dev_id}")
        return self.devs[dev_id]  # type: ignore[return-value]

    def set_dev_weight(self, dev_id: int, weight: float) -> None:
        self._dev(dev_id)["weight"] = parse_weight(weight)
        self.devs_changed = True

    def remove_dev(self, dev_id: int) -> None:
        """Mark a device for removal: the next rebalance moves its replicas away and drops it."""
        dev = self._dev(dev_id)
        dev["weight"] = 0.0
        dev["removed"] = True
        self.devs_changed = True

    def pretend_min_part_hours_passed(self) -> None:
        """Forget when partitions last moved (for an operator who knows the data has settled)."""
        self.last_moved_hour = array("I", [0]) * self.partition_count

    # ---- rebalance -------------------------------------------------------------------------

    def rebalance(
        self,
        seed: int | None = None,
        *,
        now_s: float | None = None,
        progress: Progress | None = None,
    ) -> RebalanceReport:
        """Place every partition-replica; see the module docstring. Deterministic per seed."""
        weighted = [d for d in self.live_devs() if d["weight"] > 0]
        if len(weighted) < self.replicas:
            raise RingBuilderError(
                f"too few devices with weight: {len(weighted)} for {self.replicas} replicas"
            )
        rng = random.Random(self.version if seed is None else seed)
        now_hour = int((time.time() if now_s is None else now_s) // 3600)
        run = Rebalance(
            self, TierTree(self.devs, self.partition_count, self.replicas), rng, now_hour
        )
        passes = run.run(progress)
        removed = 0
        for dev in self.devs:
            if dev is not None and dev.get("removed"):
                self.devs[dev["id"]] = None
                removed += 1
        self.version += 1
        self.devs_changed = False
        self.check_valid(just_rebalanced=True)
        total = self.partition_count * self.replicas
        return RebalanceReport(
            parts_moved=run.moved,
            parts_moved_pct=100.0 * run.moved / total,
            balance_pct=self.get_balance(),
            dispersion_pct=self.get_dispersion(),
            devices_removed=removed,
            passes=passes,
        )

    # ---- reports ---------------------------------------------------------------------------

    def dev_part_counts(self) -> Counter:
        counts: Counter = Counter()
        for row in self.replica2part2dev:
            counts.update(row)
        counts.pop(NONE, None)
        return counts

    def dev_targets(self) -> dict[int, float]:
        return TierTree(self.devs, self.partition_count, self.replicas).device_targets()

    def get_balance(self) -> float:
        """Largest deviation of a device from its target, in percent (0 is perfect)."""
        if not self.replica2part2dev:
            return 0.0
        counts = self.dev_part_counts()
        worst = 0.0
        for dev_id, target in self.dev_targets().items():
            if target > 0:
                worst = max(worst, abs(100.0 * counts.get(dev_id, 0) / target - 100.0))
        return worst

    def get_dispersion(self) -> float:
        """Percent of partitions with two replicas in one failure domain where a spread was possible."""
        if not self.replica2part2dev:
            return 0.0
        tree = TierTree(self.devs, self.partition_count, self.replicas)
        bad = sum(
            1 for part in range(self.partition_count) if overfull_node(tree, self._part_devs(part))
        )
        return 100.0 * bad / self.partition_count

    def _part_devs(self, part: int) -> list[int]:
        return [row[part] for row in self.replica2part2dev]

    def check_valid(self, *, just_rebalanced: bool = False) -> None:
        """Raise :class:`RingValidationError` unless the assignment is complete and consistent.

        Every partition-replica is on a present device (right after a rebalance: one with
        weight, not being removed), no partition has two replicas on one device, and the
        devices' counts add up to partitions x replicas.
        """
        if len(self.replica2part2dev) != self.replicas:
            raise RingValidationError(
                f"{len(self.replica2part2dev)} replica rows for {self.replicas} replicas"
            )
        if just_rebalanced:
            live = {d["id"] for d in self.live_devs() if d["weight"] > 0}
        else:
            live = {d["id"] for d in self.devs if d is not None}
        for row in self.replica2part2dev:
            if len(row) != self.partition_count:
                raise RingValidationError(
                    f"replica row of {len(row)} for {self.partition_count} partitions"
                )
            stray = set(row) - live
            if stray:
                raise RingValidationError(f"partition-replicas on missing devices {sorted(stray)}")
        if self.replicas > 1:
            for part, devs in enumerate(zip(*self.replica2part2dev, strict=True)):
                if len(set(devs)) != len(devs):
                    raise RingValidationError(
                        f"partition {part} has two replicas on one device: {devs}"
                    )
        if sum(self.dev_part_counts().values()) != self.partition_count * self.replicas:
            raise RingValidationError("device counts do not add up to partitions x replicas")

    # ---- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "part_power": self.part_power,
            "replicas": self.replicas,
            "min_part_hours": self.min_part_hours,
            "devs": self.devs,
            "replica2part2dev": [row.tobytes() for row in self.replica2part2dev],
            "last_moved_hour": self.last_moved_hour.tobytes(),
            "hash_seed": self.hash_seed,
            "version": self.version,
            "devs_changed": self.devs_changed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RingBuilder:
        builder = cls(data["part_power"], data["replicas"], data["min_part_hours"])
        builder.devs = list(data["devs"])
        builder.replica2part2dev = [_int_array(raw) for raw in data["replica2part2dev"]]
        builder.last_moved_hour = array("I")
        builder.last_moved_hour.frombytes(data["last_moved_hour"])
        builder.hash_seed = bytes(data["hash_seed"])
        builder.version = int(data["version"])
        builder.devs_changed = bool(data["devs_changed"])
        if len(builder.last_moved_hour) != builder.partition_count:
            raise RingValidationError("last_moved_hour does not match the partition count")
        if builder.replica2part2dev:
            builder.check_valid()
        return builder


def _int_array(raw: bytes) -> array:
    row = array("i")
    row.frombytes(raw)
    return row
