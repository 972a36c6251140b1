"""Ring lookups: which devices hold a path, and where to go when they cannot.

Public: :class:`Ring`.

``get_nodes`` returns the partition and its primary devices. A device is a dict with the keys
``id, region, zone, ip, port, device, weight, meta``; the same dict objects are returned on every
call (no copy per lookup, which is what makes lookups fast), so callers must not mutate them.
``get_more_nodes`` yields handoffs: never a primary, devices in regions the partition does not
use first, then unused zones, then unused hosts, then the remaining devices, in an order fixed
per partition so every proxy picks the same handoffs.

The ring reloads itself when its file changes, checking the file's mtime at most once every
``reload_interval_s``; a reload that fails keeps the ring in use and is retried later.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash

from ring.errors import RingFileError
from ring.hashing import path_key
from ring.ringfile import RingData, read_ring

log = logging.getLogger("ring")

RELOAD_INTERVAL_S = 15.0  # how stale a ring may get; a stat() per lookup would halve their rate


class Ring:
    """The lookup side of one ring file (``account``, ``container``, ``object``, ``object-N``)."""

    def __init__(self, path: str | Path, *, reload_interval_s: float = RELOAD_INTERVAL_S):
        self.path = Path(path)
        self.reload_interval_s = reload_interval_s
        self._mtime_ns = -1
        self._load(read_ring(self.path), os.stat(self.path).st_mtime_ns)

    def _load(self, data: RingData, mtime_ns: int) -> None:
        self._data = data
        self._mtime_ns = mtime_ns
        self._seed = data.hash_seed
        self._shift = 64 - data.part_power
        self._rows = data.replica2part2dev
        self._devs = data.devs
        self._next_check = time.monotonic() + self.reload_interval_s
        self._handoff_order = sorted(
            (d for d in data.devs if d is not None and d["weight"] > 0), key=lambda d: d["id"]
        )

    def _maybe_reload(self) -> None:
        self._next_check = time.monotonic() + self.reload_interval_s
        try:
            mtime_ns = os.stat(self.path).st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._load(read_ring(self.path), mtime_ns)
                log.info("reloaded ring %s (version %d)", self.path, self._data.version)
        except (OSError, RingFileError) as exc:
            log.error("keeping the ring in use: cannot reload %s: %s", self.path, exc)

    def reload_if_changed(self) -> None:
        """Reload now if the file changed (the periodic check does this on its own)."""
        self._maybe_reload()

    # ---- properties ------------------------------------------------------------------------

    @property
    def seed(self) -> bytes:
        return self._seed

    @property
    def part_power(self) -> int:
        return self._data.part_power

    @property
    def replica_count(self) -> int:
        return self._data.replicas

    @property
    def partition_count(self) -> int:
        return 1 << self._data.part_power

    @property
    def devs(self) -> list[dict[str, Any] | None]:
        return self._devs

    @property
    def version(self) -> int:
        return self._data.version

    # ---- lookups ---------------------------------------------------------------------------

    def get_part(self, account: str, container: str | None = None, obj: str | None = None) -> int:
        """The partition of ``/account[/container[/object]]``."""
        key = path_key(account, container, obj)
        if self._shift == 64:
            return 0
        return xxhash.xxh3_64_intdigest(self._seed + key) >> self._shift

    def get_part_nodes(self, part: int) -> list[dict[str, Any]]:
        """The primary devices of ``part``, replica 0 first."""
        if time.monotonic() >= self._next_check:
            self._maybe_reload()
        devs = self._devs
        return [devs[row[part]] for row in self._rows]

    def get_nodes(
        self, account: str, container: str | None = None, obj: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(partition, primary devices)`` of ``/account[/container[/object]]``."""
        if time.monotonic() >= self._next_check:
            self._maybe_reload()
        if obj is not None:
            key = f"/{account}/{container}/{obj}"
        elif container is not None:
            key = f"/{account}/{container}"
        else:
            key = f"/{account}"
        part = (
            xxhash.xxh3_64_intdigest(self._seed + key.encode("utf-8", "surrogatepass"))
            >> self._shift
            if self._shift < 64
            else 0
        )
        devs = self._devs
        return part, [devs[row[part]] for row in self._rows]

    def get_more_nodes(self, part: int) -> Iterator[dict[str, Any]]:
        """Handoff devices of ``part``: most distinct failure domains first, never a primary."""
        primaries = self.get_part_nodes(part)
        seen = {d["id"] for d in primaries}
        regions = {d["region"] for d in primaries}
        zones = {(d["region"], d["zone"]) for d in primaries}
        hosts = {(d["region"], d["zone"], d["ip"]) for d in primaries}
        order = self._handoff_order
        if not order:
            return
        start = xxhash.xxh3_64_intdigest(part.to_bytes(4, "big") + self._seed) % len(order)
        rotated = order[start:] + order[:start]
        rounds = (
            lambda d: d["region"] not in regions,
            lambda d: (d["region"], d["zone"]) not in zones,
            lambda d: (d["region"], d["zone"], d["ip"]) not in hosts,
            lambda d: True,
        )
        for accept in rounds:
            for dev in rotated:
                if dev["id"] in seen or not accept(dev):
                    continue
                seen.add(dev["id"])
                regions.add(dev["region"])
                zones.add((dev["region"], dev["zone"]))
                hosts.add((dev["region"], dev["zone"], dev["ip"]))
                yield dev
