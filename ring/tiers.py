"""The failure-domain tree (region > zone > host > device) and each node's fair share.

Public: :class:`TierTree`.

Every device has a chain of four tree nodes: its region, zone, host (ip) and itself. A node's
*target* is how many partition-replicas it should hold. Targets come from weights, except where
dispersion forbids it: a partition may put at most ``ceil(ceil(T) / n)`` replicas in any one of
the ``n`` weighted children of a node that holds ``T`` replicas per partition (so with at least as
many zones as replicas, no two replicas share a zone), and no more than it has devices. Children
over their cap keep the cap and the rest is shared by weight among the others (water-filling), so
weights decide wherever dispersion allows, which is the contract of Swift's ring.
"""

from __future__ import annotations

import math
from typing import Any

LEVELS = 4  # region, zone, host, device
ROOT = 0


class TierTree:
    """Tree nodes in flat lists, indexed by node id; node 0 is the root."""

    def __init__(self, devs: list[dict[str, Any] | None], partition_count: int, replicas: int):
        self.parent: list[int] = [-1]
        self.children: list[list[int]] = [[]]
        self.level: list[int] = [0]
        self.weight: list[float] = [0.0]
        self.device_count: list[int] = [0]
        self.target: list[float] = [0.0]
        self.cap: list[int] = [0]  # most replicas of one partition this node may hold
        self.below: list[list[int]] = [
            [1, 0, 0, 0, 0]
        ]  # descendants per level (0 root .. 4 device)
        self.dev_node: dict[int, int] = {}  # dev id -> leaf node id
        self.node_dev: dict[int, int] = {}  # leaf node id -> dev id
        self.chain: dict[int, tuple[int, ...]] = {}  # dev id -> (region, zone, host, device) nodes
        index: dict[tuple, int] = {}
        for dev in devs:
            if dev is None or dev.get("removed") or dev["weight"] <= 0:
                continue
            keys = (
                (dev["region"],),
                (dev["region"], dev["zone"]),
                (dev["region"], dev["zone"], dev["ip"]),
                (dev["region"], dev["zone"], dev["ip"], dev["id"]),
            )
            chain = []
            parent = ROOT
            for depth, key in enumerate(keys, start=1):
                node = index.get(key)
                if node is None:
                    node = self._add(parent, depth)
                    index[key] = node
                    ancestor = parent
                    while ancestor != -1:
                        self.below[ancestor][depth] += 1
                        ancestor = self.parent[ancestor]
                chain.append(node)
                parent = node
            for node in [ROOT, *chain]:
                self.weight[node] += dev["weight"]
                self.device_count[node] += 1
            self.dev_node[dev["id"]] = chain[-1]
            self.node_dev[chain[-1]] = dev["id"]
            self.chain[dev["id"]] = tuple(chain)
        self.unique_level = next(
            (lvl for lvl in range(1, LEVELS + 1) if self.below[ROOT][lvl] >= replicas), LEVELS
        )
        self._share(ROOT, float(replicas), partition_count)

    def _add(self, parent: int, level: int) -> int:
        node = len(self.parent)
        self.parent.append(parent)
        self.children.append([])
        self.level.append(level)
        self.weight.append(0.0)
        self.device_count.append(0)
        self.target.append(0.0)
        self.cap.append(0)
        below = [0] * (LEVELS + 1)
        below[level] = 1
        self.below.append(below)
        self.children[parent].append(node)
        return node

    def _capacity(self, node: int) -> int:
        """Most replicas of one partition ``node`` may hold with the unique level kept unique."""
        if self.level[node] >= self.unique_level:
            return 1
        return self.below[node][self.unique_level]

    def _share(self, node: int, replicas_per_part: float, partition_count: int) -> None:
        """Set the targets of ``node``'s subtree, given it holds ``replicas_per_part``.

        The *unique level* is the highest tier with at least as many nodes as replicas: no two
        replicas of a partition ever share a node there (with four zones and three replicas, no
        two share a zone). A child's capacity is how many unique-level nodes it has. Above that
        level replicas are spread as evenly as capacities allow: each child may hold at most
        ``L``, the least level with ``sum(min(capacity, L)) >= ceil(replicas_per_part)``.
        """
        self.target[node] = replicas_per_part * partition_count
        kids = self.children[node]
        if not kids:
            return
        most = math.ceil(replicas_per_part - 1e-9)
        capacity = {kid: self._capacity(kid) for kid in kids}
        level_max = 0
        while level_max < most and sum(min(c, level_max) for c in capacity.values()) < most:
            level_max += 1
        caps = {}
        for kid in kids:
            self.cap[kid] = min(capacity[kid], level_max)
            caps[kid] = float(self.cap[kid])
        shares = _water_fill(replicas_per_part, {kid: self.weight[kid] for kid in kids}, caps)
        for kid in kids:
            self._share(kid, shares[kid], partition_count)

    def has_room_beside(self, node: int, counts: dict[int, int]) -> bool:
        """Whether a sibling of ``node`` could take one more replica of a partition within its cap."""
        return any(
            self.cap[kid] > counts.get(kid, 0)
            for kid in self.children[self.parent[node]]
            if kid != node and self.weight[kid] > 0
        )

    def device_targets(self) -> dict[int, float]:
        return {dev_id: self.target[node] for dev_id, node in self.dev_node.items()}


def _water_fill(
    total: float, weights: dict[int, float], caps: dict[int, float]
) -> dict[int, float]:
    """Share ``total`` by weight; a share above its cap is clipped and the excess reshared.

    When every child is at its cap and something is left (dispersion cannot be met), the rest is
    shared by weight above the caps: balance by weight is then the best that can be done.
    """
    shares = dict.fromkeys(weights, 0.0)
    free = {k for k, w in weights.items() if w > 0}
    remaining = total
    for _ in range(len(weights) + 1):  # each round caps at least one child, or ends
        weight_sum = sum(weights[k] for k in free)
        if not free or weight_sum <= 0 or remaining <= 1e-12:
            break
        over = {k for k in free if remaining * weights[k] / weight_sum > caps[k] + 1e-12}
        if not over:
            for k in free:
                shares[k] = remaining * weights[k] / weight_sum
            remaining = 0.0
            break
        for k in over:
            shares[k] = caps[k]
            remaining -= caps[k]
        free -= over
    if remaining > 1e-9:
        weight_sum = sum(w for w in weights.values() if w > 0)
        for k, w in weights.items():
            if w > 0:
                shares[k] += remaining * w / weight_sum
    return shares
