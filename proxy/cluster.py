"""The proxy's view of the cluster: rings, the pooled backend client, error limiting, quorum.

Public: :class:`Cluster`, :func:`quorum_size`, :func:`best_status`, :func:`node_key`.

Request paths:

- *reads* (:meth:`Cluster.read_nodes`) go to one node at a time: healthy primaries first, then
  handoffs, error-limited nodes last; a 404 from every primary with no failure stops the search
  (handoffs only hold data when a primary failed).
- *writes* (:meth:`Cluster.write_all`) go to every primary concurrently; a primary that fails
  (no answer, 5xx, 507) is replaced by the next handoff, so a write lands on ``replicas`` nodes
  whenever enough nodes are up. The answer is the status a majority agrees on
  (:func:`best_status`), else 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from objectd.client import BackendClient, BackendError, BackendResponse, Node
from proxy.byte_budget import ByteBudget
from proxy.config import Policy, ProxyConfig
from proxy.error_limiting import ErrorLimiter, NodeKey
from ring import Ring, ring_name

log = logging.getLogger("proxy")

Dev = dict[str, Any]
SendOne = Callable[[Dev, int], Awaitable[BackendResponse]]


def quorum_size(replicas: int) -> int:
    """A majority of ``replicas`` (3 → 2): two majorities always share a node."""
    return replicas // 2 + 1


def node_key(dev: Dev | Node) -> NodeKey:
    if isinstance(dev, Node):
        return (dev.ip, dev.port, dev.device)
    return (dev["ip"], dev["port"], dev["device"])


def is_node_failure(status: int) -> bool:
    """A status that says "this node cannot serve this", so another node should be tried."""
    return status >= 500


def best_status(statuses: list[int], replicas: int) -> int | None:
    """The status a quorum agrees on (by class: 2xx, 3xx, 4xx), the most common one of that
    class; None if no class reaches a quorum (the caller answers 503)."""
    quorum = quorum_size(replicas)
    for klass in (2, 4, 3):
        members = [s for s in statuses if s // 100 == klass]
        if len(members) >= quorum:
            return Counter(members).most_common(1)[0][0]
    return None


async def gather_quorum(
    coros: list[Awaitable[Any]],
    quorum: int,
    succeeded: Callable[[Any], bool],
    post_quorum_timeout_s: float,
) -> list[Any]:
    """Run ``coros`` concurrently; once ``quorum`` of them succeeded, give the others at most
    ``post_quorum_timeout_s`` more, then cancel them (Swift's post_quorum_timeout): one slow or
    stopped node must not hold every write for a whole node timeout. Results keep the order of
    ``coros``; a cancelled one is None."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        pending = set(tasks)
        successes = 0
        while pending and successes < quorum:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            successes += sum(1 for t in done if succeeded(t.result()))
        if pending:
            _, late = await asyncio.wait(pending, timeout=post_quorum_timeout_s)
            if late and successes >= quorum:
                # the replicator completes these replicas; a steady stream of this line means
                # post_quorum_timeout_s is too short for the load or a node is sick
                log.warning(
                    "%d of %d replicas too slow after the quorum: cancelled", len(late), len(tasks)
                )
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    return [t.result() if t.done() and not t.cancelled() else None for t in tasks]


class Cluster:
    """Rings and backend access for one proxy worker (built inside its event loop)."""

    def __init__(self, config: ProxyConfig):
        ring_dir = Path(config.ring_dir)
        self.config = config
        self.whole_put_budget = ByteBudget(config.whole_put_buffer_bytes_max)
        self.account_ring = Ring(ring_dir / "account.ring")
        self.container_ring = Ring(ring_dir / "container.ring")
        self.policies: list[Policy] = config.policy_list
        self.policy_by_name = {p.name.lower(): p for p in self.policies}
        self.policy_by_index = {p.index: p for p in self.policies}
        self.default_policy = next(p for p in self.policies if p.default)
        self.object_rings = {
            p.index: Ring(ring_dir / ring_name("object", p.index)) for p in self.policies
        }
        self.client = BackendClient(
            connect_timeout_s=config.conn_timeout_s,
            response_timeout_s=config.node_timeout_s,
            chunk_timeout_s=config.node_timeout_s,
            connections_max=config.backend_connections_max,
            user_agent="shoal-proxy",
        )
        self.errors = ErrorLimiter(
            config.error_suppression_limit, config.error_suppression_interval_s
        )

    async def close(self) -> None:
        await self.client.close()

    def object_ring(self, policy_index: int) -> Ring:
        return self.object_rings[policy_index]

    # --- node choice ---------------------------------------------------------------------------
    def read_nodes(self, ring: Ring, part: int, primaries: list[Dev]) -> Iterator[tuple[Dev, bool]]:
        """``(node, is_primary)``: healthy primaries, handoffs (up to ``replicas`` of them),
        then error-limited primaries as a last resort."""
        limited = []
        for dev in primaries:
            if self.errors.is_limited(node_key(dev)):
                limited.append(dev)
            else:
                yield dev, True
        handoffs_max = ring.replica_count
        for count, dev in enumerate(ring.get_more_nodes(part)):
            if count >= handoffs_max:
                break
            if not self.errors.is_limited(node_key(dev)):
                yield dev, False
        for dev in limited:
            yield dev, True

    def record(self, dev: Dev | Node, failure: str | None) -> None:
        if failure is None:
            self.errors.record_success(node_key(dev))
        else:
            self.errors.record_error(node_key(dev), failure)

    # --- writes --------------------------------------------------------------------------------
    async def write_all(
        self, ring: Ring, part: int, primaries: list[Dev], send: SendOne
    ) -> list[BackendResponse]:
        """``send`` to every primary concurrently, a handoff replacing each failed one.

        ``send(node, replica_index)`` gets the replica index so per-replica headers (container
        update targets) follow the slot, not the node. Returns the answers that were received
        (a slot whose nodes all failed has none).
        """
        handoffs = (d for d in ring.get_more_nodes(part) if not self.errors.is_limited(node_key(d)))
        slots = [
            next(handoffs, dev) if self.errors.is_limited(node_key(dev)) else dev
            for dev in primaries
        ]

        async def one(index: int, dev: Dev | None) -> BackendResponse | None:
            last: BackendResponse | None = None
            while dev is not None:
                try:
                    response = await send(dev, index)
                except BackendError as exc:
                    self.record(dev, str(exc))
                except asyncio.CancelledError:
                    # cut after the quorum (aiohttp does not cancel handlers when clients go):
                    # a node that is always late gets error-limited, then skipped for handoffs
                    self.record(dev, "no answer within post_quorum_timeout_s")
                    raise
                else:
                    if not is_node_failure(response.status):
                        self.record(dev, None)
                        return response
                    self.record(dev, f"status {response.status}")
                    last = response
                dev = next(handoffs, None)
            return last

        answers = await gather_quorum(
            [one(i, dev) for i, dev in enumerate(slots)],
            quorum_size(len(primaries)),
            lambda a: a is not None and a.ok,
            self.config.post_quorum_timeout_s,
        )
        return [a for a in answers if a is not None]

    # --- reads ---------------------------------------------------------------------------------
    async def read_one(
        self, ring: Ring, part: int, primaries: list[Dev], send: SendOne
    ) -> BackendResponse | None:
        """The first answer that is not a node failure or a 404; else the last 404; else None."""
        not_found: BackendResponse | None = None
        primaries_left = len(primaries)
        failures = 0
        for index, (dev, is_primary) in enumerate(self.read_nodes(ring, part, primaries)):
            try:
                response = await send(dev, index)
            except BackendError as exc:
                self.record(dev, str(exc))
                failures += 1
            else:
                if is_node_failure(response.status):
                    self.record(dev, f"status {response.status}")
                    failures += 1
                else:
                    self.record(dev, None)
                    if response.status != 404:
                        return response
                    not_found = response
            if is_primary:
                primaries_left -= 1
                if primaries_left == 0 and failures == 0:
                    break
        return not_found
