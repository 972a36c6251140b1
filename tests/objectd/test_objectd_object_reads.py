"""Object GET and HEAD against a real objectd: ranges, conditionals, expiry, quarantine and
metadata at Swift's maximum sizes on ext4.

Method: one objectd per module; small objects (read whole in one hop) and large ones (served
with sendfile) are checked separately, since they take different code paths.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import os
import re
import time

import pytest
import requests
import xxhash
from objectd_harness import filesystem_type, hash_dir_of
from objectd_helpers import md5, object_put_headers, ts

from objectd.diskio import DiskIO
from objectd.metadata import BODY_CHECKSUM_KEY, encode_trailer, read_file

SMALL = bytes(range(256)) * 40  # 10,240 bytes: read whole in one hop
LARGE = os.urandom(2 * 1024 * 1024 + 333)  # sendfile path


def _path(name: str) -> str:
    return f"/sda/11/AUTH_r/cont/{name}"


@pytest.fixture(scope="module")
def stored(objectd):
    """Two objects, one small and one large, written once for the module."""
    stamp = ts()
    for name, body in (("small", SMALL), ("large", LARGE)):
        headers = object_put_headers(stamp, **{"Content-Type": "text/x-test"})
        assert objectd.request("PUT", _path(name), data=body, headers=headers).status_code == 201
    return {"small": SMALL, "large": LARGE, "timestamp": stamp}


def _multipart_parts(response) -> list[tuple[str, bytes]]:
    boundary = (
        re.search(r"boundary=([0-9a-f]+)", response.headers["Content-Type"]).group(1).encode()
    )
    parts = []
    for part in response.content.split(b"--" + boundary)[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        content_range = re.search(rb"Content-Range: (bytes [^\r]+)", head).group(1).decode()
        assert b"Content-Type: text/x-test" in head
        parts.append((content_range, data[:-2] if data.endswith(b"\r\n") else data))
    assert response.content.endswith(b"--" + boundary + b"--")
    return parts


@pytest.mark.parametrize("name", ["small", "large"])
class TestRanges:
    def test_single_range_is_206_with_content_range(self, objectd, stored, name):
        body = stored[name]
        response = objectd.request("GET", _path(name), headers={"Range": "bytes=10-109"})
        assert response.status_code == 206
        assert response.content == body[10:110]
        assert response.headers["Content-Range"] == f"bytes 10-109/{len(body)}"

    def test_suffix_and_open_ranges(self, objectd, stored, name):
        body = stored[name]
        assert (
            objectd.request("GET", _path(name), headers={"Range": "bytes=-7"}).content == body[-7:]
        )
        tail = objectd.request("GET", _path(name), headers={"Range": f"bytes={len(body) - 5}-"})
        assert tail.content == body[-5:]

    def test_range_past_the_end_is_clamped(self, objectd, stored, name):
        body = stored[name]
        response = objectd.request(
            "GET", _path(name), headers={"Range": f"bytes=5-{len(body) * 2}"}
        )
        assert response.status_code == 206 and response.content == body[5:]

    def test_multiple_ranges_are_multipart_byteranges(self, objectd, stored, name):
        body = stored[name]
        response = objectd.request("GET", _path(name), headers={"Range": "bytes=0-9,100-199,-16"})
        assert response.status_code == 206
        assert response.headers["Content-Type"].startswith("multipart/byteranges;boundary=")
        assert int(response.headers["Content-Length"]) == len(response.content)
        size = len(body)
        assert _multipart_parts(response) == [
            (f"bytes 0-9/{size}", body[0:10]),
            (f"bytes 100-199/{size}", body[100:200]),
            (f"bytes {size - 16}-{size - 1}/{size}", body[-16:]),
        ]

    def test_unsatisfiable_range_is_416(self, objectd, stored, name):
        size = len(stored[name])
        response = objectd.request("GET", _path(name), headers={"Range": f"bytes={size}-"})
        assert response.status_code == 416
        assert response.headers["Content-Range"] == f"bytes */{size}"

    def test_invalid_range_header_is_ignored(self, objectd, stored, name):
        response = objectd.request("GET", _path(name), headers={"Range": "bytes=9-3"})
        assert response.status_code == 200 and response.content == stored[name]

    def test_more_than_fifty_ranges_is_416(self, objectd, stored, name):
        ranges = ",".join(f"{i * 2}-{i * 2}" for i in range(51))
        assert (
            objectd.request("GET", _path(name), headers={"Range": f"bytes={ranges}"}).status_code
            == 416
        )

    def test_if_range_with_a_stale_etag_returns_the_whole_object(self, objectd, stored, name):
        headers = {"Range": "bytes=0-3", "If-Range": '"0123"'}
        response = objectd.request("GET", _path(name), headers=headers)
        assert response.status_code == 200 and response.content == stored[name]


@pytest.mark.parametrize("name", ["small", "large"])
class TestConditionals:
    def test_if_match(self, objectd, stored, name):
        etag = md5(stored[name])
        assert (
            objectd.request("GET", _path(name), headers={"If-Match": f'"{etag}"'}).status_code
            == 200
        )
        assert objectd.request("GET", _path(name), headers={"If-Match": "*"}).status_code == 200
        assert (
            objectd.request("GET", _path(name), headers={"If-Match": '"nope"'}).status_code == 412
        )
        assert (
            objectd.request("HEAD", _path(name), headers={"If-Match": '"nope"'}).status_code == 412
        )

    def test_if_none_match(self, objectd, stored, name):
        etag = md5(stored[name])
        response = objectd.request("GET", _path(name), headers={"If-None-Match": f'"x", "{etag}"'})
        assert response.status_code == 304
        assert response.headers["ETag"] == etag
        assert (
            objectd.request("GET", _path(name), headers={"If-None-Match": '"x"'}).status_code == 200
        )

    def test_if_modified_since(self, objectd, stored, name):
        last_modified = objectd.request("HEAD", _path(name)).headers["Last-Modified"]
        same = objectd.request("GET", _path(name), headers={"If-Modified-Since": last_modified})
        assert same.status_code == 304
        earlier = email.utils.formatdate(float(stored["timestamp"]) - 3600, usegmt=True)
        assert (
            objectd.request("GET", _path(name), headers={"If-Modified-Since": earlier}).status_code
            == 200
        )

    def test_if_unmodified_since(self, objectd, stored, name):
        earlier = email.utils.formatdate(float(stored["timestamp"]) - 3600, usegmt=True)
        response = objectd.request("GET", _path(name), headers={"If-Unmodified-Since": earlier})
        assert response.status_code == 412
        later = email.utils.formatdate(float(stored["timestamp"]) + 3600, usegmt=True)
        assert (
            objectd.request("GET", _path(name), headers={"If-Unmodified-Since": later}).status_code
            == 200
        )


def test_if_match_star_on_a_missing_object_is_412(objectd):
    assert objectd.request("GET", _path("never"), headers={"If-Match": "*"}).status_code == 412


def test_head_returns_headers_and_length_without_a_body(objectd, stored):
    response = objectd.request("HEAD", _path("large"))
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(LARGE))
    assert response.headers["ETag"] == md5(LARGE)
    assert response.headers["X-Timestamp"] == stored["timestamp"]
    assert response.content == b""


def test_expired_object_is_404(objectd, unique):
    delete_at = int(time.time()) + 2
    headers = object_put_headers(**{"X-Delete-At": str(delete_at)})
    assert (
        objectd.request("PUT", _path(unique), data=b"soon gone", headers=headers).status_code == 201
    )
    assert objectd.request("GET", _path(unique)).headers["X-Delete-At"] == str(delete_at)
    time.sleep(max(0.0, delete_at - time.time()) + 0.2)
    assert objectd.request("GET", _path(unique)).status_code == 404
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    assert objectd.request("POST", _path(unique), headers={"X-Timestamp": ts()}).status_code == 404
    replicator = objectd.request("GET", _path(unique), headers={"X-Backend-Replication": "true"})
    assert replicator.status_code == 200 and replicator.content == b"soon gone"
    copy = object_put_headers(**{"X-Delete-At": str(delete_at), "X-Backend-Replication": "true"})
    assert (
        objectd.request("PUT", _path(unique + "-copy"), data=b"x", headers=copy).status_code == 201
    )


def _corrupt_body(objectd, name: str) -> None:
    hash_dir = hash_dir_of(objectd, "sda", 11, "AUTH_r", "cont", name)
    (data_file,) = [f for f in os.listdir(hash_dir) if f.endswith(".data")]
    with open(hash_dir / data_file, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


def _quarantined(objectd, name: str) -> bool:
    name_hash = objectd.layout.hash_of("AUTH_r", "cont", name)
    quarantine = objectd.devices / "sda" / "quarantined" / "objects"
    return quarantine.is_dir() and any(
        entry.startswith(name_hash) for entry in os.listdir(quarantine)
    )


def test_corrupt_small_object_is_quarantined_and_never_served(objectd, unique):
    objectd.request("PUT", _path(unique), data=SMALL, headers=object_put_headers())
    _corrupt_body(objectd, unique)
    assert objectd.request("GET", _path(unique)).status_code == 404
    assert _quarantined(objectd, unique)
    assert not hash_dir_of(objectd, "sda", 11, "AUTH_r", "cont", unique).exists()


def test_corrupt_large_object_is_cut_short_then_quarantined(objectd, unique):
    objectd.request("PUT", _path(unique), data=LARGE, headers=object_put_headers())
    _corrupt_body(objectd, unique)
    with objectd.session.get(objectd.base_url + _path(unique), stream=True, timeout=30) as response:
        assert response.status_code == 200  # headers go out before the body is verified
        received = b""
        with pytest.raises(Exception):  # noqa: B017 (requests raises one of several types)
            for chunk in response.iter_content(65536):
                received += chunk
            raise AssertionError("the whole corrupt body was delivered")
        assert len(received) < len(LARGE)
    time.sleep(0.2)
    assert _quarantined(objectd, unique)
    assert objectd.request("GET", _path(unique)).status_code == 404


def test_corrupt_trailer_is_quarantined_on_head(objectd, unique):
    objectd.request("PUT", _path(unique), data=b"abc", headers=object_put_headers())
    hash_dir = hash_dir_of(objectd, "sda", 11, "AUTH_r", "cont", unique)
    (data_file,) = os.listdir(hash_dir)
    with open(hash_dir / data_file, "r+b") as f:
        f.truncate(os.path.getsize(hash_dir / data_file) - 3)
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    assert _quarantined(objectd, unique)


# --- metadata at Swift's maximum sizes ------------------------------------------------------------
def _swift_max_metadata() -> dict[str, str]:
    """90 user metadata items totalling exactly 4096 bytes (name without prefix + value)."""
    headers = {}
    for index in range(90):
        key = f"Key-{index:03d}-" + "k" * 10  # 18 characters
        headers[f"X-Object-Meta-{key}"] = "v" * 27
    used = sum(len(k) - len("X-Object-Meta-") + len(v) for k, v in headers.items())
    last = f"X-Object-Meta-Key-089-{'k' * 10}"
    headers[last] = "v" * (27 + 4096 - used)
    assert sum(len(k) - len("X-Object-Meta-") + len(v) for k, v in headers.items()) == 4096
    return headers


def _swift_style_xattrs_fail(directory) -> bool:
    """Whether this filesystem refuses Swift's way of storing that much metadata (xattrs of
    254-byte chunks on one inode) — i.e. whether Swift itself would fail here."""
    probe = directory / "xattr-probe"
    probe.write_bytes(b"")
    try:
        blob = os.urandom(8 * 1024).hex().encode()[: 8 * 1024]
        for index, start in enumerate(range(0, len(blob), 254)):
            os.setxattr(probe, f"user.swift.metadata{index or ''}", blob[start : start + 254])
    except OSError as exc:
        return exc.errno in (errno.ENOSPC, errno.E2BIG, errno.ERANGE)
    finally:
        probe.unlink()
    return False


def test_metadata_at_swift_maximums_on_ext4(objectd, monkeypatch):
    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)  # the test client's limit, not ours
    device_dir = objectd.devices / "sda"
    if filesystem_type(device_dir) != "ext4":
        pytest.skip("the temp directory is not on ext4 (see test_devices for a loop-mounted ext4)")
    assert _swift_style_xattrs_fail(device_dir), "this ext4 would not have failed Swift"
    name = "N" * 1024  # Swift's maximum object name length, in bytes
    headers = object_put_headers(**_swift_max_metadata())
    for index in range(10):  # plus system metadata, which Swift does not count against users
        headers[f"X-Object-Sysmeta-Crypto-{index}"] = "s" * 250
    headers["Content-Disposition"] = "attachment; filename=" + "f" * 200
    body = os.urandom(5000)
    response = objectd.request("PUT", _path(name), data=body, headers=headers)
    assert response.status_code == 201
    got = objectd.request("GET", _path(name))
    assert got.status_code == 200 and got.content == body
    for key, value in headers.items():
        if key != "X-Timestamp":
            assert got.headers[key] == value, key
    post_headers = {"X-Timestamp": ts(), **_swift_max_metadata()}
    assert objectd.request("POST", _path(name), headers=post_headers).status_code == 202
    assert objectd.request("HEAD", _path(name)).headers["X-Object-Sysmeta-Crypto-9"] == "s" * 250


def test_non_ascii_metadata_round_trips(objectd, unique):
    headers = object_put_headers(**{"X-Object-Meta-Greeting": "héllo wörld ✓"})
    objectd.request(
        "PUT", _path(unique), data=b"x", headers={k: v.encode() for k, v in headers.items()}
    )
    value = objectd.request("HEAD", _path(unique)).headers["X-Object-Meta-Greeting"]
    assert value.encode("latin-1").decode("utf-8") == "héllo wörld ✓"


def _data_file(objectd, name: str):
    hash_dir = hash_dir_of(objectd, "sda", 11, "AUTH_r", "cont", name)
    (data_file,) = [f for f in os.listdir(hash_dir) if f.endswith(".data")]
    return hash_dir / data_file


def _trailer(path) -> dict[str, str]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_file(DiskIO(), fd, os.fstat(fd).st_size).metadata
    finally:
        os.close(fd)


def _rewrite_trailer(path, metadata: dict[str, str]) -> None:
    """The file as a writer without the checksum key (objectd before it) would have left it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        body_bytes = read_file(DiskIO(), fd, os.fstat(fd).st_size).body_bytes
        body = os.pread(fd, body_bytes, 0)
    finally:
        os.close(fd)
    path.write_bytes(body + encode_trailer(metadata, body_bytes))


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
def test_every_data_file_records_the_xxh3_of_its_body_and_never_shows_it(objectd, unique, body):
    response = objectd.request("PUT", _path(unique), data=body, headers=object_put_headers())
    assert response.status_code == 201
    assert _trailer(_data_file(objectd, unique))[BODY_CHECKSUM_KEY] == xxhash.xxh3_64_hexdigest(
        body
    )
    for method in ("HEAD", "GET"):
        answer = objectd.request(method, _path(unique))
        assert answer.status_code == 200
        assert not [h for h in answer.headers if "xxh3" in h.lower()]


@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
def test_a_file_without_the_xxh3_is_still_verified_by_its_md5(objectd, unique, body):
    objectd.request("PUT", _path(unique), data=body, headers=object_put_headers())
    path = _data_file(objectd, unique)
    metadata = _trailer(path)
    del metadata[BODY_CHECKSUM_KEY]
    _rewrite_trailer(path, metadata)
    assert objectd.request("GET", _path(unique)).content == body  # an intact body is served
    _corrupt_body(objectd, unique)
    try:
        answer = objectd.request("GET", _path(unique))
        served = answer.content if answer.status_code == 200 else b""
    except requests.RequestException:
        served = b""  # a large body is cut short
    assert served != body and len(served) < len(body)
    time.sleep(0.2)
    assert _quarantined(objectd, unique)


def test_a_wrong_recorded_xxh3_is_caught_by_readers(objectd, unique):
    """The checksum is what readers trust: a wrong one (whatever the body) is never ignored."""
    objectd.request("PUT", _path(unique), data=SMALL, headers=object_put_headers())
    path = _data_file(objectd, unique)
    metadata = _trailer(path)
    metadata[BODY_CHECKSUM_KEY] = "0" * 16
    _rewrite_trailer(path, metadata)
    assert objectd.request("GET", _path(unique)).status_code == 404
    assert _quarantined(objectd, unique)
