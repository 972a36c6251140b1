"""Every object write marks its suffix stale for the replicator; a refused write does not.

Method: a real objectd; after each request the partition's ``hashes.invalid`` (the list of
suffixes the replicator must rehash) is read from disk.
"""

from __future__ import annotations

from objectd_harness import hash_dir_of
from objectd_helpers import object_put_headers, ts

from objectd.suffix_hashes import INVALID_FILE


def _invalid_lines(process, name: str) -> list[str]:
    partition_dir = hash_dir_of(process, "sda", 3, "AUTH_s", "box", name).parents[1]
    invalid = partition_dir / INVALID_FILE
    return invalid.read_text().split() if invalid.exists() else []


def test_put_post_and_delete_mark_the_suffix_and_a_409_does_not(fresh_objectd):
    process = fresh_objectd
    path = "/sda/3/AUTH_s/box/obj"
    suffix = hash_dir_of(process, "sda", 3, "AUTH_s", "box", "obj").parent.name
    old, put_at, post_at, delete_at = ts(), ts(), ts(), ts()

    put = process.request("PUT", path, data=b"body", headers=object_put_headers(put_at))
    assert put.status_code == 201
    assert _invalid_lines(process, "obj") == [suffix]

    post = process.request("POST", path, headers={"X-Timestamp": post_at, "X-Object-Meta-A": "1"})
    assert post.status_code == 202
    assert _invalid_lines(process, "obj") == [suffix] * 2

    refused = process.request("PUT", path, data=b"older", headers=object_put_headers(old))
    assert refused.status_code == 409
    assert _invalid_lines(process, "obj") == [suffix] * 2

    delete = process.request("DELETE", path, headers={"X-Timestamp": delete_at})
    assert delete.status_code == 204
    assert _invalid_lines(process, "obj") == [suffix] * 3
