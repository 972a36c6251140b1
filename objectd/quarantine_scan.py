"""Tell the suffix hash cache about objects that a *reader* quarantined.

Public: :func:`invalidate_quarantined`.

objectd's GET path quarantines a corrupt object (moves its directory under
``<device>/quarantined/objects[-N]/``) without touching the partition's hash cache, so until the
cache's age bound (``hashes_max_age_s``) the suffix would still hash as if the object were there
and no peer would push it back. At the start of each pass the replicator therefore looks at what
was quarantined since its previous look (by ``st_ctime``: a rename sets it), reads the object's
name from any of its files, finds its partition with the ring and marks that suffix stale. The
auditor invalidates its own quarantines directly; this covers the readers.

Blocking: run in a thread.
"""

from __future__ import annotations

import contextlib
import os
import time

from objectd.diskio import DiskIO
from objectd.layout import Layout
from objectd.local_devices import policy_of_dir
from objectd.metadata import read_file
from objectd.suffix_hashes import invalidate_suffix, partition_path
from ring.ring import Ring

SCANNED_MARKER = ".replicator-scanned"
QUARANTINED_SCAN_MAX = 10_000
"""Entries looked at per device and pass (a device that quarantined more has bigger problems;
the rest waits for the next pass or the cache's age bound)."""

_IO = DiskIO()


def invalidate_quarantined(layout: Layout, device: str, rings: dict[int, Ring]) -> int:
    """Mark stale the suffixes of objects quarantined since the last call; how many."""
    quarantined = os.path.join(layout.devices, device, "quarantined")
    marker = os.path.join(quarantined, SCANNED_MARKER)
    try:
        with open(marker) as f:
            since = float(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        since = 0.0
    started = time.time()
    count = 0
    seen = 0
    for kind in _listdir(quarantined):
        policy = policy_of_dir(kind)
        ring = rings.get(policy) if policy is not None else None
        if ring is None:
            continue
        kind_dir = os.path.join(quarantined, kind)
        for entry in _listdir(kind_dir):
            seen += 1
            if seen > QUARANTINED_SCAN_MAX:
                break
            path = os.path.join(kind_dir, entry)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ctime < since:
                    continue
                name = _name_of(path)
                if name is None:
                    continue
                account, container, obj = name[1:].split("/", 2)
                name_hash = layout.hash_of(account, container, obj)
                part_dir = partition_path(
                    layout, device, policy, ring.get_part(account, container, obj)
                )
                if os.path.isdir(part_dir):
                    invalidate_suffix(part_dir, name_hash[-3:])
                    count += 1
    if os.path.isdir(quarantined):
        with open(marker + ".tmp", "w") as f:
            f.write(repr(started - 1.0))  # a second of overlap: ctime granularity and clock steps
        os.rename(marker + ".tmp", marker)
    return count


def _name_of(hash_dir: str) -> str | None:
    """The ``name`` metadata (``/a/c/o``) of any readable file of a quarantined directory."""
    for file_name in sorted(_listdir(hash_dir)):
        try:
            fd = os.open(os.path.join(hash_dir, file_name), os.O_RDONLY)
        except OSError:
            continue
        try:
            name = read_file(_IO, fd, os.fstat(fd).st_size).metadata.get("name")
        except Exception:  # a corrupt trailer: try the next file
            name = None
        finally:
            os.close(fd)
        if isinstance(name, str) and name.count("/") >= 3:
            return name
    return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
