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
        self.kid_cap: list[int] = [0]  # most replicas of one partition any child of a node may hold
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
                chain.append(node)
                parent = node
            for node in [ROOT, *chain]:
                self.weight[node] += dev["weight"]
                self.device_count[node] += 1
            self.dev_node[dev["id"]] = chain[-1]
            self.node_dev[chain[-1]] = dev["id"]
            self.chain[dev["id"]] = tuple(chain)
        self._share(ROOT, float(replicas), partition_count)

    def _add(self, parent: int, level: int) -> int:
        node = len(self.parent)
        self.parent.append(parent)
        self.children.append([])
        self.level.append(level)
        self.weight.append(0.0)
        self.device_count.append(0)
        self.target.append(0.0)
        self.kid_cap.append(0)
        self.children[parent].append(node)
        return node

    def _share(self, node: int, replicas_per_part: float, partition_count: int) -> None:
        """Set the targets of ``node``'s subtree, given it holds ``replicas_per_part``."""
        self.target[node] = replicas_per_part * partition_count
        kids = self.children[node]
        if not kids:
            return
        per_child_max = math.ceil(math.ceil(replicas_per_part - 1e-9) / len(kids))
        self.kid_cap[node] = per_child_max
        caps = {kid: float(min(per_child_max, self.device_count[kid])) for kid in kids}
        shares = _water_fill(replicas_per_part, {kid: self.weight[kid] for kid in kids}, caps)
        for kid in kids:
            self._share(kid, shares[kid], partition_count)

    def child_cap(self, node: int) -> int:
        """How many replicas of one partition a single child of ``node`` may hold."""
        return self.kid_cap[node]

    def device_targets(self) -> dict[int, float]:
        return {dev_id: self.target[node] for dev_id, node in self.dev_node.items()}


def _water_fill(total: float, weights: dict[int, float], caps: dict[int, float]) -> dict[int, float]:
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
