"""Walking the objects of the local devices, for the auditor and the expirer.

Public: :class:`ObjectLocation`, :func:`walk_objects`.

The walk is a blocking generator (listdir after listdir); daemons take it a bounded batch at a
time in a thread, so the event loop never lists a directory and memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from objectd.local_devices import object_partitions
from objectd.suffix_hashes import HASH_LENGTH, list_suffixes


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectLocation:
    device: str
    policy: int
    partition: int
    partition_dir: str
    hash_dir: str


def walk_objects(devices_root: Path, *, mount_check: bool) -> Iterator[ObjectLocation]:
    """Every object directory of every device under ``devices_root`` (blocking)."""
    try:
        names = sorted(os.listdir(devices_root))
    except FileNotFoundError:
        return
    for device in names:
        device_path = os.path.join(devices_root, device)
        if not os.path.isdir(device_path) or (mount_check and not os.path.ismount(device_path)):
            continue
        for policy, partition, part_dir in object_partitions(device_path):
            for suffix in list_suffixes(part_dir):
                suffix_dir = os.path.join(part_dir, suffix)
                try:
                    hashes = sorted(os.listdir(suffix_dir))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for name_hash in hashes:
                    if len(name_hash) == HASH_LENGTH:
                        hash_dir = os.path.join(suffix_dir, name_hash)
                        yield ObjectLocation(device, policy, partition, part_dir, hash_dir)


def take(iterator: Iterator[ObjectLocation], count: int) -> list[ObjectLocation]:
    """Up to ``count`` next locations (run in a thread: each step may list a directory)."""
    batch = []
    for location in iterator:
        batch.append(location)
        if len(batch) >= count:
            break
    return batch
