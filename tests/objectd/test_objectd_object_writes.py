"""Object PUT, POST and DELETE against a real objectd over HTTP.

Goal: every write rule of issue 3 (ETag, lengths, newest timestamp wins, tombstones, metadata
replacement, nothing partial ever visible). Method: one objectd process per module, requests
with `requests` or raw sockets, and a look at the files on disk where the rule is about files.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse

import pytest
from objectd_harness import hash_dir_of
from objectd_helpers import md5, object_put_headers, raw_request, ts


def _path(name: str, partition: int = 7, device: str = "sda") -> str:
    return f"/{device}/{partition}/AUTH_test/cont/{name}"


def test_put_returns_201_with_the_md5_etag_and_get_returns_the_body(objectd, unique):
    body = b"hello shoal"
    response = objectd.request("PUT", _path(unique), data=body, headers=object_put_headers())
    assert response.status_code == 201
    assert response.headers["ETag"] == md5(body)
    got = objectd.request("GET", _path(unique))
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["ETag"] == md5(body)
    assert got.headers["Content-Length"] == str(len(body))
    assert got.headers["Content-Type"] == "application/octet-stream"


def test_put_with_wrong_client_etag_is_422_and_stores_nothing(objectd, unique):
    headers = object_put_headers(ETag=md5(b"something else"))
    response = objectd.request("PUT", _path(unique), data=b"payload", headers=headers)
    assert response.status_code == 422
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    assert not hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique).exists()


def test_put_with_quoted_matching_etag_is_accepted(objectd, unique):
    headers = object_put_headers(ETag=f'"{md5(b"payload")}"')
    assert (
        objectd.request("PUT", _path(unique), data=b"payload", headers=headers).status_code == 201
    )


def test_large_put_with_wrong_etag_is_422(objectd, unique):
    body = os.urandom(3 * 1024 * 1024 + 5)
    headers = object_put_headers(ETag=md5(b"nope"))
    assert objectd.request("PUT", _path(unique), data=body, headers=headers).status_code == 422
    assert objectd.request("HEAD", _path(unique)).status_code == 404


def test_large_put_streams_and_reads_back_identically(objectd, unique):
    body = os.urandom(5 * 1024 * 1024 + 123)
    response = objectd.request("PUT", _path(unique), data=body, headers=object_put_headers())
    assert response.status_code == 201
    assert response.headers["ETag"] == md5(body)
    got = objectd.request("GET", _path(unique))
    assert got.status_code == 200 and got.content == body


def test_chunked_put_without_content_length_is_stored(objectd, unique):
    chunks = [os.urandom(100_000) for _ in range(7)]
    response = objectd.request(
        "PUT", _path(unique), data=iter(chunks), headers=object_put_headers()
    )
    assert response.status_code == 201
    assert objectd.request("GET", _path(unique)).content == b"".join(chunks)


def test_zero_byte_object(objectd, unique):
    assert (
        objectd.request("PUT", _path(unique), data=b"", headers=object_put_headers()).status_code
        == 201
    )
    got = objectd.request("GET", _path(unique))
    assert got.status_code == 200 and got.content == b""
    assert got.headers["ETag"] == md5(b"")


def test_newer_timestamp_wins_over_older_put(objectd, unique):
    older, newer = ts(), ts()
    assert (
        objectd.request(
            "PUT", _path(unique), data=b"new", headers=object_put_headers(newer)
        ).status_code
        == 201
    )
    late = objectd.request("PUT", _path(unique), data=b"old", headers=object_put_headers(older))
    assert late.status_code == 409
    assert late.headers["X-Backend-Timestamp"] == newer
    assert objectd.request("GET", _path(unique)).content == b"new"


def test_put_with_the_same_timestamp_is_409(objectd, unique):
    stamp = ts()
    assert (
        objectd.request(
            "PUT", _path(unique), data=b"a", headers=object_put_headers(stamp)
        ).status_code
        == 201
    )
    assert (
        objectd.request(
            "PUT", _path(unique), data=b"b", headers=object_put_headers(stamp)
        ).status_code
        == 409
    )


def test_a_newer_put_replaces_the_older_file_on_disk(objectd, unique):
    first, second = ts(), ts()
    objectd.request("PUT", _path(unique), data=b"one", headers=object_put_headers(first))
    objectd.request("PUT", _path(unique), data=b"two", headers=object_put_headers(second))
    files = os.listdir(hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique))
    assert files == [f"{second}.data"]


def test_missing_timestamp_is_400(objectd, unique):
    headers = {"Content-Type": "text/plain"}
    assert objectd.request("PUT", _path(unique), data=b"x", headers=headers).status_code == 400


def test_missing_content_type_is_400(objectd, unique):
    headers = {"X-Timestamp": ts()}
    assert objectd.request("PUT", _path(unique), data=b"x", headers=headers).status_code == 400


def test_put_without_length_or_chunking_is_411(objectd, unique):
    head = (
        f"PUT {_path(unique)} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
    ).encode()
    assert raw_request(objectd.port, head).startswith(b"HTTP/1.1 411")


def test_x_delete_at_in_the_past_is_400(objectd, unique):
    headers = object_put_headers(**{"X-Delete-At": str(int(time.time()) - 10)})
    assert objectd.request("PUT", _path(unique), data=b"x", headers=headers).status_code == 400


def test_if_none_match_star_refuses_to_overwrite(objectd, unique):
    assert (
        objectd.request("PUT", _path(unique), data=b"a", headers=object_put_headers()).status_code
        == 201
    )
    headers = object_put_headers(**{"If-None-Match": "*"})
    assert objectd.request("PUT", _path(unique), data=b"b", headers=headers).status_code == 412
    assert objectd.request("GET", _path(unique)).content == b"a"


def test_short_body_leaves_nothing_visible(objectd, unique):
    head = (
        f"PUT {_path(unique)} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", objectd.port)) as sock:
        sock.sendall(head + b"z" * 100_000)
        time.sleep(0.3)
    time.sleep(0.5)
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    assert not hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique).exists()
    tmp_dir = objectd.devices / "sda" / "tmp"
    assert not tmp_dir.exists() or os.listdir(tmp_dir) == []


def test_small_short_body_leaves_nothing_visible(objectd, unique):
    head = (
        f"PUT {_path(unique)} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {ts()}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", objectd.port)) as sock:
        sock.sendall(head + b"z" * 10)
    time.sleep(0.5)
    assert objectd.request("HEAD", _path(unique)).status_code == 404


def test_delete_writes_a_tombstone_and_get_is_404_with_its_timestamp(objectd, unique):
    objectd.request("PUT", _path(unique), data=b"bye", headers=object_put_headers())
    stamp = ts()
    response = objectd.request("DELETE", _path(unique), headers={"X-Timestamp": stamp})
    assert response.status_code == 204
    got = objectd.request("GET", _path(unique))
    assert got.status_code == 404
    assert got.headers["X-Backend-Timestamp"] == stamp
    assert os.listdir(hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique)) == [
        f"{stamp}.ts"
    ]


def test_delete_of_a_missing_object_is_404_but_leaves_a_tombstone(objectd, unique):
    stamp = ts()
    assert (
        objectd.request("DELETE", _path(unique), headers={"X-Timestamp": stamp}).status_code == 404
    )
    assert os.listdir(hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique)) == [
        f"{stamp}.ts"
    ]


def test_a_put_older_than_a_tombstone_is_409(objectd, unique):
    older = ts()
    objectd.request("DELETE", _path(unique), headers={"X-Timestamp": ts()})
    assert (
        objectd.request(
            "PUT", _path(unique), data=b"x", headers=object_put_headers(older)
        ).status_code
        == 409
    )


def test_an_older_delete_is_409_and_the_object_stays(objectd, unique):
    older = ts()
    objectd.request("PUT", _path(unique), data=b"keep", headers=object_put_headers())
    assert (
        objectd.request("DELETE", _path(unique), headers={"X-Timestamp": older}).status_code == 409
    )
    assert objectd.request("GET", _path(unique)).content == b"keep"


def test_x_if_delete_at_mismatch_is_412(objectd, unique):
    delete_at = str(int(time.time()) + 3600)
    objectd.request(
        "PUT", _path(unique), data=b"x", headers=object_put_headers(**{"X-Delete-At": delete_at})
    )
    wrong = objectd.request(
        "DELETE", _path(unique), headers={"X-Timestamp": ts(), "X-If-Delete-At": "1"}
    )
    assert wrong.status_code == 412
    right = objectd.request(
        "DELETE", _path(unique), headers={"X-Timestamp": ts(), "X-If-Delete-At": delete_at}
    )
    assert right.status_code == 204


def test_post_replaces_user_metadata_and_keeps_system_metadata(objectd, unique):
    headers = object_put_headers(
        **{"X-Object-Meta-Color": "blue", "X-Object-Meta-Size": "L", "X-Object-Sysmeta-Slo": "yes"}
    )
    objectd.request("PUT", _path(unique), data=b"body", headers=headers)
    stamp = ts()
    post = objectd.request(
        "POST", _path(unique), headers={"X-Timestamp": stamp, "X-Object-Meta-Shape": "round"}
    )
    assert post.status_code == 202
    got = objectd.request("GET", _path(unique))
    assert got.headers["X-Object-Meta-Shape"] == "round"
    assert "X-Object-Meta-Color" not in got.headers and "X-Object-Meta-Size" not in got.headers
    assert got.headers["X-Object-Sysmeta-Slo"] == "yes"
    assert got.headers["X-Timestamp"] == stamp
    assert got.headers["X-Backend-Data-Timestamp"] == headers["X-Timestamp"]
    assert got.content == b"body"


def test_post_can_change_content_type(objectd, unique):
    objectd.request("PUT", _path(unique), data=b"body", headers=object_put_headers())
    objectd.request(
        "POST", _path(unique), headers={"X-Timestamp": ts(), "Content-Type": "text/x-new"}
    )
    assert objectd.request("HEAD", _path(unique)).headers["Content-Type"] == "text/x-new"


def test_post_to_a_missing_object_is_404(objectd, unique):
    assert objectd.request("POST", _path(unique), headers={"X-Timestamp": ts()}).status_code == 404


def test_post_older_than_the_object_is_409(objectd, unique):
    older = ts()
    objectd.request("PUT", _path(unique), data=b"x", headers=object_put_headers())
    assert objectd.request("POST", _path(unique), headers={"X-Timestamp": older}).status_code == 409


def test_a_second_post_replaces_the_first_meta_file(objectd, unique):
    objectd.request("PUT", _path(unique), data=b"x", headers=object_put_headers())
    objectd.request("POST", _path(unique), headers={"X-Timestamp": ts(), "X-Object-Meta-A": "1"})
    last = ts()
    objectd.request("POST", _path(unique), headers={"X-Timestamp": last, "X-Object-Meta-B": "2"})
    files = sorted(os.listdir(hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique)))
    assert len(files) == 2 and files[1] == f"{last}.meta"
    got = objectd.request("HEAD", _path(unique))
    assert got.headers.get("X-Object-Meta-B") == "2" and "X-Object-Meta-A" not in got.headers


def test_storage_policy_objects_live_under_objects_n(objectd, unique):
    headers = object_put_headers(**{"X-Backend-Storage-Policy-Index": "2"})
    assert objectd.request("PUT", _path(unique), data=b"p2", headers=headers).status_code == 201
    assert hash_dir_of(objectd, "sda", 7, "AUTH_test", "cont", unique, policy=2).is_dir()
    assert objectd.request("GET", _path(unique)).status_code == 404  # policy 0 has no such object
    got = objectd.request("GET", _path(unique), headers={"X-Backend-Storage-Policy-Index": "2"})
    assert got.content == b"p2"


def test_object_names_with_slashes_dots_and_unicode_round_trip(objectd):
    for name in ("a/b/c", "../x", "./y/./", "ünïcødé/日本", "sp ace%", "q?x=1#f"):
        # dots encoded, so that the HTTP client does not resolve ".." itself
        encoded = urllib.parse.quote(name, safe="/").replace(".", "%2E")
        quoted = "/sda/3/AUTH_test/cont/" + encoded
        response = objectd.request("PUT", quoted, data=name.encode(), headers=object_put_headers())
        assert response.status_code == 201, name
        assert objectd.request("GET", quoted).content == name.encode(), name


def test_invalid_utf8_in_the_path_is_412(objectd):
    response = objectd.request(
        "PUT", "/sda/1/AUTH_test/cont/%ff%fe", data=b"x", headers=object_put_headers()
    )
    assert response.status_code == 412


@pytest.mark.parametrize("bad", ["/sda/x/a/c/o", "/.hidden/1/a/c/o", "/sda/1/a/c/"])
def test_malformed_paths_are_400(objectd, bad):
    assert objectd.request("PUT", bad, data=b"x", headers=object_put_headers()).status_code == 400
