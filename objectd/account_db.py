"""The account database: one row per container with its counts, account info and metadata.

Public: :class:`ContainerRow`, :class:`AccountInfo`, :data:`SCHEMA`, :func:`initializer`,
:func:`get_info`, :func:`put_account`, :func:`delete_account`, :func:`post_account`,
:func:`merge_containers`, :func:`list_containers`, :func:`get_items`, :func:`policy_stats`,
:func:`merge_info`.

Every function takes an open connection and runs on a disk thread (see :mod:`objectd.db`).

Merging container rows: container servers report ``(put_timestamp, delete_timestamp,
object_count, bytes_used, storage_policy_index)`` at a ``stats_timestamp`` (when the report was
made). A merge keeps the newest put and the newest delete timestamps, and the counts of the report
with the greatest ``(stats_timestamp, object_count, bytes_used, storage_policy_index)``; a row is
deleted when its delete is newer than its put and it is empty. Each field is a ``max`` over a
total order (or a function of such maxima), so merging is idempotent and commutative: account
replicas converge whatever order the reports arrive in. (Swift takes the last report to arrive,
which is not order-independent.)

Merging account info (replication, :func:`merge_info`): metadata per key, newest timestamp
winning (:func:`objectd.db.merge_metadata`, as for containers); put, delete and
status-change timestamps by max, ``created_at`` by min (Swift's ``merge_timestamps``). The status
follows the merged timestamps: ``DELETED`` exactly when the newest delete is newer than the newest
put, which :func:`delete_account` and :func:`put_account` keep true on every replica, so a delete
that reached one replica reaches the others and a newer put wins over it (the newest
``X-Timestamp`` wins). Every field is a max/min or a function of them: idempotent, commutative,
associative.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from collections.abc import Mapping
from typing import NamedTuple

from objectd.db import (
    ZERO,
    merge_metadata,
    parse_count_field,
    parse_flag_field,
    parse_header_count,
    parse_incoming_info,
    parse_name_field,
    parse_timestamp_field,
    update_metadata,
)
from objectd.listing import ListingParams, Subdir, list_entries
from shoal.timestamp import Timestamp

SCHEMA = """
CREATE TABLE container (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    put_timestamp TEXT NOT NULL,
    delete_timestamp TEXT NOT NULL,
    object_count INTEGER NOT NULL DEFAULT 0,
    bytes_used INTEGER NOT NULL DEFAULT 0,
    storage_policy_index INTEGER NOT NULL DEFAULT 0,
    stats_timestamp TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ix_container_listing ON container (deleted, name);
CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    container_count INTEGER NOT NULL DEFAULT 0,
    object_count INTEGER NOT NULL DEFAULT 0,
    bytes_used INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER container_insert AFTER INSERT ON container BEGIN
    INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (new.storage_policy_index);
    UPDATE policy_stat
    SET container_count = container_count + (1 - new.deleted),
        object_count = object_count + new.object_count,
        bytes_used = bytes_used + new.bytes_used
    WHERE storage_policy_index = new.storage_policy_index;
END;
CREATE TRIGGER container_delete AFTER DELETE ON container BEGIN
    UPDATE policy_stat
    SET container_count = container_count - (1 - old.deleted),
        object_count = object_count - old.object_count,
        bytes_used = bytes_used - old.bytes_used
    WHERE storage_policy_index = old.storage_policy_index;
END;
CREATE TABLE account_info (
    account TEXT NOT NULL,
    created_at TEXT NOT NULL,
    put_timestamp TEXT NOT NULL,
    delete_timestamp TEXT NOT NULL,
    status_changed_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '',
    id TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
"""

_COLUMNS = (
    "name, put_timestamp, delete_timestamp, object_count, bytes_used, storage_policy_index,"
    " stats_timestamp"
)


class ContainerRow(NamedTuple):
    name: str
    put_timestamp: str
    delete_timestamp: str
    object_count: int
    bytes_used: int
    storage_policy_index: int
    stats_timestamp: str

    def stats_key(self) -> tuple[str, int, int, int]:
        return (self.stats_timestamp, self.object_count, self.bytes_used, self.storage_policy_index)

    @property
    def deleted(self) -> int:
        return int(self.delete_timestamp > self.put_timestamp and self.object_count == 0)

    def merged_with(self, other: ContainerRow) -> ContainerRow:
        stats = max(self, other, key=ContainerRow.stats_key)
        return stats._replace(
            put_timestamp=max(self.put_timestamp, other.put_timestamp),
            delete_timestamp=max(self.delete_timestamp, other.delete_timestamp),
        )

    @classmethod
    def from_report(cls, name: str, headers: Mapping[str, str]) -> ContainerRow:
        """From a container's report to its account (``PUT /d/p/a/c``, ``X-Backend-Server-Type:
        account``), checked whole with the same field parsers as a peer's rows: timestamps that
        :meth:`Timestamp.parse` accepts, counts and the policy index in ASCII decimal digits up to
        SQLite's range. Absent timestamps are none, absent counts 0, an absent stats timestamp
        the newer of put and delete (as before).

        Raises:
            ValueError: a malformed header (the message names it).
        """
        put = parse_timestamp_field(headers.get("X-Put-Timestamp"), "X-Put-Timestamp") or ZERO
        delete = (
            parse_timestamp_field(headers.get("X-Delete-Timestamp"), "X-Delete-Timestamp") or ZERO
        )
        stats = parse_timestamp_field(
            headers.get("X-Backend-Stats-Timestamp"), "X-Backend-Stats-Timestamp"
        )
        return cls(
            parse_name_field(name, "container"),
            put,
            delete,
            parse_header_count(headers.get("X-Object-Count"), "X-Object-Count"),
            parse_header_count(headers.get("X-Bytes-Used"), "X-Bytes-Used"),
            parse_header_count(
                headers.get("X-Backend-Storage-Policy-Index"), "X-Backend-Storage-Policy-Index"
            ),
            stats or max(put, delete),
        )

    @classmethod
    def from_peer(cls, item: dict) -> ContainerRow:
        """From a peer's replication item (see :func:`get_items`), checked whole; normalises
        timestamps. Unlike :meth:`from_report` (header strings), counts must be JSON
        integers. ``name`` is required; absent or null timestamps are none (as in ``merge_info``),
        an absent ``stats_timestamp`` the newer of put and delete; a ``deleted`` flag, if sent,
        must be 0 or 1 and is ignored (it follows from the row, see :attr:`deleted`).

        Raises:
            ValueError: a malformed field (the message names it).
        """
        put = parse_timestamp_field(item.get("put_timestamp"), "put_timestamp") or ZERO
        delete = parse_timestamp_field(item.get("delete_timestamp"), "delete_timestamp") or ZERO
        stats = parse_timestamp_field(item.get("stats_timestamp"), "stats_timestamp")
        if "deleted" in item:
            parse_flag_field(item["deleted"], "deleted")
        return cls(
            parse_name_field(item.get("name"), "name"),
            put,
            delete,
            parse_count_field(item.get("object_count", 0), "object_count"),
            parse_count_field(item.get("bytes_used", 0), "bytes_used"),
            parse_count_field(item.get("storage_policy_index", 0), "storage_policy_index"),
            stats or max(put, delete),
        )


@dataclasses.dataclass(slots=True)
class AccountInfo:
    account: str
    created_at: str
    put_timestamp: str
    delete_timestamp: str
    status_changed_at: str
    status: str
    id: str
    metadata: str
    container_count: int
    object_count: int
    bytes_used: int

    @property
    def is_deleted(self) -> bool:
        """Swift's rule: marked DELETED, or deleted after the last put and empty."""
        return self.status == "DELETED" or (
            self.delete_timestamp > self.put_timestamp and self.container_count == 0
        )


def initializer(account: str, timestamp: Timestamp, metadata: str):
    def initialize(connection: sqlite3.Connection) -> None:
        stamp = timestamp.internal
        connection.execute(
            "INSERT INTO account_info (account, created_at, put_timestamp, delete_timestamp,"
            " status_changed_at, id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account, stamp, stamp, ZERO, stamp, str(uuid.uuid4()), metadata),
        )

    return initialize


def get_info(connection: sqlite3.Connection) -> AccountInfo:
    info = connection.execute(
        "SELECT account, created_at, put_timestamp, delete_timestamp, status_changed_at, status,"
        " id, metadata FROM account_info"
    ).fetchone()
    totals = connection.execute(
        "SELECT COALESCE(SUM(container_count), 0), COALESCE(SUM(object_count), 0),"
        " COALESCE(SUM(bytes_used), 0) FROM policy_stat"
    ).fetchone()
    return AccountInfo(*info, *totals)


def policy_stats(connection: sqlite3.Connection) -> list[tuple[int, int, int, int]]:
    """``(policy_index, container_count, object_count, bytes_used)`` of policies in use."""
    return connection.execute(
        "SELECT storage_policy_index, container_count, object_count, bytes_used FROM policy_stat"
        " WHERE container_count > 0 OR object_count > 0 ORDER BY storage_policy_index"
    ).fetchall()


def _in_transaction(connection: sqlite3.Connection, work) -> object:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        connection.execute("COMMIT")
        return result
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def put_account(
    connection: sqlite3.Connection, timestamp: Timestamp, metadata_updates: dict[str, str]
) -> int:
    """PUT on an existing account DB: 202, or 403 if the account was deleted (Swift's rule:
    a deleted account stays deleted until the reaper has removed it)."""

    def work() -> int:
        info = get_info(connection)
        if info.status == "DELETED":
            return 403
        metadata = update_metadata(info.metadata, metadata_updates, timestamp)
        connection.execute(
            "UPDATE account_info SET put_timestamp = MAX(put_timestamp, ?), metadata = ?",
            (timestamp.internal, metadata),
        )
        return 202

    return _in_transaction(connection, work)  # type: ignore[return-value]


def delete_account(connection: sqlite3.Connection, timestamp: Timestamp) -> int:
    """204 after marking the account DELETED, 404 if it already is, 409 if a put is newer."""

    def work() -> int:
        info = get_info(connection)
        if info.is_deleted:
            return 404
        if info.put_timestamp >= timestamp.internal:
            return 409
        connection.execute(
            "UPDATE account_info SET status = 'DELETED',"
            " delete_timestamp = MAX(delete_timestamp, ?), status_changed_at = ?",
            (timestamp.internal, timestamp.internal),
        )
        return 204

    return _in_transaction(connection, work)  # type: ignore[return-value]


def post_account(
    connection: sqlite3.Connection, timestamp: Timestamp, metadata_updates: dict[str, str]
) -> int:
    def work() -> int:
        info = get_info(connection)
        if info.is_deleted:
            return 404
        metadata = update_metadata(info.metadata, metadata_updates, timestamp)
        connection.execute("UPDATE account_info SET metadata = ?", (metadata,))
        return 204

    return _in_transaction(connection, work)  # type: ignore[return-value]


def merge_containers(connection: sqlite3.Connection, rows: list[ContainerRow]) -> None:
    """Merge container reports (see the module docstring) in one transaction."""
    best: dict[str, ContainerRow] = {}
    for row in rows:
        current = best.get(row.name)
        best[row.name] = row if current is None else current.merged_with(row)

    def work() -> None:
        for name, row in best.items():
            found = connection.execute(
                f"SELECT {_COLUMNS} FROM container WHERE name = ?", (name,)
            ).fetchone()
            merged = row if found is None else ContainerRow(*found).merged_with(row)
            if found is not None:
                if ContainerRow(*found) == merged:
                    continue
                connection.execute("DELETE FROM container WHERE name = ?", (name,))
            connection.execute(
                f"INSERT INTO container ({_COLUMNS}, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*merged, merged.deleted),
            )

    _in_transaction(connection, work)


def list_containers(connection: sqlite3.Connection, params: ListingParams) -> list[dict]:
    """Swift's JSON rows: ``{name, count, bytes, last_modified}`` and ``{subdir}``."""

    def fetch(lower: str | None, inclusive: bool, upper: str | None, descending: bool, count: int):
        conditions = ["deleted = 0"]
        args: list[object] = []
        if lower is not None:
            conditions.append("name >= ?" if inclusive else "name > ?")
            args.append(lower)
        if upper is not None:
            conditions.append("name < ?")
            args.append(upper)
        order = "DESC" if descending else "ASC"
        query = (
            "SELECT name, object_count, bytes_used, put_timestamp FROM container"
            f" WHERE {' AND '.join(conditions)} ORDER BY name {order} LIMIT ?"
        )
        return connection.execute(query, [*args, count])  # lazy: see listing.Fetch

    return [_container_json(entry) for entry in list_entries(params, fetch)]


def _container_json(entry) -> dict:
    if isinstance(entry, Subdir):
        return {"subdir": entry.name}
    name, count, bytes_used, put_timestamp = entry
    return {
        "name": name,
        "count": count,
        "bytes": bytes_used,
        "last_modified": Timestamp.parse(put_timestamp).iso(),
    }


def get_items(connection: sqlite3.Connection, since_rowid: int, count: int) -> list[dict]:
    """Container rows (deleted included) with ROWID > ``since_rowid``, for replication."""
    rows = connection.execute(
        f"SELECT ROWID, {_COLUMNS} FROM container WHERE ROWID > ? ORDER BY ROWID LIMIT ?",
        (since_rowid, count),
    ).fetchall()
    keys = ("rowid", *ContainerRow._fields)
    return [dict(zip(keys, row, strict=True)) for row in rows]


def merge_info(connection: sqlite3.Connection, other: dict) -> None:
    """Merge another replica's info into this one (see the module docstring).

    Raises ValueError on a malformed ``other`` (checked whole first: nothing is changed)."""
    incoming = parse_incoming_info(
        other, ("put_timestamp", "delete_timestamp", "status_changed_at", "created_at")
    )
    put = incoming.timestamps["put_timestamp"] or ZERO
    delete = incoming.timestamps["delete_timestamp"] or ZERO
    status_changed = incoming.timestamps["status_changed_at"] or ZERO
    created = incoming.timestamps["created_at"]
    if created == ZERO:  # as before: a zero created_at is "none", never the min
        created = None

    def work() -> None:
        info = get_info(connection)
        merged_put = max(info.put_timestamp, put)
        merged_delete = max(info.delete_timestamp, delete)
        connection.execute(
            "UPDATE account_info SET created_at = ?, put_timestamp = ?, delete_timestamp = ?,"
            " status_changed_at = ?, status = ?, metadata = ?",
            (
                min(info.created_at, created) if created else info.created_at,
                merged_put,
                merged_delete,
                max(info.status_changed_at, status_changed),
                "DELETED" if merged_delete > merged_put else "",
                merge_metadata(info.metadata, incoming.metadata),
            ),
        )

    _in_transaction(connection, work)
