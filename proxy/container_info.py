"""Account and container records, fetched from their servers and cached briefly per worker.

Public: :class:`ContainerInfo`, :class:`InfoCache`, :class:`Generations`, :func:`container_info`,
:func:`account_exists`, :func:`invalidate`, :func:`backend_headers`.

Every object request needs its container's storage policy and ACLs; asking a container server
each time would double the backend requests of a small GET. So a worker keeps what it learned
for ``INFO_CACHE_TTL_S``. Only positive answers are cached (a container another worker has
just created must not stay "missing" here), and a write to a container or account through any
worker drops the record in every worker (shared :class:`Generations` counters), so a PUT into a
container just created never 404s and an ACL change takes effect at once.
"""

from __future__ import annotations

import dataclasses
import mmap
import time
import zlib
from collections import OrderedDict
from typing import Any

from multidict import CIMultiDictProxy

from proxy import limits
from proxy.cluster import Cluster
from shoal.log import trans_id


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerInfo:
    policy_index: int
    read_acl: str
    write_acl: str
    object_count: int
    bytes_used: int
    headers: CIMultiDictProxy[str]


class Generations:
    """Change counters shared by every worker of one proxy (an anonymous shared mapping made
    before the workers fork), so a write through one worker invalidates the others' caches.

    A key hashes to one of ``GENERATION_BUCKETS`` counters; a write bumps its counter; a cached
    record remembers the counter's value when it was fetched and is stale once it differs.
    Two workers bumping at once may lose an increment, but the value still changes, which is
    all a reader checks. Unrelated keys sharing a bucket only cost an extra fetch.
    """

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, limits.GENERATION_BUCKETS * 8, flags=mmap.MAP_SHARED)
        self._counters = memoryview(self._map).cast("Q")

    @staticmethod
    def bucket(key: tuple[str, ...]) -> int:
        return (
            zlib.crc32("\x00".join(key).encode("utf-8", "surrogateescape"))
            % limits.GENERATION_BUCKETS
        )

    def get(self, key: tuple[str, ...]) -> int:
        return self._counters[self.bucket(key)]

    def bump(self, key: tuple[str, ...]) -> None:
        index = self.bucket(key)
        self._counters[index] = (self._counters[index] + 1) & 0xFFFFFFFFFFFFFFFF


class InfoCache:
    """A bounded TTL map of ``(account,)`` / ``(account, container)`` → record, invalidated
    across workers through :class:`Generations`."""

    def __init__(
        self, ttl_s: float = limits.INFO_CACHE_TTL_S, generations: Generations | None = None
    ):
        self.ttl_s = ttl_s
        self.generations = generations or Generations()
        self._entries: OrderedDict[tuple[str, ...], tuple[float, int, Any]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic() or entry[1] != self.generations.get(key):
            del self._entries[key]
            return None
        return entry[2]

    def generation(self, key: tuple[str, ...]) -> int:
        """Read *before* fetching a record, passed to :meth:`put`: a write that happens while
        the fetch is in flight then makes the record stale rather than cached."""
        return self.generations.get(key)

    def put(self, key: tuple[str, ...], value: Any, generation: int) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_s, generation, value)
        self._entries.move_to_end(key)
        while len(self._entries) > limits.INFO_CACHE_ENTRIES_MAX:
            self._entries.popitem(last=False)

    def drop(self, key: tuple[str, ...]) -> None:
        self._entries.pop(key, None)
        self.generations.bump(key)


def backend_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers every backend request carries (the transaction id), plus ``extra``."""
    headers = {"X-Trans-Id": trans_id.get()}
    if extra:
        headers.update(extra)
    return headers


async def container_info(
    cluster: Cluster, cache: InfoCache, account: str, container: str
) -> ContainerInfo | None:
    """The container's record, or None if it does not exist (or no server answered)."""
    key = (account, container)
    info = cache.get(key)
    if info is not None:
        return info
    generation = cache.generation(key)
    part, nodes = cluster.container_ring.get_nodes(account, container)

    async def head(dev: dict[str, Any], _index: int):
        return await cluster.client.head_container(dev, part, account, container, backend_headers())

    response = await cluster.read_one(cluster.container_ring, part, nodes, head)
    if response is None or not response.ok:
        return None
    headers = response.headers
    info = ContainerInfo(
        policy_index=int(headers.get("X-Backend-Storage-Policy-Index", "0")),
        read_acl=headers.get("X-Container-Read", ""),
        write_acl=headers.get("X-Container-Write", ""),
        object_count=int(headers.get("X-Container-Object-Count", "0")),
        bytes_used=int(headers.get("X-Container-Bytes-Used", "0")),
        headers=headers,
    )
    cache.put(key, info, generation)
    return info


async def account_exists(cluster: Cluster, cache: InfoCache, account: str) -> bool | None:
    """True/False from the account servers; None if none answered."""
    key = (account,)
    if cache.get(key):
        return True
    generation = cache.generation(key)
    part, nodes = cluster.account_ring.get_nodes(account)

    async def head(dev: dict[str, Any], _index: int):
        return await cluster.client.head_account(dev, part, account, backend_headers())

    response = await cluster.read_one(cluster.account_ring, part, nodes, head)
    if response is None:
        return None
    if response.ok:
        cache.put(key, True, generation)
        return True
    return False


def invalidate(cache: InfoCache, account: str, container: str | None = None) -> None:
    cache.drop((account,) if container is None else (account, container))
