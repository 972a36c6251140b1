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
from collections.abc import Callable
from typing import Any

from ring.device import DEVICE_KEYS, matches, parse_weight, validate_device
from ring.errors import RingBuilderError, RingValidationError
from ring.tiers import ROOT, TierTree

PART_POWER_MAX = 24  # 16 Mi partitions: ~50 MiB per replica of dev ids; plenty for a cluster
MIN_PART_HOURS_MAX = 65_535
BALANCE_PASSES_MAX = 24  # each pass is O(partition-replicas); passes stop early when balanced
NONE = -1  # an unassigned partition-replica

Progress = Callable[[str, int, int], None]


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
        run = _Rebalance(
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
            1 for part in range(self.partition_count) if _overfull_node(tree, self._part_devs(part))
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


def _overfull_node(tree: TierTree, devs: list[int]) -> int | None:
    """The tree node holding more replicas of one partition than dispersion allows, if any."""
    chains = [tree.chain[d] for d in devs if d in tree.chain]
    if len({c[0] for c in chains}) == len(chains):
        return None  # every replica in its own region: nothing can be better spread
    counts: Counter = Counter()
    for chain in chains:
        counts.update(chain)
    for node, count in counts.items():  # chains are listed top-down, so regions come first
        if count > 1 and count > tree.cap[node] and tree.has_room_beside(node, counts):
            return node
    return None


class _Rebalance:
    """One rebalance run; owns the per-node counts while it places replicas."""

    def __init__(self, builder: RingBuilder, tree: TierTree, rng: random.Random, now_hour: int):
        self.b = builder
        self.tree = tree
        self.rng = rng
        self.now_hour = now_hour
        self.moved = 0
        self.moved_parts: set[int] = set()
        self.assigned = [0] * len(tree.parent)
        self.previous: dict[tuple[int, int], int] = {}  # (part, replica) -> device before gathering

    def run(self, progress: Progress | None) -> int:
        b = self.b
        self.first_build = not b.replica2part2dev  # no data anywhere yet: nothing to lock
        if not b.replica2part2dev:
            b.replica2part2dev = [array("i", [NONE]) * b.partition_count for _ in range(b.replicas)]
        for dev_id, count in b.dev_part_counts().items():
            if dev_id in self.tree.chain:
                self._count(dev_id, count)
        gathered = self._gather_unplaceable()
        gathered += self._gather_badly_dispersed()
        self._place(gathered, progress)
        passes = 1
        while passes < BALANCE_PASSES_MAX and not self._balanced():
            if not self._move_overloaded():
                break
            passes += 1
        return passes

    def _count(self, dev_id: int, delta: int) -> None:
        for node in (ROOT, *self.tree.chain[dev_id]):
            self.assigned[node] += delta

    def _locked(self, part: int) -> bool:
        if self.first_build:
            return False
        if part in self.moved_parts:
            return True
        return self.now_hour - self.b.last_moved_hour[part] < self.b.min_part_hours

    def _take(self, part: int, replica: int) -> tuple[int, int]:
        row = self.b.replica2part2dev[replica]
        dev_id = row[part]
        self.previous[(part, replica)] = dev_id
        row[part] = NONE
        self._count(dev_id, -1)
        self.moved_parts.add(part)
        return part, replica

    def _gather_unplaceable(self) -> list[tuple[int, int]]:
        """Replicas that are unassigned or on removed/zero-weight devices: these always move."""
        gathered = []
        valid = self.tree.chain
        for replica, row in enumerate(self.b.replica2part2dev):
            if all(dev_id in valid for dev_id in set(row)):
                continue
            for part, dev_id in enumerate(row):
                if dev_id not in valid:
                    self.previous[(part, replica)] = dev_id
                    row[part] = NONE
                    gathered.append((part, replica))
        for part, replica in gathered:
            if self.previous[(part, replica)] != NONE:  # a first placement is not a move
                self.moved_parts.add(part)
        return gathered

    def _gather_badly_dispersed(self) -> list[tuple[int, int]]:
        if len(self.tree.chain) < 2 or all(
            row[0] == NONE and len(set(row)) == 1 for row in self.b.replica2part2dev
        ):
            return []
        rows = self.b.replica2part2dev
        gathered = []
        for part in range(self.b.partition_count):
            if self._locked(part):
                continue
            devs = [row[part] for row in rows if row[part] != NONE]
            node = _overfull_node(self.tree, devs)
            if node is None:
                continue
            for replica, row in enumerate(rows):
                dev_id = row[part]
                if dev_id != NONE and node in self.tree.chain[dev_id]:
                    gathered.append(self._take(part, replica))
                    break
        return gathered

    def _balanced(self) -> bool:
        for node in self.tree.node_dev:
            target = self.tree.target[node]
            if abs(self.assigned[node] - target) > max(1.0, 0.01 * target):
                return False
        return True

    def _move_overloaded(self) -> int:
        """Move replicas from over-target devices to devices short of at least one replica.

        A move is made only if every failure domain it leaves (region, zone, host, device) is
        over its target and the device it reaches is short by at least one whole replica (or
        short at all, when the source is over by more than one), so rounding alone never moves
        anything, and no domain is drained below its share to feed
        another. The destination is what the tree walk picks for the partition, so a move
        never worsens dispersion.
        """
        if self._balanced():
            return 0
        moved = 0
        # The most overloaded devices shed first, so they feed the neediest devices before the
        # ones over by a fraction do: fewer moves in total.
        # A relaxed pass then serves domains (a zone, a host) short as a whole when no single
        # device in them is short of a whole replica.
        for excess_min in (1.0 + 1e-9, 0.0):
            if self._balanced():
                return moved
            moved += self._feed_needy(excess_min)
        for excess_min in (1.0 + 1e-9, 0.0):
            if self._balanced():
                return moved
            moved += self._move_pass(excess_min, relaxed=False)
        if not moved and not self._balanced():
            # A relaxed move starts a chain; one at a time, so the strict passes finish each
            # chain before another starts, and movement stays close to what is needed.
            moved += self._move_pass(-1e-9, relaxed=True, moves_max=1)
        return moved

    def _feed_needy(self, excess_min: float) -> int:
        """Move replicas straight to devices short of a whole replica, wherever they are.

        The tree walk follows the largest gap at each level, and when every region is about at
        its target it can miss a short device deep in one of them; here the short devices are
        the candidates themselves (there are few), and a replica goes to the shortest one that
        keeps every level of its chain within the dispersion caps.
        """
        tree = self.tree
        assigned = self.assigned
        target = tree.target
        chain = tree.chain
        cap = tree.cap
        needy = sorted(
            (
                dev
                for node, dev in tree.node_dev.items()
                if target[node] - assigned[node] >= 1 - 1e-9
            ),
            key=lambda d: assigned[chain[d][-1]] - target[chain[d][-1]],
        )
        rows = self.b.replica2part2dev
        moved = 0
        for part in self._permuted_parts():
            if not needy:
                break
            if self._locked(part):
                continue
            for replica, row in enumerate(rows):
                dev_id = row[part]
                if dev_id == NONE:
                    continue
                source = chain[dev_id]
                if assigned[source[-1]] - target[source[-1]] <= excess_min:
                    continue
                used: Counter = Counter()
                for other in rows:
                    if other is not row and other[part] != NONE:
                        used.update(chain[other[part]])
                dest = next(
                    (
                        d
                        for d in needy
                        if all(used[n] < cap[n] for n in chain[d])
                        and self._drains_ok(source, chain[d])
                    ),
                    None,
                )
                if dest is None:
                    continue
                self._take(part, replica)
                row[part] = dest
                self._count(dest, 1)
                self.b.last_moved_hour[part] = self.now_hour
                if not self.first_build:
                    self.moved += 1
                moved += 1
                dest_node = chain[dest][-1]
                if target[dest_node] - assigned[dest_node] < 1 - 1e-9:
                    needy.remove(dest)
                break
        return moved

    def _move_pass(self, excess_min: float, relaxed: bool, moves_max: int | None = None) -> int:
        tree = self.tree
        assigned = self.assigned
        target = tree.target
        rows = self.b.replica2part2dev
        chain = tree.chain
        moved = 0
        for index, part in enumerate(self._permuted_parts()):
            if moves_max is not None and moved >= moves_max:
                break
            if index % 4096 == 4095 and self._balanced():
                break
            if self._locked(part):
                continue
            for replica, row in enumerate(rows):
                dev_id = row[part]
                if dev_id == NONE:
                    continue
                source_node = chain[dev_id][-1]
                excess = assigned[source_node] - target[source_node]
                if excess <= excess_min:
                    continue
                others = [r[part] for i, r in enumerate(rows) if i != replica]
                self._count(dev_id, -1)  # choose as if it had left, so its own domain competes
                dest = self._choose(others, dev_id)
                self._count(dev_id, 1)
                if dest == dev_id or not self._worth_moving(chain[dev_id], chain[dest], relaxed):
                    continue
                self._take(part, replica)
                row[part] = dest
                self._count(dest, 1)
                self.b.last_moved_hour[part] = self.now_hour
                if not self.first_build:
                    self.moved += 1
                moved += 1
                break
        return moved

    def _worth_moving(self, source: tuple[int, ...], dest: tuple[int, ...], relaxed: bool) -> bool:
        """Whether moving one replica from ``source`` to ``dest`` (device chains) helps balance.

        Every domain left (from where the two chains part, down to the device) must be over its
        target, so no domain is drained below its share to feed another. Then the device reached
        must be short of a whole replica; in a relaxed pass it is enough that it is short at all
        and the domain reached, where the chains part, is short of a whole replica (or short at
        all while the domain left is over by more than one). Rounding alone never moves anything.
        """
        assigned = self.assigned
        target = self.tree.target
        device_gap = target[dest[-1]] - assigned[dest[-1]]
        source_excess = assigned[source[-1]] - target[source[-1]]
        if device_gap <= 1e-9:
            # Relaxed: a device over by more than one may hand a replica to one exactly at its
            # target, which may then pass another on where dispersion lets it (a chain of moves).
            return (
                relaxed
                and device_gap > -1e-9
                and source_excess > 1 + 1e-9
                and self._drains_ok(source, dest)
            )
        if not self._drains_ok(source, dest):
            # Relaxed: a domain exactly at its target may feed one short of a whole replica; a
            # later move refills it (dispersion sometimes needs such a chain of two moves).
            return relaxed and device_gap >= 1 - 1e-9 and self._drains_ok(source, dest, 1e-9)
        level = next(i for i, (a, b) in enumerate(zip(source, dest, strict=True)) if a != b)
        left, reached = source[level], dest[level]
        if device_gap >= 1 - 1e-9:
            return True
        if not relaxed:
            return False
        gap = target[reached] - assigned[reached]
        excess = assigned[left] - target[left]
        return gap >= 1 - 1e-9 or (excess > 1 + 1e-9 and gap > 1e-9)

    def _drains_ok(
        self, source: tuple[int, ...], dest: tuple[int, ...], slack: float = 0.0
    ) -> bool:
        """Every domain the move leaves is over its target, or within ``slack`` of it."""
        for level, (left, reached) in enumerate(zip(source, dest, strict=True)):
            if left != reached:
                return all(self.assigned[n] > self.tree.target[n] - slack for n in source[level:])
        return False

    def _permuted_parts(self) -> range | list[int]:
        """All partitions in a seeded order: an odd stride over a power of two is a permutation."""
        count = self.b.partition_count
        start = self.rng.randrange(count)
        stride = self.rng.randrange(count) | 1
        return [(start + i * stride) & (count - 1) for i in range(count)]

    def _place(self, gathered: list[tuple[int, int]], progress: Progress | None) -> None:
        rows = self.b.replica2part2dev
        total = len(gathered)
        step = max(1, total // 100)
        for done, (part, replica) in enumerate(gathered):
            others = [row[part] for row in rows if row[part] != NONE]
            dev_id = self._choose(others)
            rows[replica][part] = dev_id
            self._count(dev_id, 1)
            self.b.last_moved_hour[part] = self.now_hour
            if self.previous.get((part, replica), NONE) != dev_id:
                self.moved += 1
            if progress is not None and done % step == 0:
                progress("placing", done, total)
        if progress is not None:
            progress("placing", total, total)

    def _choose(self, others: list[int], leaving: int = NONE) -> int:
        """Walk down the tree: a child below its cap, holding the fewest replicas of this
        partition, and among those the one that wants the most partition-replicas."""
        tree = self.tree
        used: Counter = Counter()
        for dev_id in others:
            used.update(tree.chain[dev_id])
        target = tree.target
        assigned = self.assigned
        cap = tree.cap
        avoid = tree.chain[leaving] if leaving != NONE else ()  # on a tie, not where it was
        node = ROOT
        children = tree.children
        while children[node]:
            best = -1
            best_key = None
            for kid in children[node]:
                held = used.get(kid, 0)
                key = (held >= cap[kid], held, assigned[kid] - target[kid], kid in avoid)
                if best_key is None or key < best_key:
                    best, best_key = kid, key
            node = best
        return tree.node_dev[node]
