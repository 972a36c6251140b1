"""What every background daemon (replicator, auditor, updaters, expirer) shares: the pass loop
and the lazily loaded rings.

Public: :func:`run_passes`, :class:`RingCache`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ring import Ring
from shoal.clock import Clock


class _Report(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


async def run_passes(
    name: str,
    run_once: Callable[[], Awaitable[_Report]],
    clock: Clock,
    interval_s: float,
    log: logging.Logger,
) -> None:
    """Run ``run_once`` forever, ``interval_s`` apart, logging each report. A pass that fails
    is logged with its traceback; the next one still starts on time."""
    while True:  # never ends; each pass is bounded by its daemon
        try:
            log.info("%s pass: %s", name, (await run_once()).as_dict())
        except Exception:
            log.exception("%s pass failed", name)
        await clock.sleep(interval_s)


class RingCache:
    """Rings of ``ring_dir`` by file name, loaded on first use and re-read when they change
    (blocking: call from a thread)."""

    def __init__(self, ring_dir: Path):
        self.ring_dir = ring_dir
        self._rings: dict[str, Ring] = {}

    def get(self, name: str) -> Ring:
        """The ring ``name`` (e.g. ``container.ring``). Raises what :class:`Ring` raises for a
        missing or corrupt file."""
        ring = self._rings.get(name)
        if ring is None:
            ring = self._rings[name] = Ring(self.ring_dir / name)
        ring.reload_if_changed()
        return ring

    def get_if_present(self, name: str) -> Ring | None:
        """Like :meth:`get`, but None while the file does not exist."""
        if name not in self._rings and not (self.ring_dir / name).exists():
            return None
        return self.get(name)
