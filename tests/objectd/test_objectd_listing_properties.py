"""Listings equal a plain in-memory model, for random names (non-ASCII included) and random
prefix/delimiter/marker/end_marker/limit/reverse/path; row merges converge in any order.

Method: the model below is the specification. It is compared with (1) the listing algorithm
over the real SQLite container schema, in-process and for many examples, and (2) a real objectd
over HTTP, for fewer examples. Merges are applied to real SQLite databases in random orders,
with duplicates and random batching, and the resulting tables must be identical.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import urllib.parse
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from objectd_helpers import ts

from objectd import account_db, container_db
from objectd.account_db import ContainerRow
from objectd.container_db import ObjectRow
from objectd.db import merge_metadata_json, update_metadata, visible_metadata
from objectd.listing import ListingParams
from shoal.timestamp import Timestamp

# names: ASCII, the usual delimiters ("0" follows "/"), accented letters, CJK and an astral-plane emoji
ALPHABET = st.sampled_from([*"ab/-.0", "é", "ü", "日", "本", "😀", "z"])
NAMES = st.text(ALPHABET, min_size=1, max_size=8)
DELIMITERS = st.sampled_from(["", "/", "-", "é"])


def _in_bounds(names: set[str], prefix: str, params: ListingParams) -> list[str]:
    chosen = [name for name in sorted(names) if name.startswith(prefix)]
    if params.reverse:
        chosen = [n for n in chosen if (not params.marker or n < params.marker)]
        chosen = [n for n in chosen if (not params.end_marker or n > params.end_marker)]
    else:
        chosen = [n for n in chosen if (not params.marker or n > params.marker)]
        chosen = [n for n in chosen if (not params.end_marker or n < params.end_marker)]
    return chosen


def model_path_listing(names: set[str], params: ListingParams) -> list[str]:
    """``path=p`` (overrides prefix and delimiter): the names directly in the pseudo-directory
    ``p.rstrip('/') + '/'``: the rest after it is non-empty and has no ``/`` before its last
    character (``p/d/`` is a directory marker in ``p``, ``p/d/x`` is not in ``p``)."""
    assert params.path is not None
    prefix = params.path.rstrip("/") + "/" if params.path else ""
    chosen = [
        name
        for name in _in_bounds(names, prefix, params)
        if name != prefix and "/" not in name[len(prefix) : -1]
    ]
    return sorted(chosen, reverse=params.reverse)[: params.limit]


def model_listing(names: set[str], params: ListingParams) -> list[str]:
    """The specification: what a listing must contain, as names and subdirs (``a/``)."""
    if params.path is not None:
        return model_path_listing(names, params)
    prefix, delimiter = params.prefix, params.delimiter
    chosen = _in_bounds(names, prefix, params)
    lower_bound = params.end_marker if params.reverse else params.marker
    entries: set[str] = set()
    for name in chosen:
        end = name.find(delimiter, len(prefix)) if delimiter else -1
        if end < 0:
            entries.add(name)
        elif name[: end + 1] != lower_bound:
            entries.add(name[: end + 1])
    return sorted(entries, reverse=params.reverse)[: params.limit]


@st.composite
def listing_cases(draw):
    names = draw(st.sets(NAMES, min_size=0, max_size=25))
    pool = sorted(names) or ["a"]

    def near_name():
        return st.one_of(
            st.just(""), st.sampled_from(pool), NAMES, st.sampled_from(pool).map(lambda n: n[:2])
        )

    params = ListingParams(
        prefix=draw(
            st.one_of(st.just(""), st.sampled_from(pool).map(lambda n: n[: len(n) // 2]), NAMES)
        ),
        delimiter=draw(DELIMITERS),
        marker=draw(near_name()),
        end_marker=draw(near_name()),
        limit=draw(st.integers(0, 30)),
        reverse=draw(st.booleans()),
        path=draw(  # a third of the cases: the other parameters keep most of the examples
            st.none()
            if draw(st.sampled_from([False, False, True])) is False
            else st.one_of(
                st.just(""),
                st.sampled_from(pool).map(lambda n: n[: n.rfind("/") + 1]),  # "" or "a/b/"
                st.sampled_from(pool).map(lambda n: n.rstrip("/").rpartition("/")[0]),  # "a"
                NAMES,
            )
        ),
    )
    return names, params


def _container_db() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript("BEGIN;" + container_db.SCHEMA + "COMMIT;")
    container_db.initializer("a", "c", Timestamp(1), 0, "{}")(connection)
    return connection


def _names_of(items: list[dict]) -> list[str]:
    return [item.get("name", item.get("subdir")) for item in items]


@settings(max_examples=900, deadline=None)
@given(listing_cases())
def test_listing_equals_the_model_over_sqlite(case):
    names, params = case
    connection = _container_db()
    rows = [ObjectRow(name, ts(), 1, "t", "e", 0, 0) for name in names]
    container_db.merge_objects(connection, rows)
    assert _names_of(container_db.list_objects(connection, params, 0)) == model_listing(
        names, params
    )


@settings(max_examples=200, deadline=None)
@given(listing_cases())
def test_account_listing_equals_the_model(case):
    names, params = case
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript("BEGIN;" + account_db.SCHEMA + "COMMIT;")
    account_db.initializer("a", Timestamp(1), "{}")(connection)
    stamp = ts()
    account_db.merge_containers(
        connection, [ContainerRow(n, stamp, "0", 0, 0, 0, stamp) for n in names]
    )
    assert _names_of(account_db.list_containers(connection, params)) == model_listing(names, params)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=listing_cases(), more=st.lists(listing_cases(), min_size=2, max_size=2))
def test_listing_over_http_equals_the_model(objectd, case, more):
    names, params = case
    container = f"prop-{uuid.uuid4().hex}"  # not random: hypothesis seeds it per example
    path = f"/sda/4/AUTH_prop/{container}"
    assert objectd.request("PUT", path, headers={"X-Timestamp": ts()}).status_code == 201
    items = [
        {"name": n, "created_at": ts(), "size": 1, "etag": "e", "content_type": "t"} for n in names
    ]
    response = objectd.request(
        "POST",
        path,
        headers={"X-Backend-Replicate": "true"},
        data=json.dumps({"op": "merge_items", "items": items}),
    )
    assert response.status_code == 204
    for other in [params] + [p for _, p in more]:  # several listings of the same container
        query = {"format": "json", "limit": str(other.limit), "reverse": str(other.reverse).lower()}
        for key in ("prefix", "delimiter", "marker", "end_marker"):
            if getattr(other, key):
                query[key] = getattr(other, key)
        if other.path is not None:  # an empty path is a parameter too: the top level
            query["path"] = other.path
        got = objectd.request(
            "GET", path + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        )
        assert got.status_code == 200
        assert _names_of(got.json()) == model_listing(names, other)


# --- merges converge ----------------------------------------------------------------------------
STAMPS = st.sampled_from(
    ["1700000000.00001", "1700000000.00002", "1700000000.00002_0000000000000001"]
)
OBJECT_ROWS = st.builds(
    ObjectRow,
    name=st.sampled_from(["x", "y", "ü/z"]),
    created_at=STAMPS,
    size=st.integers(0, 3),
    content_type=st.sampled_from(["a/b", "c/d"]),
    etag=st.sampled_from(["e1", "e2"]),
    deleted=st.integers(0, 1),
    storage_policy_index=st.integers(0, 1),
)


def _table(connection: sqlite3.Connection) -> tuple[list[tuple], list[tuple]]:
    rows = connection.execute(
        "SELECT name, created_at, size, content_type, etag, deleted, storage_policy_index"
        " FROM object ORDER BY 1, 7"
    ).fetchall()
    stats = connection.execute(
        "SELECT * FROM policy_stat WHERE object_count OR bytes_used ORDER BY 1"
    ).fetchall()
    return rows, stats


def _merge_in_batches(rows: list, seed: int, merge, make) -> sqlite3.Connection:
    rng = random.Random(seed)
    shuffled = rows + rng.sample(rows, k=len(rows) // 2)  # duplicates: idempotence
    rng.shuffle(shuffled)  # order: commutativity
    connection = make()
    position = 0
    while position < len(shuffled):  # random batches: associativity
        size = rng.randint(1, 4)
        merge(connection, shuffled[position : position + size])
        position += size
    return connection


@settings(max_examples=300, deadline=None)
@given(st.lists(OBJECT_ROWS, max_size=14), st.integers(0, 2**32), st.integers(0, 2**32))
def test_object_row_merges_converge_regardless_of_order(rows, seed_a, seed_b):
    first = _table(_merge_in_batches(rows, seed_a, container_db.merge_objects, _container_db))
    second = _table(_merge_in_batches(rows, seed_b, container_db.merge_objects, _container_db))
    assert first == second
    expected = {}
    for row in rows:  # the model: per key, the greatest row
        key = (row.name, row.storage_policy_index)
        if key not in expected or row.merge_key() > expected[key].merge_key():
            expected[key] = row
    assert first[0] == sorted((tuple(r) for r in expected.values()), key=lambda r: (r[0], r[6]))
    live = [r for r in expected.values() if not r.deleted]
    counts = {
        p: (
            sum(1 for r in live if r.storage_policy_index == p),
            sum(r.size for r in live if r.storage_policy_index == p),
        )
        for p in (0, 1)
    }
    assert {p: (c, b) for p, c, b in first[1]} == {p: v for p, v in counts.items() if v != (0, 0)}


CONTAINER_ROWS = st.builds(
    ContainerRow,
    name=st.sampled_from(["c1", "c2"]),
    put_timestamp=STAMPS,
    delete_timestamp=st.sampled_from(["0000000000.00000", "1700000000.00002"]),
    object_count=st.integers(0, 2),
    bytes_used=st.integers(0, 2),
    storage_policy_index=st.integers(0, 1),
    stats_timestamp=STAMPS,
)


def _account_db() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript("BEGIN;" + account_db.SCHEMA + "COMMIT;")
    account_db.initializer("a", Timestamp(1), "{}")(connection)
    return connection


@settings(max_examples=300, deadline=None)
@given(st.lists(CONTAINER_ROWS, max_size=12), st.integers(0, 2**32), st.integers(0, 2**32))
def test_container_report_merges_converge_regardless_of_order(rows, seed_a, seed_b):
    def table(connection):
        query = f"SELECT {account_db._COLUMNS}, deleted FROM container ORDER BY 1"
        return connection.execute(query).fetchall(), account_db.get_info(connection).object_count

    first = table(_merge_in_batches(rows, seed_a, account_db.merge_containers, _account_db))
    second = table(_merge_in_batches(rows, seed_b, account_db.merge_containers, _account_db))
    assert first == second


METADATA_UPDATES = st.lists(
    st.tuples(
        st.sampled_from(["X-Container-Meta-A", "X-Container-Meta-B"]),
        st.sampled_from(["", "1", "2"]),
        STAMPS,
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(METADATA_UPDATES, st.integers(0, 2**32))
def test_metadata_merges_converge_regardless_of_order(updates, seed):
    def apply(order):
        document = "{}"
        for key, value, stamp in order:
            single = update_metadata("{}", {key: value}, Timestamp.parse(stamp))
            document = merge_metadata_json(document, single)
        return visible_metadata(document)

    shuffled = list(updates)
    random.Random(seed).shuffle(shuffled)
    assert apply(updates) == apply(shuffled)


def test_model_self_check_swift_examples():
    """Pin the model to Swift's documented behaviour on a few hand-made cases."""
    names = {"a", "b/1", "b/2", "c"}
    assert model_listing(names, ListingParams(delimiter="/")) == ["a", "b/", "c"]
    assert model_listing(names, ListingParams(delimiter="/", marker="b/")) == ["c"]
    assert model_listing(names, ListingParams(delimiter="/", marker="b/1")) == ["b/", "c"]
    assert model_listing(names, ListingParams(delimiter="/", reverse=True)) == ["c", "b/", "a"]
    assert model_listing(names, ListingParams(delimiter="/", reverse=True, marker="b/")) == ["a"]
    assert model_listing(names, ListingParams(limit=2)) == ["a", "b/1"]


def test_model_self_check_swift_path_examples():
    """``path``: Swift's pseudo-directories, with directory markers (``p/d/``) listed in ``p``."""
    names = {"p", "p/", "p/a", "p/d/", "p/d/x", "p/d0", "p/e/f/g", "q/z", "top"}
    assert model_listing(names, ListingParams(path="p")) == ["p/a", "p/d/", "p/d0"]
    assert model_listing(names, ListingParams(path="p//")) == ["p/a", "p/d/", "p/d0"]
    assert model_listing(names, ListingParams(path="p", prefix="q", delimiter="-")) == [
        "p/a",
        "p/d/",
        "p/d0",
    ]
    assert model_listing(names, ListingParams(path="p", reverse=True)) == ["p/d0", "p/d/", "p/a"]
    assert model_listing(names, ListingParams(path="p", marker="p/a", limit=1)) == ["p/d/"]
    assert model_listing(names, ListingParams(path="p/d")) == ["p/d/x"]
    assert model_listing(names, ListingParams(path="")) == ["p", "p/", "top"]


@settings(max_examples=300, deadline=None)
@given(listing_cases())
def test_path_listing_holds_the_same_names_both_ways(case):
    """A path listing and its reverse (no limit, no markers) hold the same names, over SQLite:
    a reversed listing must not lose a directory marker that has children."""
    names, params = case
    connection = _container_db()
    container_db.merge_objects(connection, [ObjectRow(n, ts(), 1, "t", "e", 0, 0) for n in names])
    forward = ListingParams(path=params.prefix if params.path is None else params.path)
    backward = dataclasses.replace(forward, reverse=True)
    listed = _names_of(container_db.list_objects(connection, forward, 0))
    assert _names_of(container_db.list_objects(connection, backward, 0)) == listed[::-1]


def test_path_is_parsed_for_containers_only():
    """Swift's container server honours ``path`` (an empty one too); its account server does
    not, so ``from_query`` takes it only when asked."""
    query = {"path": "", "prefix": "x"}
    assert ListingParams.from_query(query, allow_path=True).path == ""
    assert ListingParams.from_query(query).path is None
    assert ListingParams.from_query({"prefix": "x"}, allow_path=True).path is None
