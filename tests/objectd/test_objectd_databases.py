"""Containers and accounts over HTTP: Swift's account and container server behaviour.

Method: one objectd per module; every test uses its own account or container names; object rows
are written the way object servers write them (``X-Backend-Server-Type: container``).
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from objectd_helpers import ts


def _c(account: str, container: str, obj: str | None = None) -> str:
    path = f"/sda/3/{urllib.parse.quote(account)}/{urllib.parse.quote(container)}"
    return path + (f"/{urllib.parse.quote(obj)}" if obj else "")


def _row(objectd, account, container, name, size=1, *, deleted=False, stamp=None, policy=0):
    headers = {
        "X-Timestamp": stamp or ts(),
        "X-Backend-Server-Type": "container",
        "X-Backend-Storage-Policy-Index": str(policy),
    }
    if deleted:
        return objectd.request("DELETE", _c(account, container, name), headers=headers)
    headers.update({"X-Size": str(size), "X-Content-Type": "text/plain", "X-Etag": "e" * 32})
    return objectd.request("PUT", _c(account, container, name), headers=headers)


def _make_container(objectd, account, container, **headers):
    response = objectd.request(
        "PUT", _c(account, container), headers={"X-Timestamp": ts(), **headers}
    )
    assert response.status_code in (201, 202), response.text
    return response


def test_container_put_creates_then_accepts(objectd, unique):
    assert _make_container(objectd, "AUTH_x", unique).status_code == 201
    assert _make_container(objectd, "AUTH_x", unique).status_code == 202


def test_container_head_reports_counts_timestamps_and_metadata(objectd, unique):
    _make_container(
        objectd, "AUTH_x", unique, **{"X-Container-Meta-Color": "red", "X-Container-Read": ".r:*"}
    )
    _row(objectd, "AUTH_x", unique, "a", 10)
    _row(objectd, "AUTH_x", unique, "b", 5)
    head = objectd.request("HEAD", _c("AUTH_x", unique))
    assert head.status_code == 204
    assert head.headers["X-Container-Object-Count"] == "2"
    assert head.headers["X-Container-Bytes-Used"] == "15"
    assert head.headers["X-Container-Meta-Color"] == "red"
    assert head.headers["X-Container-Read"] == ".r:*"
    assert head.headers["X-Backend-Storage-Policy-Index"] == "0"


def test_container_post_updates_and_removes_metadata(objectd, unique):
    _make_container(
        objectd, "AUTH_x", unique, **{"X-Container-Meta-A": "1", "X-Container-Meta-B": "2"}
    )
    headers = {
        "X-Timestamp": ts(),
        "X-Container-Meta-A": "",
        "X-Remove-Container-Meta-B": "x",
        "X-Container-Meta-C": "3",
    }
    assert objectd.request("POST", _c("AUTH_x", unique), headers=headers).status_code == 204
    head = objectd.request("HEAD", _c("AUTH_x", unique)).headers
    assert "X-Container-Meta-A" not in head and "X-Container-Meta-B" not in head
    assert head["X-Container-Meta-C"] == "3"


def test_older_metadata_update_does_not_win(objectd, unique):
    older = ts()
    _make_container(objectd, "AUTH_x", unique, **{"X-Container-Meta-A": "new"})
    objectd.request(
        "POST", _c("AUTH_x", unique), headers={"X-Timestamp": older, "X-Container-Meta-A": "old"}
    )
    assert objectd.request("HEAD", _c("AUTH_x", unique)).headers["X-Container-Meta-A"] == "new"


def test_object_row_overwrite_and_delete_update_counts(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    _row(objectd, "AUTH_x", unique, "o", 100)
    _row(objectd, "AUTH_x", unique, "o", 7)
    assert objectd.request("HEAD", _c("AUTH_x", unique)).headers["X-Container-Bytes-Used"] == "7"
    assert _row(objectd, "AUTH_x", unique, "o", deleted=True).status_code == 204
    head = objectd.request("HEAD", _c("AUTH_x", unique)).headers
    assert head["X-Container-Object-Count"] == "0" and head["X-Container-Bytes-Used"] == "0"


def test_an_older_row_does_not_replace_a_newer_one(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    older = ts()
    _row(objectd, "AUTH_x", unique, "o", 5)
    _row(objectd, "AUTH_x", unique, "o", deleted=True, stamp=older)
    assert [r["name"] for r in objectd.request("GET", _c("AUTH_x", unique)).json()] == ["o"]


def test_delete_of_a_non_empty_container_is_409(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    _row(objectd, "AUTH_x", unique, "o")
    assert (
        objectd.request("DELETE", _c("AUTH_x", unique), headers={"X-Timestamp": ts()}).status_code
        == 409
    )
    _row(objectd, "AUTH_x", unique, "o", deleted=True)
    assert (
        objectd.request("DELETE", _c("AUTH_x", unique), headers={"X-Timestamp": ts()}).status_code
        == 204
    )
    assert objectd.request("HEAD", _c("AUTH_x", unique)).status_code == 404
    assert objectd.request("GET", _c("AUTH_x", unique)).status_code == 404
    assert (
        objectd.request("DELETE", _c("AUTH_x", unique), headers={"X-Timestamp": ts()}).status_code
        == 404
    )


def test_a_deleted_container_can_be_recreated_with_another_policy(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    objectd.request("DELETE", _c("AUTH_x", unique), headers={"X-Timestamp": ts()})
    response = _make_container(objectd, "AUTH_x", unique, **{"X-Backend-Storage-Policy-Index": "1"})
    assert response.status_code == 201
    assert (
        objectd.request("HEAD", _c("AUTH_x", unique)).headers["X-Backend-Storage-Policy-Index"]
        == "1"
    )


def test_a_live_container_of_another_policy_is_409(objectd, unique):
    _make_container(objectd, "AUTH_x", unique, **{"X-Backend-Storage-Policy-Index": "0"})
    headers = {"X-Timestamp": ts(), "X-Backend-Storage-Policy-Index": "2"}
    response = objectd.request("PUT", _c("AUTH_x", unique), headers=headers)
    assert response.status_code == 409
    assert response.headers["X-Backend-Storage-Policy-Index"] == "0"


def test_rows_of_another_policy_are_not_listed(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    _row(objectd, "AUTH_x", unique, "mine")
    _row(objectd, "AUTH_x", unique, "misplaced", policy=3)
    assert [r["name"] for r in objectd.request("GET", _c("AUTH_x", unique)).json()] == ["mine"]


def test_row_for_a_missing_container_is_404_unless_auto_created(objectd, unique):
    assert _row(objectd, "AUTH_x", unique, "o").status_code == 404
    assert _row(objectd, ".expiring_objects", unique, "1700000000-a/c/o").status_code == 201
    listing = objectd.request("GET", _c(".expiring_objects", unique)).json()
    assert [row["name"] for row in listing] == ["1700000000-a/c/o"]


def test_listing_json_rows_have_swift_fields(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    stamp = "1700000000.12345"
    _row(objectd, "AUTH_x", unique, "ünï/code", 42, stamp=stamp)
    (row,) = objectd.request("GET", _c("AUTH_x", unique)).json()
    assert row == {
        "name": "ünï/code",
        "hash": "e" * 32,
        "bytes": 42,
        "content_type": "text/plain",
        "last_modified": "2023-11-14T22:13:20.123450",
    }


def test_listing_parameters(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    for name in ("a", "b/1", "b/2", "c", "d/x/y"):
        _row(objectd, "AUTH_x", unique, name)

    def names(**params):
        query = urllib.parse.urlencode(params)
        return [
            r.get("name", r.get("subdir"))
            for r in objectd.request("GET", _c("AUTH_x", unique) + "?" + query).json()
        ]

    assert names() == ["a", "b/1", "b/2", "c", "d/x/y"]
    assert names(delimiter="/") == ["a", "b/", "c", "d/"]
    assert names(prefix="b/") == ["b/1", "b/2"]
    assert names(marker="b/1", end_marker="d") == ["b/2", "c"]
    assert names(limit=2) == ["a", "b/1"]
    assert names(reverse="true", limit=2) == ["d/x/y", "c"]
    assert names(reverse="true", delimiter="/") == ["d/", "c", "b/", "a"]
    assert names(prefix="d/", delimiter="/") == ["d/x/"]


@pytest.mark.parametrize("query", ["limit=10001", "limit=-1", "delimiter=ab", "limit=x"])
def test_bad_listing_parameters_are_412(objectd, unique, query):
    _make_container(objectd, "AUTH_x", unique)
    assert objectd.request("GET", _c("AUTH_x", unique) + "?" + query).status_code == 412


def test_container_put_reports_to_the_account_and_the_account_lists_it(objectd, unique):
    account = f"AUTH_{unique}"
    assert (
        objectd.request("PUT", f"/sda/3/{account}", headers={"X-Timestamp": ts()}).status_code
        == 201
    )
    target = {
        "X-Account-Host": f"127.0.0.1:{objectd.port}",
        "X-Account-Device": "sda",
        "X-Account-Partition": "3",
    }
    for name in ("c1", "c2"):
        _make_container(objectd, account, name, **target)
    _row(objectd, account, "c1", "o", 11)
    _make_container(objectd, account, "c1", **target)  # a later PUT reports fresh counts
    head = objectd.request("HEAD", f"/sda/3/{account}")
    assert head.status_code == 204
    assert head.headers["X-Account-Container-Count"] == "2"
    assert head.headers["X-Account-Object-Count"] == "1"
    assert head.headers["X-Account-Bytes-Used"] == "11"
    assert head.headers["X-Backend-Storage-Policy-0-Container-Count"] == "2"
    listing = objectd.request("GET", f"/sda/3/{account}").json()
    assert [(r["name"], r["count"], r["bytes"]) for r in listing] == [("c1", 1, 11), ("c2", 0, 0)]
    objectd.request("DELETE", _c(account, "c2"), headers={"X-Timestamp": ts(), **target})
    assert [r["name"] for r in objectd.request("GET", f"/sda/3/{account}").json()] == ["c1"]


def test_container_put_is_404_when_the_account_does_not_exist(objectd, unique):
    target = {
        "X-Account-Host": f"127.0.0.1:{objectd.port}",
        "X-Account-Device": "sda",
        "X-Account-Partition": "3",
    }
    response = objectd.request(
        "PUT", _c(f"AUTH_{unique}", "c"), headers={"X-Timestamp": ts(), **target}
    )
    assert response.status_code == 404


def test_account_lifecycle(objectd, unique):
    path = f"/sda/3/AUTH_{unique}"
    assert objectd.request("HEAD", path).status_code == 404
    assert (
        objectd.request(
            "PUT", path, headers={"X-Timestamp": ts(), "X-Account-Meta-Q": "1"}
        ).status_code
        == 201
    )
    assert objectd.request("PUT", path, headers={"X-Timestamp": ts()}).status_code == 202
    assert (
        objectd.request(
            "POST", path, headers={"X-Timestamp": ts(), "X-Account-Meta-R": "2"}
        ).status_code
        == 204
    )
    head = objectd.request("HEAD", path).headers
    assert head["X-Account-Meta-Q"] == "1" and head["X-Account-Meta-R"] == "2"
    assert head["X-Account-Container-Count"] == "0"
    assert objectd.request("GET", path).json() == []
    assert objectd.request("DELETE", path, headers={"X-Timestamp": ts()}).status_code == 204
    gone = objectd.request("HEAD", path)
    assert gone.status_code == 404 and gone.headers["X-Account-Status"] == "Deleted"
    assert objectd.request("PUT", path, headers={"X-Timestamp": ts()}).status_code == 403


REPLICATE = {"X-Backend-Replicate": "true"}


def test_replicate_merge_items_and_get_items(objectd, unique):
    _make_container(objectd, "AUTH_x", unique)
    items = [
        {
            "name": "r1",
            "created_at": "1700000000.00001",
            "size": 1,
            "content_type": "a/b",
            "etag": "x",
            "deleted": 0,
        },
        {
            "name": "r2",
            "created_at": "1700000000.00002",
            "size": 2,
            "content_type": "a/b",
            "etag": "y",
            "deleted": 0,
        },
        {"name": "r1", "created_at": "1700000000.00003", "deleted": 1},
    ]
    body = json.dumps({"op": "merge_items", "items": items})
    assert (
        objectd.request("POST", _c("AUTH_x", unique), headers=REPLICATE, data=body).status_code
        == 204
    )
    assert [r["name"] for r in objectd.request("GET", _c("AUTH_x", unique)).json()] == ["r2"]
    got = objectd.request(
        "POST",
        _c("AUTH_x", unique),
        headers=REPLICATE,
        data=json.dumps({"op": "get_items", "since": 0}),
    )
    assert {(r["name"], r["deleted"]) for r in got.json()} == {("r1", 1), ("r2", 0)}
    info = objectd.request(
        "POST", _c("AUTH_x", unique), headers=REPLICATE, data=json.dumps({"op": "get_info"})
    ).json()
    assert info["object_count"] == 1 and info["container"] == unique


STAMP = "1700000000.00001"

BAD_INFOS = [
    ["not", "an", "object"],
    {"put_timestamp": "yesterday"},
    {"put_timestamp": ""},
    {"delete_timestamp": 17.5e20},
    {"put_timestamp": [STAMP]},
    {"put_timestamp": {"t": STAMP}},
    {"delete_timestamp": []},
    {"delete_timestamp": {}},
    {"put_timestamp": True},
    {"put_timestamp": float("inf")},  # json.dumps writes Infinity, which json.loads reads
    {"put_timestamp": float("nan")},
    {"metadata": "{not json"},
    {"metadata": '{"X-Container-Meta-K": 5}'},
    {"metadata": "[]"},
    {"metadata": '"x"'},
    {"metadata": "5"},
    {"metadata": {"k": ["v", STAMP]}},  # an object, not the JSON text of one
    {"metadata": json.dumps({"X-Container-Meta-K": "ab"})},
    {"metadata": json.dumps({"k": [1, 2]})},
    {"metadata": json.dumps({"k": ["v"]})},
    {"metadata": json.dumps({"k": ["v", STAMP, "extra"]})},
    {"metadata": json.dumps({"k": ["v", "yesterday"]})},
    {"metadata": json.dumps({"k": ["v", None]})},
    {"metadata": json.dumps({"k": [None, STAMP]})},
    {"metadata": json.dumps({"k": ["a\r\nX-Injected: 1", STAMP]})},  # every HEAD would 500
    {"metadata": json.dumps({"": ["v", STAMP]})},
    # one good key does not carry a bad one in with it
    {"metadata": json.dumps({"a": ["v", STAMP], "k": ["v", 5]})},
]


def _database_path(objectd, unique: str, kind: str) -> str:
    """A fresh account (with a container holding metadata, for ``kind == "container"``)."""
    account = f"AUTH_{unique}"
    assert objectd.request("PUT", f"/sda/3/{account}", headers={"X-Timestamp": ts()}).ok
    if kind == "container":
        _make_container(objectd, account, unique, **{"X-Container-Meta-Color": "red"})
        return _c(account, unique)
    return f"/sda/3/{account}"


def _replicated_info(objectd, path: str) -> dict:
    answer = objectd.request("POST", path, headers=REPLICATE, data=json.dumps({"op": "get_info"}))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("info", BAD_INFOS, ids=[json.dumps(info) for info in BAD_INFOS])
@pytest.mark.parametrize("kind", ["container", "account"])
def test_replicate_merge_info_with_a_bad_info_is_400_and_changes_nothing(
    objectd, unique, kind, info
):
    path = _database_path(objectd, unique, kind)
    before = _replicated_info(objectd, path)
    body = json.dumps({"op": "merge_info", "info": info})
    answer = objectd.request("POST", path, headers=REPLICATE, data=body)
    assert answer.status_code == 400, answer.text
    assert _replicated_info(objectd, path) == before


@pytest.mark.parametrize(
    "info",
    [
        {"status_changed_at": [STAMP]},
        {"status_changed_at": "yesterday"},
        {"created_at": {"t": STAMP}},
        {"created_at": "yesterday"},
    ],
)
def test_replicate_merge_info_with_bad_account_only_timestamps_is_400(objectd, unique, info):
    path = _database_path(objectd, unique, "account")
    before = _replicated_info(objectd, path)
    body = json.dumps({"op": "merge_info", "info": info})
    answer = objectd.request("POST", path, headers=REPLICATE, data=body)
    assert answer.status_code == 400, answer.text
    assert _replicated_info(objectd, path) == before


@pytest.mark.parametrize("kind", ["container", "account"])
def test_replicate_merge_info_null_timestamps_are_none_and_good_metadata_merges(
    objectd, unique, kind
):
    """null (or absent) timestamps mean "none": they merge nothing, the rest of the info does."""
    path = _database_path(objectd, unique, kind)
    before = _replicated_info(objectd, path)
    newer = ts()
    info = {
        "put_timestamp": None,
        "delete_timestamp": None,
        "status_changed_at": None,
        "created_at": None,
        "metadata": json.dumps({"X-Meta-New": ["v", newer]}),
    }
    body = json.dumps({"op": "merge_info", "info": info})
    answer = objectd.request("POST", path, headers=REPLICATE, data=body)
    assert answer.status_code == 204, answer.text
    after = _replicated_info(objectd, path)
    metadata = json.loads(after.pop("metadata"))
    assert metadata.pop("X-Meta-New") == ["v", newer]
    assert metadata == json.loads(before.pop("metadata"))
    assert after == before


# --- merge_items: a peer's rows are checked whole before any write ------------------------------
ABSENT = object()
"""A field left out of the item."""

GOOD_OBJECT_ITEM = {
    "name": "o",
    "created_at": STAMP,
    "size": 3,
    "content_type": "a/b",
    "etag": "e",
    "deleted": 0,
    "storage_policy_index": 0,
}
GOOD_CONTAINER_ITEM = {
    "name": "c",
    "put_timestamp": STAMP,
    "delete_timestamp": "0000000000.00000",
    "object_count": 2,
    "bytes_used": 5,
    "storage_policy_index": 0,
    "stats_timestamp": STAMP,
}
NOT_OBJECTS = ["o", 5, None, True, [GOOD_OBJECT_ITEM]]
BAD_NAMES = [ABSENT, None, "", 5, ["o"], {"n": "o"}, "a\0b"]
BAD_TIMESTAMPS = ["yesterday", "", [STAMP], {"t": STAMP}, True, -1, float("inf"), float("nan")]
BAD_COUNTS = [None, -1, "5", 1.5, True, [1], 2**63]
BAD_OBJECT_FIELDS = {
    "name": BAD_NAMES,
    "created_at": [ABSENT, None, *BAD_TIMESTAMPS],
    "size": BAD_COUNTS,
    "content_type": [None, 5, ["a/b"]],
    "etag": [None, 5, {"e": 1}],
    "deleted": [None, 2, -1, True, "1", 0.5],
    "storage_policy_index": BAD_COUNTS,
}
BAD_CONTAINER_FIELDS = {
    "name": BAD_NAMES,
    "put_timestamp": BAD_TIMESTAMPS,
    "delete_timestamp": BAD_TIMESTAMPS,
    "stats_timestamp": BAD_TIMESTAMPS,
    "object_count": BAD_COUNTS,
    "bytes_used": BAD_COUNTS,
    "storage_policy_index": BAD_COUNTS,
    "deleted": [None, 2, True, "0"],  # derived, so ignored; but if sent, 0 or 1
}


def _with(good: dict, field: str, value: object) -> dict:
    item = {key: item for key, item in good.items() if key != field}
    if value is not ABSENT:
        item[field] = value
    return item


def _bad_item_cases() -> list:
    cases = []
    for kind, good, fields in (
        ("container", GOOD_OBJECT_ITEM, BAD_OBJECT_FIELDS),
        ("account", GOOD_CONTAINER_ITEM, BAD_CONTAINER_FIELDS),
    ):
        for value in NOT_OBJECTS:
            cases.append(pytest.param(kind, value, None, id=f"{kind}-item={value!r}"))
        for field, values in fields.items():
            for value in values:
                label = "absent" if value is ABSENT else repr(value)
                case = pytest.param(
                    kind, _with(good, field, value), field, id=f"{kind}-{field}={label}"
                )
                cases.append(case)
    return cases


def _database_state(objectd, path: str) -> tuple:
    """What a merge could change: the info, every row (deleted ones too) and the listing."""
    items = objectd.request(
        "POST", path, headers=REPLICATE, data=json.dumps({"op": "get_items", "since": 0})
    )
    listing = objectd.request("GET", path)
    assert items.status_code == 200 and listing.status_code == 200, (items.text, listing.text)
    return _replicated_info(objectd, path), items.json(), listing.json()


def _merge_items(objectd, path: str, items: object):
    body = json.dumps({"op": "merge_items", "items": items})
    return objectd.request("POST", path, headers=REPLICATE, data=body)


@pytest.mark.parametrize("after_a_good_item", [False, True], ids=["alone", "after-a-good-item"])
@pytest.mark.parametrize(("kind", "item", "field"), _bad_item_cases())
def test_replicate_merge_items_with_a_bad_item_is_400_and_merges_nothing(
    objectd, unique, kind, item, field, after_a_good_item
):
    path = _database_path(objectd, unique, kind)
    good = GOOD_OBJECT_ITEM if kind == "container" else GOOD_CONTAINER_ITEM
    assert _merge_items(objectd, path, [good]).status_code == 204  # a row the bad batch must keep
    before = _database_state(objectd, path)
    newer = (
        {**good, "name": "new", "object_count": 1} if kind == "account" else {**good, "name": "new"}
    )
    batch = [newer, item] if after_a_good_item else [item]
    answer = _merge_items(objectd, path, batch)
    assert answer.status_code == 400, answer.text
    index = 1 if after_a_good_item else 0
    assert f"item {index}:" in answer.text, answer.text
    if field is not None:
        assert f"{field}:" in answer.text, answer.text
    assert _database_state(objectd, path) == before


@pytest.mark.parametrize("items", [None, "o", {"name": "o"}, 5])
@pytest.mark.parametrize("kind", ["container", "account"])
def test_replicate_merge_items_that_are_not_a_list_are_400(objectd, unique, kind, items):
    path = _database_path(objectd, unique, kind)
    before = _database_state(objectd, path)
    answer = _merge_items(objectd, path, items)
    assert answer.status_code == 400, answer.text
    assert _database_state(objectd, path) == before


def test_replicate_merge_items_of_an_account_accepts_what_get_items_sends(objectd, unique):
    """Well-formed rows still merge as before: null or absent timestamps are none, numbers are
    timestamps, unknown keys (``rowid``) are ignored, ``deleted`` is derived."""
    path = _database_path(objectd, unique, "account")
    items = [
        {**GOOD_CONTAINER_ITEM, "name": "c1", "rowid": 7, "deleted": 0},
        {"name": "c2", "put_timestamp": 1700000000.5, "delete_timestamp": None},
        {"name": "c3", "put_timestamp": STAMP, "delete_timestamp": "1700000000.00002"},
    ]
    answer = _merge_items(objectd, path, items)
    assert answer.status_code == 204, answer.text
    rows = {row.pop("name"): row for row in _database_state(objectd, path)[1]}
    assert rows["c1"]["object_count"] == 2 and rows["c1"]["bytes_used"] == 5
    assert rows["c2"]["put_timestamp"] == "1700000000.50000"
    assert rows["c2"]["delete_timestamp"] == rows["c1"]["delete_timestamp"] == "0000000000.00000"
    assert rows["c2"]["stats_timestamp"] == "1700000000.50000"
    assert rows["c3"]["stats_timestamp"] == "1700000000.00002"
    listing = objectd.request("GET", path).json()
    assert [row["name"] for row in listing] == ["c1", "c2"]  # c3 is deleted and empty


def test_missing_timestamp_on_database_writes_is_400(objectd, unique):
    assert objectd.request("PUT", _c("AUTH_x", unique)).status_code == 400
    assert objectd.request("PUT", f"/sda/3/AUTH_{unique}").status_code == 400
