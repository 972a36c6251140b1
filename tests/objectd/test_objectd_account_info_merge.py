"""Account info merges (what the DB replicator's ``merge_info`` does on account replicas) are
idempotent, commutative and associative, and equal a plain model: metadata per key newest
timestamp wins (an empty value is a removal that still wins), put/delete/status-change
timestamps by max, ``created_at`` by min, ``DELETED`` exactly when the newest delete is newer
than the newest put.

Method: random replica states are written into real SQLite account databases (the real schema,
in memory); the info crosses a JSON round trip as on the wire; merges run in random orders.
"""

from __future__ import annotations

import json
import sqlite3
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from objectd import account_db
from objectd.db import ZERO

STAMPS = st.sampled_from(
    [
        "1700000000.00001",
        "1700000000.00002",
        "1700000000.00002_0000000000000001",
        "1700000000.00003",
    ]
)
METADATA = st.dictionaries(
    st.sampled_from(["X-Account-Meta-Color", "X-Account-Meta-Size", "X-Account-Sysmeta-Owner"]),
    st.tuples(st.sampled_from(["", "red", "blue"]), STAMPS),
    max_size=3,
)


@st.composite
def replica_states(draw) -> dict:
    """A state a replica can be in: DELETED exactly when its delete is newer than its put
    (delete_account and put_account keep that true)."""
    put = draw(STAMPS)
    delete = draw(st.one_of(st.just(ZERO), STAMPS))
    created = draw(STAMPS.filter(lambda s: s <= put))
    return {
        "created_at": created,
        "put_timestamp": put,
        "delete_timestamp": delete,
        "status_changed_at": max(created, delete),
        "status": "DELETED" if delete > put else "",
        "metadata": {k: list(v) for k, v in draw(METADATA).items()},
    }


def _database(state: dict) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript("BEGIN;" + account_db.SCHEMA + "COMMIT;")
    connection.execute(
        "INSERT INTO account_info (account, created_at, put_timestamp, delete_timestamp,"
        " status_changed_at, status, id, metadata) VALUES ('a', ?, ?, ?, ?, ?, ?, ?)",
        (state["created_at"], state["put_timestamp"], state["delete_timestamp"],
         state["status_changed_at"], state["status"], uuid.uuid4().hex,
         json.dumps(state["metadata"])),
    )  # fmt: skip
    return connection


def _wire_info(connection: sqlite3.Connection) -> dict:
    """The info as the replicator sends it (db_replicator._local_info, then JSON)."""
    info = account_db.get_info(connection)
    return json.loads(json.dumps({f: getattr(info, f) for f in info.__dataclass_fields__}))


def _state(connection: sqlite3.Connection) -> dict:
    info = account_db.get_info(connection)
    return {
        "created_at": info.created_at,
        "put_timestamp": info.put_timestamp,
        "delete_timestamp": info.delete_timestamp,
        "status_changed_at": info.status_changed_at,
        "status": info.status,
        "metadata": json.loads(info.metadata),
    }


def _merged(states: list[dict]) -> dict:
    """Fold the states into the first one's database, in list order."""
    connection = _database(states[0])
    for other in states[1:]:
        account_db.merge_info(connection, _wire_info(_database(other)))
    return _state(connection)


def _model(states: list[dict]) -> dict:
    metadata: dict[str, list[str]] = {}
    for state in states:
        for key, (value, stamp) in state["metadata"].items():
            if key not in metadata or (stamp, value) > (metadata[key][1], metadata[key][0]):
                metadata[key] = [value, stamp]
    put = max(s["put_timestamp"] for s in states)
    delete = max(s["delete_timestamp"] for s in states)
    return {
        "created_at": min(s["created_at"] for s in states),
        "put_timestamp": put,
        "delete_timestamp": delete,
        "status_changed_at": max(s["status_changed_at"] for s in states),
        "status": "DELETED" if delete > put else "",
        "metadata": metadata,
    }


@settings(max_examples=300, deadline=None)
@given(replica_states(), replica_states())
def test_merge_is_commutative_and_idempotent(a, b):
    a_then_b = _merged([a, b])
    assert a_then_b == _merged([b, a])  # commutative
    assert a_then_b == _merged([a, b, b]) == _merged([a, a, b])  # idempotent
    assert _merged([a, a]) == _state(_database(a))  # merging itself changes nothing
    assert a_then_b == _model([a, b])


@settings(max_examples=200, deadline=None)
@given(st.lists(replica_states(), min_size=3, max_size=4), st.randoms(use_true_random=False))
def test_replicas_converge_whatever_the_order(states, rng):
    """Folding every replica's info in any order gives the same state: the model's."""
    shuffled = list(states)
    rng.shuffle(shuffled)
    assert _merged(states) == _merged(shuffled) == _model(states)


def test_a_removal_with_a_newer_timestamp_wins_and_stays_a_removal():
    red = {**_base(), "metadata": {"X-Account-Meta-Color": ["red", "1700000000.00002"]}}
    removed = {**_base(), "metadata": {"X-Account-Meta-Color": ["", "1700000000.00003"]}}
    for order in ([red, removed], [removed, red]):
        assert _merged(order)["metadata"] == {"X-Account-Meta-Color": ["", "1700000000.00003"]}


def test_a_newer_put_wins_over_a_delete_and_a_newer_delete_over_a_put():
    deleted = {**_base(), "delete_timestamp": "1700000000.00002", "status": "DELETED",
               "status_changed_at": "1700000000.00002"}  # fmt: skip
    put_later = {**_base(), "put_timestamp": "1700000000.00003"}
    put_earlier = _base()
    assert _merged([deleted, put_later])["status"] == ""
    assert _merged([put_later, deleted])["status"] == ""
    assert _merged([deleted, put_earlier])["status"] == "DELETED"
    assert _merged([put_earlier, deleted])["status"] == "DELETED"


def _base() -> dict:
    return {
        "created_at": "1700000000.00001",
        "put_timestamp": "1700000000.00001",
        "delete_timestamp": ZERO,
        "status_changed_at": "1700000000.00001",
        "status": "",
        "metadata": {},
    }
