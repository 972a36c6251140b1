"""Removing temp files no writer will ever finish: ``<device>/tmp/*`` older than
``tmp_reclaim_age_s``.

Public: :data:`TMP_RECLAIM_AGE_S_DEFAULT`, :class:`TmpReclaimReport`, :func:`reclaim_tmp_dir`,
:func:`reclaim_devices`.

Why there are any: objectd writes a PUT body to an unnamed ``O_TMPFILE`` where the filesystem
can (the kernel frees it when objectd dies), but elsewhere to a named ``<device>/tmp/<uuid>.tmp``
(:mod:`objectd.disk_write`); new databases and received database copies are also built under
names in ``<device>/tmp``. A kill -9 or a power cut in the middle leaves such a file behind:
never visible to clients, but holding its space forever. Swift's replicator removes what its tmp
holds past ``reclaim_age``; here objectd does it for each device at start-up (before it serves,
so no request of its own is in flight) and the auditor at the start of every pass (while objectd
runs).

Why age is a safe test of "abandoned": a live temp file's mtime moves with every write. A PUT
whose client stops sending is cut after ``client_timeout_s`` (60 s by default), a new database is
renamed into place as soon as it is built, and a database copy is written at the replication
rate. A file untouched for ``tmp_reclaim_age_s`` (a day by default, over a thousand times the
longest pause a PUT may take) belongs to no writer; a younger file may be a PUT in flight and is
never touched. Only regular files directly in ``tmp`` are candidates (no directories, and a
symlink is not followed).

Every function here blocks (``scandir``, ``stat``, ``unlink``): run it before the event loop
starts or on a thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("objectd.tmp_reclaim")

TMP_RECLAIM_AGE_S_DEFAULT = 86400.0
"""A day: see the module docstring for why a temp file this old has no writer."""

TMP_DIR_NAME = "tmp"  # <device>/tmp, as objectd.layout.Layout.tmp_dir


@dataclasses.dataclass(slots=True)
class TmpReclaimReport:
    removed: int = 0
    removed_bytes: int = 0
    kept: int = 0  # younger than the age: possibly in flight
    errors: int = 0

    def add(self, other: TmpReclaimReport) -> None:
        self.removed += other.removed
        self.removed_bytes += other.removed_bytes
        self.kept += other.kept
        self.errors += other.errors

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reclaim_tmp_dir(
    tmp_dir: str | Path, age_s: float, now_s: float | None = None
) -> TmpReclaimReport:
    """Remove the regular files directly in ``tmp_dir`` whose mtime is more than ``age_s``
    before ``now_s`` (default: now). A missing directory has nothing to reclaim. A file that
    disappears meanwhile (published by its writer) is skipped; other failures are counted and
    logged, never raised, so one bad file cannot stop the rest."""
    if age_s <= 0:
        raise ValueError(f"age_s must be positive, got {age_s!r}")
    report = TmpReclaimReport()
    cutoff = (time.time() if now_s is None else now_s) - age_s
    try:
        entries = os.scandir(tmp_dir)
    except (FileNotFoundError, NotADirectoryError):
        return report
    except OSError as exc:
        log.error("cannot list %s: %s", tmp_dir, exc)
        report.errors += 1
        return report
    with entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
                if stat.st_mtime >= cutoff:
                    report.kept += 1
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("cannot reclaim temp file %s: %s", entry.path, exc)
                report.errors += 1
                continue
            report.removed += 1
            report.removed_bytes += stat.st_size
            log.info(
                "removed stale temp file %s (%d bytes, untouched for %.0f s)",
                entry.path, stat.st_size, cutoff + age_s - stat.st_mtime,
            )  # fmt: skip
    return report


def reclaim_devices(
    devices_root: str | Path, age_s: float, *, mount_check: bool, now_s: float | None = None
) -> TmpReclaimReport:
    """:func:`reclaim_tmp_dir` on the ``tmp`` of every device under ``devices_root``; with
    ``mount_check``, a device directory that is not a mount point is skipped (its ``tmp`` would
    be on the root filesystem, not the device's)."""
    report = TmpReclaimReport()
    try:
        names = sorted(os.listdir(devices_root))
    except OSError as exc:
        log.error("cannot list devices root %s: %s", devices_root, exc)
        report.errors += 1
        return report
    for name in names:
        device_path = os.path.join(devices_root, name)
        if not os.path.isdir(device_path):
            continue
        if mount_check and not os.path.ismount(device_path):
            continue
        report.add(reclaim_tmp_dir(os.path.join(device_path, TMP_DIR_NAME), age_s, now_s))
    return report
