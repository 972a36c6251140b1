"""The container database: object rows, container info and metadata, counts per policy.

Public: :class:`ObjectRow`, :class:`ContainerInfo`, :data:`SCHEMA`, :func:`initializer`,
:func:`get_info`, :func:`put_container`, :func:`delete_container`, :func:`post_container`,
:func:`merge_objects`, :func:`list_objects`, :func:`get_items`, :func:`merge_info`.

Every function takes an open connection and runs on a disk thread (see :mod:`objectd.db`).

Merging rows (what makes replicas converge): a row is keyed by ``(name, storage_policy_index)``;
of two rows with the same key the one with the greater
``(created_at, deleted, size, content_type, etag)`` wins. That is a total order, so a merge is
a ``max``: idempotent, commutative and associative, and replicas that have seen the same rows in
any order hold the same table. A replaced row is deleted and the winner inserted with a new
ROWID, so the replicator can ship "rows since ROWID n" (Swift's sync points). Deleted rows stay
(as tombstones) so that a delete wins over an older put arriving later.

Object count and bytes per policy are kept by triggers on insert and delete, never recounted.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from typing import NamedTuple

from objectd.db import (
    ZERO,
    merge_metadata,
    parse_count_field,
    parse_flag_field,
    parse_incoming_info,
    parse_name_field,
    parse_text_field,
    parse_timestamp_field,
    update_metadata,
)
from objectd.listing import ListingParams, Subdir, list_entries
from shoal.timestamp import Timestamp

SCHEMA = """
CREATE TABLE object (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    content_type TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    deleted INTEGER NOT NULL DEFAULT 0,
    storage_policy_index INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX ix_object_name_policy ON object (name, storage_policy_index);
CREATE INDEX ix_object_listing ON object (deleted, storage_policy_index, name);
CREATE TABLE policy_stat (
    storage_policy_index INTEGER PRIMARY KEY,
    object_count INTEGER NOT NULL DEFAULT 0,
    bytes_used INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER object_insert AFTER INSERT ON object BEGIN
    INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (new.storage_policy_index);
    UPDATE policy_stat
    SET object_count = object_count + (1 - new.deleted),
        bytes_used = bytes_used + (1 - new.deleted) * new.size
    WHERE storage_policy_index = new.storage_policy_index;
END;
CREATE TRIGGER object_delete AFTER DELETE ON object BEGIN
    UPDATE policy_stat
    SET object_count = object_count - (1 - old.deleted),
        bytes_used = bytes_used - (1 - old.deleted) * old.size
    WHERE storage_policy_index = old.storage_policy_index;
END;
CREATE TABLE container_info (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    created_at TEXT NOT NULL,
    put_timestamp TEXT NOT NULL,
    delete_timestamp TEXT NOT NULL,
    status_changed_at TEXT NOT NULL,
    storage_policy_index INTEGER NOT NULL,
    id TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    reported_put_timestamp TEXT NOT NULL DEFAULT '0000000000.00000',
    reported_delete_timestamp TEXT NOT NULL DEFAULT '0000000000.00000',
    reported_object_count INTEGER NOT NULL DEFAULT 0,
    reported_bytes_used INTEGER NOT NULL DEFAULT 0
);
"""

_SQLITE_ARGS_MAX = 500  # names per IN (...) query: below SQLite's variable limit


class ObjectRow(NamedTuple):
    name: str
    created_at: str  # internal timestamp
    size: int
    content_type: str
    etag: str
    deleted: int
    storage_policy_index: int

    def merge_key(self) -> tuple[str, int, int, str, str]:
        return (self.created_at, self.deleted, self.size, self.content_type, self.etag)

    @classmethod
    def from_peer(cls, item: dict) -> ObjectRow:
        """From a peer's replication item (see :func:`get_items`), checked whole; normalises the
        timestamp. ``name`` and ``created_at`` are required; absent fields default as an empty
        live object of policy 0; null is refused (it used to be stored as ``"None"`` or crash).

        Raises:
            ValueError: a malformed field (the message names it).
        """
        created_at = parse_timestamp_field(item.get("created_at"), "created_at")
        if created_at is None:
            raise ValueError("created_at: required, not null or absent")
        return cls(
            parse_name_field(item.get("name"), "name"),
            created_at,
            parse_count_field(item.get("size", 0), "size"),
            parse_text_field(item.get("content_type", ""), "content_type"),
            parse_text_field(item.get("etag", ""), "etag"),
            parse_flag_field(item.get("deleted", 0), "deleted"),
            parse_count_field(item.get("storage_policy_index", 0), "storage_policy_index"),
        )


@dataclasses.dataclass(slots=True)
class ContainerInfo:
    account: str
    container: str
    created_at: str
    put_timestamp: str
    delete_timestamp: str
    status_changed_at: str
    storage_policy_index: int
    id: str
    metadata: str
    object_count: int
    bytes_used: int

    @property
    def is_deleted(self) -> bool:
        """Swift's rule: deleted after the last put, and empty."""
        return self.delete_timestamp > self.put_timestamp and self.object_count == 0


def initializer(
    account: str, container: str, timestamp: Timestamp, policy_index: int, metadata: str
):
    """The function that fills a new container DB (for ``db.create_database``)."""

    def initialize(connection: sqlite3.Connection) -> None:
        stamp = timestamp.internal
        connection.execute(
            "INSERT INTO container_info (account, container, created_at, put_timestamp,"
            " delete_timestamp, status_changed_at, storage_policy_index, id, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account,
                container,
                stamp,
                stamp,
                ZERO,
                stamp,
                policy_index,
                str(uuid.uuid4()),
                metadata,
            ),
        )
        connection.execute(
            "INSERT INTO policy_stat (storage_policy_index) VALUES (?)", (policy_index,)
        )

    return initialize


def get_info(connection: sqlite3.Connection) -> ContainerInfo:
    row = connection.execute(
        "SELECT i.account, i.container, i.created_at, i.put_timestamp, i.delete_timestamp,"
        " i.status_changed_at, i.storage_policy_index, i.id, i.metadata,"
        " COALESCE(s.object_count, 0), COALESCE(s.bytes_used, 0)"
        " FROM container_info i LEFT JOIN policy_stat s"
        " ON s.storage_policy_index = i.storage_policy_index"
    ).fetchone()
    return ContainerInfo(*row)


def put_container(
    connection: sqlite3.Connection,
    timestamp: Timestamp,
    policy_index: int | None,
    metadata_updates: dict[str, str],
) -> tuple[int, ContainerInfo]:
    """PUT on an existing container DB: ``(status, info)`` with 201 (recreated), 202 (updated)
    or 409 (a live container of another storage policy, or a put older than the delete)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        info = get_info(connection)
        stamp = timestamp.internal
        was_deleted = info.is_deleted
        if (
            not was_deleted
            and policy_index is not None
            and policy_index != info.storage_policy_index
        ):
            connection.execute("ROLLBACK")
            return 409, info
        recreated = was_deleted and stamp > info.delete_timestamp
        if was_deleted and not recreated:  # a put older than the delete: still deleted
            connection.execute("ROLLBACK")
            return 409, info
        new_policy = (
            policy_index if recreated and policy_index is not None else info.storage_policy_index
        )
        metadata = update_metadata(info.metadata, metadata_updates, timestamp)
        connection.execute(
            "UPDATE container_info SET put_timestamp = MAX(put_timestamp, ?), metadata = ?,"
            " storage_policy_index = ?,"
            " status_changed_at = CASE WHEN ? THEN ? ELSE status_changed_at END",
            (stamp, metadata, new_policy, recreated, stamp),
        )
        connection.execute(
            "INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (?)", (new_policy,)
        )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return (201 if recreated else 202), get_info(connection)


def delete_container(
    connection: sqlite3.Connection, timestamp: Timestamp
) -> tuple[int, ContainerInfo]:
    """``(status, info)``: 204 deleted, 404 already deleted, 409 not empty or put is newer."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        info = get_info(connection)
        stamp = timestamp.internal
        if info.is_deleted:
            status = 404
        elif info.object_count > 0 or info.put_timestamp >= stamp:
            status = 409
        else:
            connection.execute(
                "UPDATE container_info SET delete_timestamp = MAX(delete_timestamp, ?),"
                " status_changed_at = ?",
                (stamp, stamp),
            )
            status = 204
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return status, get_info(connection)


def post_container(
    connection: sqlite3.Connection, timestamp: Timestamp, metadata_updates: dict[str, str]
) -> int:
    """204 after merging metadata, 404 if the container is deleted."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        info = get_info(connection)
        if info.is_deleted:
            connection.execute("ROLLBACK")
            return 404
        metadata = update_metadata(info.metadata, metadata_updates, timestamp)
        connection.execute("UPDATE container_info SET metadata = ?", (metadata,))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return 204


def merge_objects(connection: sqlite3.Connection, rows: list[ObjectRow]) -> None:
    """Merge ``rows`` (see the module docstring) in one transaction."""
    best: dict[tuple[str, int], ObjectRow] = {}
    for row in rows:
        key = (row.name, row.storage_policy_index)
        current = best.get(key)
        if current is None or row.merge_key() > current.merge_key():
            best[key] = row
    connection.execute("BEGIN IMMEDIATE")
    try:
        existing = _existing_rows(connection, list({name for name, _ in best}))
        winners = [
            row
            for key, row in best.items()
            if key not in existing or row.merge_key() > existing[key].merge_key()
        ]
        connection.executemany(
            "DELETE FROM object WHERE name = ? AND storage_policy_index = ?",
            [
                (row.name, row.storage_policy_index)
                for row in winners
                if (row.name, row.storage_policy_index) in existing
            ],
        )
        connection.executemany(
            "INSERT INTO object (name, created_at, size, content_type, etag, deleted,"
            " storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
            winners,
        )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _existing_rows(
    connection: sqlite3.Connection, names: list[str]
) -> dict[tuple[str, int], ObjectRow]:
    existing: dict[tuple[str, int], ObjectRow] = {}
    for start in range(0, len(names), _SQLITE_ARGS_MAX):
        chunk = names[start : start + _SQLITE_ARGS_MAX]
        query = (
            "SELECT name, created_at, size, content_type, etag, deleted, storage_policy_index"
            f" FROM object WHERE name IN ({','.join('?' * len(chunk))})"
        )
        for found in connection.execute(query, chunk):
            row = ObjectRow(*found)
            existing[(row.name, row.storage_policy_index)] = row
    return existing


def list_objects(
    connection: sqlite3.Connection, params: ListingParams, policy_index: int
) -> list[dict]:
    """The listing as Swift's JSON rows: ``{name, hash, bytes, content_type, last_modified}``
    and ``{subdir}``."""

    def fetch(lower: str | None, inclusive: bool, upper: str | None, descending: bool, count: int):
        conditions = ["deleted = 0", "storage_policy_index = ?"]
        args: list[object] = [policy_index]
        if lower is not None:
            conditions.append("name >= ?" if inclusive else "name > ?")
            args.append(lower)
        if upper is not None:
            conditions.append("name < ?")
            args.append(upper)
        order = "DESC" if descending else "ASC"
        query = (
            "SELECT name, created_at, size, content_type, etag FROM object"
            f" WHERE {' AND '.join(conditions)} ORDER BY name {order} LIMIT ?"
        )
        return connection.execute(query, [*args, count])  # lazy: see listing.Fetch

    entries = list_entries(params, fetch)
    return [_object_json(entry) for entry in entries]


def _object_json(entry) -> dict:
    if isinstance(entry, Subdir):
        return {"subdir": entry.name}
    name, created_at, size, content_type, etag = entry
    return {
        "name": name,
        "hash": etag,
        "bytes": size,
        "content_type": content_type,
        "last_modified": Timestamp.parse(created_at).iso(),
    }


# --- replication --------------------------------------------------------------------------------
def get_items(connection: sqlite3.Connection, since_rowid: int, count: int) -> list[dict]:
    """Rows (deleted ones included) with ROWID > ``since_rowid``, in ROWID order."""
    rows = connection.execute(
        "SELECT ROWID, name, created_at, size, content_type, etag, deleted, storage_policy_index"
        " FROM object WHERE ROWID > ? ORDER BY ROWID LIMIT ?",
        (since_rowid, count),
    ).fetchall()
    keys = (
        "rowid",
        "name",
        "created_at",
        "size",
        "content_type",
        "etag",
        "deleted",
        "storage_policy_index",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def merge_info(connection: sqlite3.Connection, other: dict) -> None:
    """Merge another replica's info (timestamps by max, metadata per key) into this one.

    Raises ValueError on a malformed ``other`` (checked whole first: nothing is changed)."""
    incoming = parse_incoming_info(other, ("put_timestamp", "delete_timestamp"))
    put = incoming.timestamps["put_timestamp"] or ZERO
    delete = incoming.timestamps["delete_timestamp"] or ZERO
    connection.execute("BEGIN IMMEDIATE")
    try:
        info = get_info(connection)
        connection.execute(
            "UPDATE container_info SET put_timestamp = MAX(put_timestamp, ?),"
            " delete_timestamp = MAX(delete_timestamp, ?), metadata = ?",
            (put, delete, merge_metadata(info.metadata, incoming.metadata)),
        )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
