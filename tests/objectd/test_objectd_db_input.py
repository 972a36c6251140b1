"""Malformed input to the account and container servers is a 400 naming the problem, and changes
nothing: ``get_items`` arguments, replication bodies, and a container's report to its account.

Method: one real objectd for the module (the ``objectd`` fixture); each test makes its own account
(and container), records everything a write could change, sends the bad request, and checks the
400 and that the record is the same. ``merge_info`` and ``merge_items`` are covered in
test_objectd_databases.py.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from objectd_helpers import ts

REPLICATE = {"X-Backend-Replicate": "true"}
STAMP = "1700000000.00001"
KINDS = ["container", "account"]


def _database_path(objectd, unique: str, kind: str) -> str:
    """A fresh account, or a container in one; each holding one row so get_items has something."""
    account = f"/sda/3/AUTH_{unique}"
    assert objectd.request("PUT", account, headers={"X-Timestamp": ts()}).status_code == 201
    if kind == "account":
        assert _report(objectd, account, "c0", {"X-Object-Count": "1"}).status_code == 201
        return account
    path = f"{account}/{urllib.parse.quote(unique)}"
    assert objectd.request("PUT", path, headers={"X-Timestamp": ts()}).status_code == 201
    row = {
        "X-Timestamp": ts(),
        "X-Backend-Server-Type": "container",
        "X-Size": "3",
        "X-Content-Type": "a/b",
        "X-Etag": "e" * 32,
    }
    assert objectd.request("PUT", f"{path}/o0", headers=row).status_code == 201
    return path


def _replicate(objectd, path: str, body: object):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return objectd.request("POST", path, headers=REPLICATE, data=data)


def _database_state(objectd, path: str) -> tuple:
    """What a write could change: the info, every row (deleted ones too), HEAD and the listing."""
    info = _replicate(objectd, path, {"op": "get_info"})
    items = _replicate(objectd, path, {"op": "get_items", "since": 0})
    head = objectd.request("HEAD", path)
    listing = objectd.request("GET", path)
    for answer in (info, items, listing):
        assert answer.status_code == 200, answer.text
    assert head.status_code == 204, head.text
    head_headers = {k: v for k, v in head.headers.items() if k not in ("Date", "X-Trans-Id")}
    return info.json(), items.json(), head_headers, listing.json()


# --- get_items: since and count are non-negative JSON integers ------------------------------------
BAD_COUNTS = [None, -1, "5", "x", 1.5, True, False, [1], {"n": 1}, 2**63]


@pytest.mark.parametrize("value", BAD_COUNTS, ids=[json.dumps(value) for value in BAD_COUNTS])
@pytest.mark.parametrize("field", ["since", "count"])
@pytest.mark.parametrize("kind", KINDS)
def test_replicate_get_items_with_a_bad_since_or_count_is_400(objectd, unique, kind, field, value):
    path = _database_path(objectd, unique, kind)
    before = _database_state(objectd, path)
    answer = _replicate(objectd, path, {"op": "get_items", field: value})
    assert answer.status_code == 400, answer.text
    assert f"get_items: {field}:" in answer.text, answer.text
    assert _database_state(objectd, path) == before


@pytest.mark.parametrize("kind", KINDS)
def test_replicate_get_items_since_and_count_still_page(objectd, unique, kind):
    path = _database_path(objectd, unique, kind)
    more = ["c1", "c2"] if kind == "account" else ["o1", "o2"]
    for name in more:
        if kind == "account":
            assert _report(objectd, path, name, {}).status_code == 201
        else:
            headers = {
                "X-Timestamp": ts(),
                "X-Backend-Server-Type": "container",
                "X-Size": "1",
                "X-Content-Type": "a/b",
                "X-Etag": "e" * 32,
            }
            assert objectd.request("PUT", f"{path}/{name}", headers=headers).status_code == 201
    everything = _replicate(objectd, path, {"op": "get_items"}).json()
    assert len(everything) == 3
    first = _replicate(objectd, path, {"op": "get_items", "since": 0, "count": 1}).json()
    assert first == everything[:1]
    since = everything[0]["rowid"]
    rest = _replicate(objectd, path, {"op": "get_items", "since": since, "count": 10}).json()
    assert rest == everything[1:]
    assert _replicate(objectd, path, {"op": "get_items", "count": 0}).json() == []


# --- the replication body itself -----------------------------------------------------------------
BAD_BODIES = [
    pytest.param(b"{not json", id="invalid-json"),
    pytest.param(
        b"",
        id="empty",
    ),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param([{"op": "get_info"}], id="a-list"),
    pytest.param("get_info", id="a-string"),
    pytest.param(5, id="a-number"),
    pytest.param(None, id="null"),
    pytest.param({}, id="no-op"),
    pytest.param({"op": None}, id="op-null"),
    pytest.param({"op": ["get_info"]}, id="op-a-list"),
    pytest.param({"op": "drop_table"}, id="unknown-op"),
    pytest.param({"op": "merge_info", "info": "x"}, id="merge_info-info-a-string"),
    pytest.param({"op": "merge_items", "items": {"name": "o"}}, id="merge_items-an-object"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("kind", KINDS)
def test_replicate_with_a_bad_body_is_400_and_changes_nothing(objectd, unique, kind, body):
    path = _database_path(objectd, unique, kind)
    before = _database_state(objectd, path)
    answer = _replicate(objectd, path, body)
    assert answer.status_code == 400, answer.text
    assert _database_state(objectd, path) == before


# --- a container's report to its account ----------------------------------------------------------
def _report(objectd, account_path: str, container: str, headers: dict):
    """A container's report as container servers send it (see container_server._update_accounts)."""
    report = {
        "X-Backend-Server-Type": "account",
        "X-Put-Timestamp": ts(),
        "X-Delete-Timestamp": "0000000000.00000",
        "X-Object-Count": "0",
        "X-Bytes-Used": "0",
        "X-Backend-Storage-Policy-Index": "0",
        "X-Backend-Stats-Timestamp": ts(),
        **headers,
    }
    return objectd.request("PUT", f"{account_path}/{container}", headers=report)


# (surrounding blanks are not part of a header value: HTTP strips them). "١٢" (Arabic-Indic 12)
# is sent as UTF-8 bytes: int() took it as 12
BAD_HEADER_COUNTS = ["-1", "x", "1.5", "", "+5", "1_000", "0x10", str(2**63)]
BAD_HEADER_COUNTS_BYTES = ["١٢".encode()]
BAD_HEADER_TIMESTAMPS = ["yesterday", "", "-1", "inf", "nan", "1e30", "0x10"]
BAD_REPORTS = [
    pytest.param(header, value, id=f"{header}={value!r}")
    for header in ("X-Object-Count", "X-Bytes-Used", "X-Backend-Storage-Policy-Index")
    for value in BAD_HEADER_COUNTS + BAD_HEADER_COUNTS_BYTES
] + [
    pytest.param(header, value, id=f"{header}={value!r}")
    for header in ("X-Put-Timestamp", "X-Delete-Timestamp", "X-Backend-Stats-Timestamp")
    for value in BAD_HEADER_TIMESTAMPS
]


@pytest.mark.parametrize(("header", "value"), BAD_REPORTS)
def test_container_report_with_a_bad_header_is_400_and_changes_nothing(
    objectd, unique, header, value
):
    path = _database_path(objectd, unique, "account")  # holds a report for c0
    before = _database_state(objectd, path)
    for container in ("c0", "new"):  # neither an existing row nor a new one is touched
        answer = _report(objectd, path, container, {"X-Object-Count": "7", header: value})
        assert answer.status_code == 400, answer.text
        assert f"bad container report: {header}:" in answer.text, answer.text
        assert _database_state(objectd, path) == before


def test_a_good_container_report_still_merges(objectd, unique):
    path = _database_path(objectd, unique, "account")
    headers = {
        "X-Object-Count": "7",
        "X-Bytes-Used": str(2**63 - 1),
        "X-Backend-Storage-Policy-Index": "0",
    }
    assert _report(objectd, path, "c0", headers).status_code == 201
    rows = {row["name"]: row for row in _database_state(objectd, path)[1]}
    assert rows["c0"]["object_count"] == 7 and rows["c0"]["bytes_used"] == 2**63 - 1
    deleted = {"X-Put-Timestamp": STAMP, "X-Delete-Timestamp": ts()}
    assert _report(objectd, path, "c0", deleted).status_code == 204
