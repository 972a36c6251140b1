"""Per-partition suffix hashes: what the replicator compares with its peers.

Public: :func:`partition_path`, :func:`invalidate_suffix`, :func:`get_hashes`,
:func:`hash_suffix_dir`, :func:`list_suffixes`, :data:`HASHES_FILE`, :data:`INVALID_FILE`.

All functions block (directory walks, file locks): run them on a device's threads.

A partition holds up to 4096 suffix directories (the last three hex digits of an object hash).
The hash of a suffix is ``xxh3_128`` over, for each object directory in it (sorted), the object
hash and the names of the files that decide its state (``.data`` or ``.ts``, and ``.meta``):
names are timestamps, so two replicas with the same hash hold the same versions. Comparing
4096 short hashes per partition is how two nodes find, cheaply, the few suffixes that differ.

Hashing a suffix means listing every object directory in it, so results are cached per
partition in ``<partition>/hashes.msgpack``. A write marks its suffix stale by appending the
suffix to ``<partition>/hashes.invalid`` (a few bytes, ``O_APPEND``); the next :func:`get_hashes`
folds that list into the cache as "unknown" and rehashes only those suffixes. The cache records
when it was last computed in full; a caller passes ``max_age_s`` so a cache older than that is
rebuilt from a full walk, which catches what no write announced (a disk replaced, files removed
by hand or quarantined by a reader).

Concurrency: several processes (objectd workers serving REPLICATE, the replicator) may update
one cache. Every read-modify-write of the two files holds ``flock`` on ``<partition>/.lock``; the
hashing itself runs without the lock, and a result is stored only for a suffix that was not
invalidated again meanwhile, so a write that lands during a rehash is never lost.

Reclaim: with ``reclaim_before`` (a Unix time), tombstones older than it are removed while
hashing (the replicator passes ``now - reclaim_age``; a REPLICATE request never reclaims).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator

import msgpack
import xxhash

from objectd.layout import Layout, data_dir_name
from objectd.metadata import choose_files, parse_file_name

HASHES_FILE = "hashes.msgpack"
INVALID_FILE = "hashes.invalid"
LOCK_FILE = ".lock"

SUFFIX_LENGTH = 3
HASH_LENGTH = 32

INVALID_FILE_BYTES_MAX = 1024 * 1024
"""A longer invalidation list means "everything is stale": rehash in full rather than parse it
(4096 suffixes of 4 bytes is 16 KiB, so only a partition with a storm of writes between two
replicator passes gets here)."""


def partition_path(layout: Layout, device: str, policy_index: int, partition: int) -> str:
    return os.path.join(
        layout.devices, device, data_dir_name("objects", policy_index), str(partition)
    )


def is_suffix(name: str) -> bool:
    return len(name) == SUFFIX_LENGTH and all(c in "0123456789abcdef" for c in name)


@contextlib.contextmanager
def _locked(partition_dir: str) -> Iterator[None]:
    fd = os.open(os.path.join(partition_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def invalidate_suffix(partition_dir: str, suffix: str) -> None:
    """Mark ``suffix`` of the partition stale (the partition directory must exist)."""
    assert is_suffix(suffix), f"not a suffix: {suffix!r}"
    with _locked(partition_dir):
        fd = os.open(
            os.path.join(partition_dir, INVALID_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        try:
            os.write(fd, suffix.encode() + b"\n")
        finally:
            os.close(fd)


def list_suffixes(partition_dir: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(partition_dir) if is_suffix(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def hash_suffix_dir(suffix_dir: str, reclaim_before: float | None = None) -> str | None:
    """The hash of one suffix directory, or None if it holds no object (then it is removed).

    Obsolete files are removed on the way; so are tombstones older than ``reclaim_before``.
    """
    digest = xxhash.xxh3_128()
    found = False
    try:
        names = sorted(os.listdir(suffix_dir))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for name_hash in names:
        if len(name_hash) != HASH_LENGTH:
            continue
        kept = _clean_object_dir(os.path.join(suffix_dir, name_hash), reclaim_before)
        if kept:
            found = True
            digest.update(f"{name_hash}:{','.join(kept)}\n".encode())
    if not found:
        with contextlib.suppress(OSError):
            os.rmdir(suffix_dir)  # fails (harmlessly) if a write created something meanwhile
        return None
    return digest.hexdigest()


def _clean_object_dir(hash_dir: str, reclaim_before: float | None) -> list[str]:
    """The deciding file names of one object directory, after removing obsolete files and
    reclaimable tombstones (and the directory itself when nothing is left)."""
    try:
        names = os.listdir(hash_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = choose_files(names)
    doomed = list(files.obsolete)
    if files.tombstone is not None and reclaim_before is not None:
        parsed = parse_file_name(files.tombstone)
        if parsed is not None and parsed[0].seconds < reclaim_before:
            doomed.append(files.tombstone)
            files.tombstone = None
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(hash_dir, name))
    kept = sorted(n for n in (files.data, files.tombstone, files.meta) if n is not None)
    if not kept:
        with contextlib.suppress(OSError):
            os.rmdir(hash_dir)
    return kept


# --- the cache ------------------------------------------------------------------------------------
def _read_cache(partition_dir: str) -> tuple[dict[str, str | None], float] | None:
    try:
        with open(os.path.join(partition_dir, HASHES_FILE), "rb") as f:
            data = msgpack.unpackb(f.read(), raw=False)
        return dict(data["hashes"]), float(data["computed_at"])
    except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException):
        return None  # missing or unreadable: rebuilt from a full walk


def _write_cache(partition_dir: str, hashes: dict[str, str | None], computed_at: float) -> None:
    """Atomic replace (temp file + rename); no fsync: a lost cache is only rebuilt."""
    temp = os.path.join(partition_dir, f".{HASHES_FILE}.{os.getpid()}.tmp")
    with open(temp, "wb") as f:
        f.write(msgpack.packb({"hashes": hashes, "computed_at": computed_at}, use_bin_type=True))
    os.rename(temp, os.path.join(partition_dir, HASHES_FILE))


def _take_invalid(partition_dir: str) -> set[str] | None:
    """Read and empty the invalidation list; None means "too long: rehash everything"."""
    path = os.path.join(partition_dir, INVALID_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read(INVALID_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        return set()
    with contextlib.suppress(FileNotFoundError):
        os.truncate(path, 0)
    if len(data) > INVALID_FILE_BYTES_MAX:
        return None
    return {s for s in data.decode("ascii", "replace").split() if is_suffix(s)}


def _peek_invalid(partition_dir: str) -> set[str]:
    try:
        with open(os.path.join(partition_dir, INVALID_FILE), "rb") as f:
            data = f.read(INVALID_FILE_BYTES_MAX)
    except FileNotFoundError:
        return set()
    return set(data.decode("ascii", "replace").split())


def get_hashes(
    partition_dir: str,
    *,
    recalculate: Iterable[str] = (),
    max_age_s: float | None = None,
    reclaim_before: float | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """``{suffix: hash}`` of a partition (empty when it has no objects or does not exist).

    Args:
        recalculate: suffixes to rehash even if the cache holds them.
        max_age_s: rebuild from a full walk if the last full walk is older than this.
        reclaim_before: remove tombstones older than this Unix time while hashing.
    """
    if not os.path.isdir(partition_dir):
        return {}
    now = time.time() if now is None else now
    with _locked(partition_dir):
        cached = _read_cache(partition_dir)
        invalid = _take_invalid(partition_dir)
        full = cached is None or invalid is None
        if not full and max_age_s is not None and now - cached[1] > max_age_s:
            full = True
        if full:
            hashes: dict[str, str | None] = dict.fromkeys(list_suffixes(partition_dir))
            computed_at = now
        else:
            hashes, computed_at = cached
            for suffix in (*invalid, *recalculate):
                if is_suffix(suffix):
                    hashes[suffix] = None
        # a suffix marked unknown is written back first: a crash before the end loses no mark
        _write_cache(partition_dir, hashes, computed_at)
    todo = [suffix for suffix, value in hashes.items() if value is None]
    computed = {s: hash_suffix_dir(os.path.join(partition_dir, s), reclaim_before) for s in todo}
    with _locked(partition_dir):
        stored = _read_cache(partition_dir)
        current, stored_at = stored if stored is not None else (dict(hashes), computed_at)
        again = _peek_invalid(partition_dir)  # invalidated while we hashed: stays unknown
        for suffix, value in computed.items():
            if suffix in again or current.get(suffix, None) is not None:
                continue
            if value is None:
                current.pop(suffix, None)
            else:
                current[suffix] = value
        _write_cache(partition_dir, current, max(stored_at, computed_at) if full else stored_at)
    return {suffix: value for suffix, value in current.items() if value is not None}
