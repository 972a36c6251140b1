"""SQLite databases of containers and accounts: opening, creating, running work on them, group
commit, and timestamped metadata.

Public: :class:`Brokers`, :class:`DatabaseMissing`, :func:`create_database`,
:func:`update_metadata`, :func:`merge_metadata`, :func:`merge_metadata_json`,
:func:`visible_metadata`, :class:`IncomingInfo`, :func:`parse_incoming_info`,
:func:`parse_timestamp_field`, :func:`parse_metadata_json`, :func:`parse_incoming_items`,
:func:`parse_name_field`, :func:`parse_count_field`, :func:`parse_flag_field`,
:func:`parse_text_field`, :data:`ZERO`.

One database per container and per account, in WAL mode (readers never block the writer), at
``<device>/{containers,accounts}/<partition>/<suffix>/<hash>/<hash>.db``.

Threads: every operation on a database is a plain function ``f(connection, *args)`` that runs on
the device's disk threads (``Devices.run``), holding that database's lock, so one connection is
used by one thread at a time and the event loop never waits on SQLite. Connections are kept open
in an LRU of ``DB_CONNECTIONS_MAX``. Other processes (workers, the replicator) are serialised by
SQLite's own locks (``busy_timeout``).

Group commit: row updates (one per object PUT or DELETE) for the same database are queued and
merged in one transaction by :meth:`Brokers.merge`; while a commit is in flight the next updates
gather behind it (a batch is bounded by the requests waiting on it). Under load many updates
share one fsync, which is what Swift's ``.pending`` files achieve, without a second file format.

Creation is atomic: a new database is built in ``<device>/tmp`` and linked into place, so a
half-created database is never visible; two concurrent creators both succeed, one of them wins.

Metadata: ``{name: [value, timestamp]}`` as JSON, merged per key by timestamp (an empty value is a
deletion that still carries its timestamp), so replicas converge whatever the order of updates.

A peer's info (``merge_info``) is checked whole by :func:`parse_incoming_info` before anything is
written: one malformed field refuses the whole info (``ValueError``, a 400), never a 500 or a
half-merged or wrongly-typed value that would break later HEAD responses. A peer's rows
(``merge_items``) likewise: :func:`parse_incoming_items` checks the whole batch first, and one bad
item refuses it all with a message naming the item's index and field.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from objectd.devices import Devices
from objectd.errors import NotFound
from objectd.limits import DB_BUSY_TIMEOUT_S, DB_CONNECTIONS_MAX
from shoal.timestamp import Timestamp

T = TypeVar("T")

ZERO = Timestamp(0).internal
"""The timestamp of something that never happened (a container never deleted, ...)."""


class DatabaseMissing(NotFound):
    """The database does not exist on this device (404)."""


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise DatabaseMissing(f"no database at {path}")
    connection = sqlite3.connect(
        f"file:{path}?mode=rw",
        uri=True,
        timeout=DB_BUSY_TIMEOUT_S,
        isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
        check_same_thread=False,  # used by one thread at a time, under the handle's lock
    )
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA temp_store = MEMORY")
    return connection


class _Handle:
    """One database: its path, its lock, its connection (opened on first use)."""

    __slots__ = ("connection", "lock", "path")

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.connection: sqlite3.Connection | None = None

    def call(self, synchronous: str, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.lock:
            if self.connection is None:
                self.connection = _connect(self.path, synchronous)
            elif not os.path.exists(self.path):  # removed under us (moved by the replicator)
                self._close_locked()
                raise DatabaseMissing(f"no database at {self.path}")
            return function(self.connection, *args)

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class _Batch:
    __slots__ = ("futures", "items", "running")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[None]] = []
        self.running = False


class Brokers:
    """The open databases of this process and the way to run work on them."""

    def __init__(self, devices: Devices, *, synchronous: str):
        self.devices = devices
        self.synchronous = synchronous
        self._handles: collections.OrderedDict[str, _Handle] = collections.OrderedDict()
        self._batches: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Future[Any]] = set()  # background work, referenced until done

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handle(self, device: str, path: str) -> _Handle:
        handle = self._handles.get(path)
        if handle is not None:
            self._handles.move_to_end(path)
            return handle
        handle = self._handles[path] = _Handle(path)
        if len(self._handles) > DB_CONNECTIONS_MAX:
            _, evicted = self._handles.popitem(last=False)
            # closed on a disk thread: it may have to wait for a thread still using it
            self._spawn(self.devices.run(device, evicted.close))
        return handle

    async def run(self, device: str, path: str, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(connection, *args)`` on the database at ``path`` (on a disk thread).

        Raises:
            DatabaseMissing: there is no database at ``path``.
        """
        handle = self._handle(device, path)
        try:
            return await self.devices.run(device, handle.call, self.synchronous, function, args)
        except DatabaseMissing:
            if self._handles.get(path) is handle:
                del self._handles[path]
            raise

    async def merge(
        self,
        device: str,
        path: str,
        function: Callable[[sqlite3.Connection, list[Any]], None],
        items: list[Any],
    ) -> None:
        """Merge ``items`` with ``function(connection, items)``, sharing a transaction with the
        other merges queued for the same database (group commit). Returns once committed."""
        batch = self._batches.get(path)
        if batch is None:
            batch = self._batches[path] = _Batch()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.items.extend(items)
        batch.futures.append(future)
        if not batch.running:
            batch.running = True
            self._spawn(self._drain(device, path, function, batch))
        await future

    async def _drain(
        self,
        device: str,
        path: str,
        function: Callable[[sqlite3.Connection, list[Any]], None],
        batch: _Batch,
    ) -> None:
        try:
            while batch.futures:  # each pass commits what queued behind the previous commit
                items, futures = batch.items, batch.futures
                batch.items, batch.futures = [], []
                try:
                    await self.run(device, path, function, items)
                except Exception as exc:
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for future in futures:
                        if not future.done():
                            future.set_result(None)
        finally:
            batch.running = False
            if not batch.futures and self._batches.get(path) is batch:
                del self._batches[path]

    async def close(self) -> None:
        handles = list(self._handles.values())
        self._handles.clear()
        for handle in handles:
            await asyncio.to_thread(handle.close)


# --- creation -------------------------------------------------------------------------------------
def create_database(
    devices: Devices,
    device: str,
    path: str,
    schema: str,
    initialize: Callable[[sqlite3.Connection], None],
) -> bool:
    """Create the database at ``path`` atomically (blocking); False if it already existed.

    Built in ``<device>/tmp``, committed and closed, then hard-linked into place (a link never
    replaces an existing file, so a concurrent creator's database is never overwritten).
    """
    devices.check(device)
    if os.path.exists(path):
        return False
    tmp_dir = devices.layout.tmp_dir(device)
    devices.io.makedirs(tmp_dir)
    tmp_path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.db")
    try:
        connection = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.executescript("BEGIN;" + schema + "COMMIT;")
            connection.execute("BEGIN IMMEDIATE")
            initialize(connection)
            connection.execute("COMMIT")
        finally:
            connection.close()  # checkpoints the WAL into the file and fsyncs it
        created = devices.io.makedirs(os.path.dirname(path))
        try:
            os.link(tmp_path, path)
        except FileExistsError:
            return False
        devices.io.fsync_dir(os.path.dirname(path))
        for created_dir in reversed(created):
            devices.io.fsync_dir(os.path.dirname(created_dir))
        return True
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(tmp_path + suffix)
            except FileNotFoundError:
                pass


# --- metadata -------------------------------------------------------------------------------------
def update_metadata(current: str, updates: dict[str, str], timestamp: Timestamp) -> str:
    """Merge ``updates`` (header → value, ``""`` deletes) stamped ``timestamp`` into the JSON."""
    metadata: dict[str, list[str]] = json.loads(current or "{}")
    stamp = timestamp.internal
    for key, value in updates.items():
        existing = metadata.get(key)
        if existing is None or stamp > existing[1]:
            metadata[key] = [value, stamp]
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True)


def merge_metadata(current: str, incoming: dict[str, list[str]]) -> str:
    """Merge checked metadata (see :func:`parse_metadata_json`) into the JSON, key by key, the
    newest timestamp winning (replication)."""
    metadata: dict[str, list[str]] = json.loads(current or "{}")
    for key, (value, stamp) in incoming.items():
        existing = metadata.get(key)
        if existing is None or (stamp, value) > (existing[1], existing[0]):
            metadata[key] = [value, stamp]
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True)


def merge_metadata_json(current: str, incoming: str) -> str:
    """Merge two metadata JSON documents key by key, newest timestamp winning (replication).

    Raises:
        ValueError: ``incoming`` is not a metadata document (nothing is merged).
    """
    return merge_metadata(current, parse_metadata_json(incoming))


def visible_metadata(current: str) -> dict[str, str]:
    """The metadata to return as headers: deleted (empty) values hidden."""
    return {key: value for key, (value, _) in json.loads(current or "{}").items() if value != ""}


# --- a peer's info (merge_info) -------------------------------------------------------------------
def parse_timestamp_field(value: object, name: str) -> str | None:
    """A timestamp from a peer's info in internal form; None for null ("none").

    A JSON string or number that :meth:`Timestamp.parse` accepts; booleans, lists, objects, NaN
    and infinities are refused (Timestamp.parse would crash on some, or accept ``true`` as 1).

    Raises:
        ValueError: anything else, naming the field.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name}: a timestamp is a string or a number, not {value!r}")
    try:
        return Timestamp.parse(value).internal
    except (ValueError, OverflowError) as exc:  # TimestampError; inf: OverflowError
        raise ValueError(f"{name}: bad timestamp {value!r}: {exc}") from None


_HEADER_BREAKERS = frozenset("\r\n\0")
"""Characters no header can carry: metadata holding them would make every later HEAD a 500."""


def parse_metadata_json(text: object) -> dict[str, list[str]]:
    """Metadata from a peer: the JSON text of ``{name: [value, timestamp]}`` with string values
    and timestamps in internal form (normalised); names and values must fit in a header line.
    None or ``""`` is no metadata.

    Raises:
        ValueError: not JSON text of such an object (the message names the first bad key).
    """
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise ValueError(f"metadata: JSON text of an object, not {type(text).__name__}")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"metadata: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"metadata: a JSON object, not {type(document).__name__}")
    metadata: dict[str, list[str]] = {}
    for key, entry in document.items():
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"metadata {key!r}: [str value, str timestamp], not {entry!r}")
        value, stamp = entry
        if not key or _HEADER_BREAKERS.intersection(key + value):
            raise ValueError(f"metadata {key!r}: not a header name and value: {value!r}")
        if not isinstance(stamp, str):
            raise ValueError(f"metadata {key!r}: the timestamp is a string, not {stamp!r}")
        parse_timestamp_field(stamp, f"metadata {key!r}")  # a clear ValueError if bad
        metadata[key] = [value, Timestamp.parse(stamp).internal]
    return metadata


class IncomingInfo(NamedTuple):
    """A peer's info, checked: what ``merge_info`` may write."""

    timestamps: dict[str, str | None]
    """Each requested timestamp field in internal form; None when absent or null ("none")."""
    metadata: dict[str, list[str]]
    """``{name: [value, internal timestamp]}``, empty when absent."""


def parse_incoming_info(info: object, timestamp_fields: tuple[str, ...]) -> IncomingInfo:
    """Parse and check a peer's info (``merge_info``) before any write; shared by containers and
    accounts. Only ``timestamp_fields`` (what the caller merges) and ``metadata`` are read; other
    keys are ignored, as before.

    Raises:
        ValueError: ``info`` is not an object, or a timestamp or the metadata is malformed.
    """
    if not isinstance(info, dict):
        raise ValueError(f"info: an object, not {type(info).__name__}")
    timestamps = {name: parse_timestamp_field(info.get(name), name) for name in timestamp_fields}
    return IncomingInfo(timestamps, parse_metadata_json(info.get("metadata")))


# --- a peer's rows (merge_items) ------------------------------------------------------------------
SQLITE_INTEGER_MAX = 2**63 - 1
"""The largest integer SQLite stores: a bigger one makes the INSERT raise (a 500)."""


def parse_name_field(value: object, name: str) -> str:
    """A row's name from a peer: a non-empty string without NUL (SQLite and listings cut there).

    Raises:
        ValueError: anything else (absent or null included), naming the field.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: a non-empty string, not {value!r}")
    if "\0" in value:
        raise ValueError(f"{name}: contains NUL: {value!r}")
    return value


def parse_count_field(value: object, name: str) -> int:
    """A size, count or policy index from a peer: a JSON integer, 0 to :data:`SQLITE_INTEGER_MAX`.

    Booleans (``int(True)`` is 1), floats, strings and null are refused: the old ``int(...)``
    accepted ``"5"`` and ``2.7`` and stored what the sender never had.

    Raises:
        ValueError: anything else, naming the field.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: a non-negative integer, not {value!r}")
    if not 0 <= value <= SQLITE_INTEGER_MAX:
        raise ValueError(f"{name}: out of range 0..{SQLITE_INTEGER_MAX}: {value!r}")
    return value


def parse_header_count(value: str | None, name: str) -> int:
    """A count or policy index from a header (a container's report to its account): ASCII
    decimal digits, checked as :func:`parse_count_field`; absent is 0.

    ``int()`` alone took ``-1``, ``" 5"``, ``"+5"``, ``"1_000"`` and other scripts' digits, and
    numbers beyond SQLite's range that made the INSERT a 500.

    Raises:
        ValueError: anything else, naming the header.
    """
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name}: a non-negative decimal integer, not {value!r}")
    return parse_count_field(int(value), name)


def parse_get_items_args(body: dict, count_default: int, count_max: int) -> tuple[int, int]:
    """``since`` (a ROWID, default 0) and ``count`` (default ``count_default``, capped at
    ``count_max``) of a ``get_items`` request; JSON integers as :func:`parse_count_field`.

    A negative count used to reach SQLite as ``LIMIT -1`` (no limit); null or a list was a 500.

    Raises:
        ValueError: a malformed ``since`` or ``count``, naming it.
    """
    since = parse_count_field(body.get("since", 0), "since")
    count = parse_count_field(body.get("count", count_default), "count")
    return since, min(count, count_max)


def parse_flag_field(value: object, name: str) -> int:
    """A 0/1 flag (``deleted``) from a peer; ``true``/``false`` refused as for counts.

    Raises:
        ValueError: anything else, naming the field.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise ValueError(f"{name}: 0 or 1, not {value!r}")
    return value


def parse_text_field(value: object, name: str) -> str:
    """A text column (``content_type``, ``etag``) from a peer: a string (null is not ``"None"``).

    Raises:
        ValueError: anything else, naming the field.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name}: a string, not {value!r}")
    return value


RowT = TypeVar("RowT")


def parse_incoming_items(items: object, parse_item: Callable[[dict], RowT]) -> list[RowT]:
    """Parse and check a peer's whole ``merge_items`` batch before any write; shared by containers
    and accounts (``parse_item`` checks one object, raising ValueError naming the field).

    Raises:
        ValueError: ``items`` is not a list of objects or one item is malformed; the message
            names the item's index, so the whole batch is refused with a clear 400.
    """
    if not isinstance(items, list):
        raise ValueError(f"items: a list of objects, not {type(items).__name__}")
    rows: list[RowT] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"item {index}: an object, not {type(item).__name__}")
        try:
            rows.append(parse_item(item))
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return rows
