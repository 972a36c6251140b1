"""Placement of partition-replicas: the work of one rebalance.

Public (to ring.builder): :class:`Rebalance`, :func:`overfull_node`, :data:`NONE`,
:data:`BALANCE_PASSES_MAX`. The strategy is described in ring/builder.py's module docstring.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from ring.tiers import ROOT, TierTree

if TYPE_CHECKING:
    from ring.builder import RingBuilder

BALANCE_PASSES_MAX = 32  # each pass is O(partition-replicas); passes stop early when balanced
# Chains of moves (see _move_overloaded) start a few at a time, so strict passes finish them.
RELAXED_MOVES_PER_PASS = 4
NONE = -1  # an unassigned partition-replica

Progress = Callable[[str, int, int], None]


def overfull_node(tree: TierTree, devs: list[int]) -> int | None:
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


class Rebalance:
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
                    if dev_id != NONE:  # a first placement is not a move: nothing to remember
                        self.previous[(part, replica)] = dev_id
                        self.moved_parts.add(part)
                    row[part] = NONE
                    gathered.append((part, replica))
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
            node = overfull_node(self.tree, devs)
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
            moved += self._move_pass(-1.0 + 1e-9, relaxed=True, moves_max=RELAXED_MOVES_PER_PASS)
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
            return relaxed and device_gap >= 1 - 1e-9 and self._drains_ok(source, dest, 1.0 - 1e-9)
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
