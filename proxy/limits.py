"""The proxy's limits: Swift's API constraints (published in ``/info``) and internal bounds.

Public: the constants below and :data:`SWIFT_CONSTRAINTS` (the ``swift`` section of ``/info``).
Relationships are asserted at import time, so a bad edit fails at start-up.
"""

from __future__ import annotations

from shoal.units import GiB, KiB, MiB

# --- Swift's constraints (swift/common/constraints.py); clients read them from /info ----------
MAX_FILE_SIZE = 5 * GiB + 2
"""Largest single-PUT object (Swift's ``max_file_size``); larger objects need SLO/DLO."""
MAX_OBJECT_NAME_LENGTH = 1024
MAX_CONTAINER_NAME_LENGTH = 256
MAX_ACCOUNT_NAME_LENGTH = 256
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_HEADER_SIZE = 8192
MAX_REQUEST_LINE = 8192
CONTAINER_LISTING_LIMIT = 10_000
ACCOUNT_LISTING_LIMIT = 10_000
EXTRA_HEADER_COUNT = 0
MAX_HEADER_COUNT = MAX_META_COUNT + 36 + EXTRA_HEADER_COUNT
VALID_API_VERSIONS = ("v1", "v1.0")
AUTO_CREATE_ACCOUNT_PREFIX = "."

SWIFT_CONSTRAINTS: dict[str, object] = {
    "max_file_size": MAX_FILE_SIZE,
    "max_meta_name_length": MAX_META_NAME_LENGTH,
    "max_meta_value_length": MAX_META_VALUE_LENGTH,
    "max_meta_count": MAX_META_COUNT,
    "max_meta_overall_size": MAX_META_OVERALL_SIZE,
    "max_header_size": MAX_HEADER_SIZE,
    "max_object_name_length": MAX_OBJECT_NAME_LENGTH,
    "container_listing_limit": CONTAINER_LISTING_LIMIT,
    "account_listing_limit": ACCOUNT_LISTING_LIMIT,
    "max_account_name_length": MAX_ACCOUNT_NAME_LENGTH,
    "max_container_name_length": MAX_CONTAINER_NAME_LENGTH,
    "extra_header_count": EXTRA_HEADER_COUNT,
    "valid_api_versions": list(VALID_API_VERSIONS),
}

# --- streaming ------------------------------------------------------------------------------
CHUNK_BYTES = 64 * KiB
"""One read from the client = one write to each backend putter."""

SMALL_PUT_BYTES_MAX = 64 * KiB
"""A PUT with a Content-Length up to this is read whole and sent in one backend request per node
(no 100-continue round trip): most objects are small, and this halves their backend round trips.
The same size as objectd's SMALL_BODY_BYTES_MAX, which writes such a body in one disk hop."""

WHOLE_PUT_BYTES_MAX = 2 * MiB
"""A PUT with a Content-Length above ``SMALL_PUT_BYTES_MAX`` and up to this is also read whole
before any node is asked, then hashed once (MD5 and xxh3-64) and sent to every node in one
request with the digest footer, no ``100-continue``: the streamed path's per-node putters,
queues and 100-continue round trip cost more CPU than the body's bytes up to a few MiB. Proxy
memory per such PUT is the body once (shared by the node requests), about what Swift's
putter queues hold (10 x 64 KiB per node)."""

SMALL_GET_BYTES_MAX = 64 * KiB
"""A GET answer up to this size is read whole from the node and sent in one write (no streamed
response, no per-chunk awaits); larger ones are streamed with mid-body failover."""

PUTTER_QUEUE_CHUNKS_MAX = 4
"""Chunks buffered per backend putter: bounds proxy memory per PUT to replicas x 4 x 64 KiB."""

# --- time -----------------------------------------------------------------------------------
INFO_CACHE_TTL_S = 10.0
"""How long a worker trusts a container's or account's existence and metadata (Swift's
recheck_container_existence is 60 s; shorter, since ACL changes made by another worker should
take effect quickly). Only positive answers are cached, and a worker's own writes invalidate."""

INFO_CACHE_ENTRIES_MAX = 100_000
"""Bound on cached container/account records per worker (oldest dropped beyond)."""

GENERATION_BUCKETS = 8192
"""Shared change counters of the info caches (64 KiB shared by the workers); more buckets, fewer
needless refetches when unrelated containers share one."""

TOKEN_LIFETIME_S = 86_400
"""Tempauth tokens live one day, as Swift's tempauth ``token_life``."""

ERROR_SUPPRESSION_LIMIT = 10
"""Errors a node may make within ERROR_SUPPRESSION_INTERVAL_S before it is skipped (Swift)."""
ERROR_SUPPRESSION_INTERVAL_S = 60.0

assert CHUNK_BYTES <= SMALL_PUT_BYTES_MAX <= WHOLE_PUT_BYTES_MAX <= MAX_FILE_SIZE
assert MAX_META_VALUE_LENGTH <= MAX_META_OVERALL_SIZE
