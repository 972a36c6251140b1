"""objectd's limits: every bound the daemon relies on, with its unit and its reason.

Public: the constants below. Relationships between them are asserted at import time, so a bad
edit fails loudly at start-up instead of misbehaving under load.
"""

from __future__ import annotations

from shoal.units import KiB, MiB

# --- bodies -------------------------------------------------------------------------------------
CHUNK_BYTES = 64 * KiB
"""One network read or write of a body (response streams are relayed as received)."""

SMALL_BODY_BYTES_MAX = 64 * KiB
"""A PUT body up to this size is read whole and written, fsynced and renamed in one thread hop;
an object file up to this size (body + metadata) is read whole in the hop that opens it. Swift's
median object is far below this, so most requests cost exactly one hop to the disk thread."""

WHOLE_PUT_BYTES_MAX = 2 * MiB + 64
"""A PUT body up to this size, sent without ``Expect: 100-continue``, is received whole (as the
network chunks, never joined) and then written, fsynced and renamed in one thread hop, like a
small one: a streamed body costs a hop to open, one per ``WRITE_BUFFER_BYTES`` and one to
commit, each a futex wake-up and two context switches, which on this kind of VM cost more than
the overlap of disk and network they buy for a body of a few MiB. The proxy sends bodies up to
its own ``WHOLE_PUT_BYTES_MAX`` (2 MiB) this way, plus the 48-byte digest footer; the margin
covers it."""

WRITE_BUFFER_BYTES = 256 * KiB
"""A streamed PUT hands the disk thread this much at a time (one writev + MD5 per hop): fewer
hops than one per network chunk, small enough that hashing and writing the first part of a body
overlaps with receiving the rest (one disk write in flight per request)."""

DROP_BEHIND_BYTES = 8 * MiB
"""A streamed body that will leave the page cache (``keep_cache_bytes_max``) is dropped behind
the writer every this many bytes: writeback of what was written starts at once, the pages
already written back are freed and reused by the next writes. Without it a 256 MiB upload holds
256 MiB of dirty pages per replica until its final fsync, all of them freshly allocated."""

VERIFY_READ_BYTES = 1 * MiB
"""Reads of the MD5 check of a whole-object GET (page cache, so large reads are cheapest)."""

WITHHELD_TAIL_BYTES = 64 * KiB
"""A whole-object GET sends all but this tail before its MD5 check finishes; the tail goes out
only when the check passes, so a corrupt object is never delivered complete."""

# --- metadata -----------------------------------------------------------------------------------
METADATA_BYTES_MAX = 1 * MiB
"""The largest metadata trailer a reader accepts: far above Swift's limits (90 items, 4 KiB of
user metadata, 8 KiB per header), small enough that a corrupt length cannot exhaust memory."""

TRAILER_READ_BYTES = 16 * KiB
"""The first read of a file's tail: holds the whole trailer of any object within Swift limits."""

# --- ranges (Swift's swob limits, RFC 7233 section 6.1) -----------------------------------------
RANGES_MAX = 50
RANGE_OVERLAPS_MAX = 2
NONASCENDING_RANGES_MAX = 8

# --- listings -----------------------------------------------------------------------------------
LISTING_LIMIT_MAX = 10_000
"""Swift's container_listing_limit and account_listing_limit."""

MERGE_ITEMS_MAX = 10_000
"""Rows accepted by one replication merge_items request."""

REPLICATE_BODY_BYTES_MAX = 16 * MiB
"""The JSON body of one replication request: 10,000 rows with names of 1 KiB fit."""

# --- databases ----------------------------------------------------------------------------------
DB_BUSY_TIMEOUT_S = 25.0
"""How long SQLite waits for another process's lock (Swift's BROKER_TIMEOUT)."""

DB_CONNECTIONS_MAX = 256
"""Open SQLite connections kept per process; the least recently used one is closed beyond it."""

# --- devices ------------------------------------------------------------------------------------
DEVICES_MAX = 1_024
"""Devices one objectd serves; bounds the per-device thread pools."""

DEVICE_RESCAN_INTERVAL_S = 10.0
"""How often the device list is re-read; an unknown device triggers an immediate re-read."""

SENDFILE_THREADS_MAX = 64
"""Threads that push file bytes into sockets; separate from disk threads because a slow client,
not a slow disk, decides how long they are busy."""

ASYNC_PENDING_FILES_MAX_PER_SCAN = 100_000
"""Bound on one walk of an async_pending directory (the updater batches beyond it)."""

assert SMALL_BODY_BYTES_MAX <= WRITE_BUFFER_BYTES <= WHOLE_PUT_BYTES_MAX
assert TRAILER_READ_BYTES <= METADATA_BYTES_MAX
assert CHUNK_BYTES <= WRITE_BUFFER_BYTES
assert WITHHELD_TAIL_BYTES <= SMALL_BODY_BYTES_MAX
