"""PUT with a digest footer (objectd.digest_footer): the proxy's MD5 and xxh3-64 follow the body.

Method: a real objectd; requests built by hand the way the proxy builds them (the proxy's own
use is covered end to end by every large upload of the proxy tests). What must hold: the footer
never becomes part of the object, the ETag is the footer's MD5, a body whose xxh3 differs from
the footer's is refused with nothing stored, the client's ETag is still checked, and a body cut
short before or inside the footer stores nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest
import xxhash
from objectd_harness import hash_dir_of
from objectd_helpers import object_put_headers

from objectd.digest_footer import DIGEST_FOOTER_BYTES, DIGEST_FOOTER_HEADER, encode_footer
from objectd.diskio import DiskIO
from objectd.metadata import BODY_CHECKSUM_KEY, read_file

SMALL = os.urandom(5000)  # read whole, written in one hop
MEDIUM = os.urandom(
    1024 * 1024 + 3
)  # read whole without Expect (WHOLE_PUT_BYTES_MAX), else streamed
LARGE = os.urandom(3 * 1024 * 1024 + 7)  # streamed through several disk hops
BODIES = {"small": SMALL, "medium": MEDIUM, "large": LARGE}


def _path(name: str) -> str:
    return f"/sda/3/AUTH_f/cont/{name}"


def _footer(body: bytes) -> bytes:
    return encode_footer(hashlib.md5(body).hexdigest(), xxhash.xxh3_64_hexdigest(body))


def _put(objectd, name: str, body: bytes, footer: bytes, *, streamed: bool, **extra: str):
    headers = object_put_headers(**{DIGEST_FOOTER_HEADER: "1", **extra})
    if streamed:
        headers["Expect"] = "100-continue"
    return objectd.request("PUT", _path(name), data=body + footer, headers=headers)


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("streamed", [False, True], ids=["no-expect", "expect-100"])
def test_the_footer_is_not_stored_and_its_md5_is_the_etag(objectd, unique, body, streamed):
    response = _put(objectd, unique, body, _footer(body), streamed=streamed)
    assert response.status_code == 201, response.text
    assert response.headers["ETag"] == hashlib.md5(body).hexdigest()
    got = objectd.request("GET", _path(unique))
    assert got.content == body
    assert int(got.headers["Content-Length"]) == len(body)
    assert got.headers["ETag"] == hashlib.md5(body).hexdigest()


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("streamed", [False, True], ids=["no-expect", "expect-100"])
def test_bytes_that_differ_from_the_proxys_are_refused(objectd, unique, body, streamed):
    changed = bytearray(body)
    changed[len(body) // 2] ^= 0x01  # as if flipped between the proxy and this node
    response = _put(objectd, unique, bytes(changed), _footer(body), streamed=streamed)
    assert response.status_code == 422
    assert objectd.request("HEAD", _path(unique)).status_code == 404


@pytest.mark.parametrize(
    ("body", "streamed"), [(LARGE, True), (MEDIUM, False)], ids=["streamed", "whole"]
)
def test_the_clients_etag_is_checked_against_the_footers_md5(objectd, unique, body, streamed):
    response = _put(objectd, unique, body, _footer(body), streamed=streamed, ETag="0" * 32)
    assert response.status_code == 422
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    good = _put(objectd, unique, body, _footer(body), streamed=streamed,
                ETag=f'"{hashlib.md5(body).hexdigest()}"')  # fmt: skip
    assert good.status_code == 201


@pytest.mark.parametrize(
    "footer", [b"x" * DIGEST_FOOTER_BYTES, _footer(SMALL).upper()], ids=["not-hex", "upper-case"]
)
@pytest.mark.parametrize("streamed", [False, True], ids=["no-expect", "expect-100"])
@pytest.mark.parametrize("body", [SMALL, MEDIUM], ids=["small", "medium"])
def test_a_malformed_footer_is_400(objectd, unique, footer, streamed, body):
    assert _put(objectd, unique, body, footer, streamed=streamed).status_code == 400
    assert objectd.request("HEAD", _path(unique)).status_code == 404


def test_a_body_shorter_than_a_footer_is_400(objectd, unique):
    headers = object_put_headers(**{DIGEST_FOOTER_HEADER: "1"})
    assert objectd.request("PUT", _path(unique), data=b"abc", headers=headers).status_code == 400


@pytest.mark.parametrize("cut", [1000, DIGEST_FOOTER_BYTES // 2], ids=["in-body", "in-footer"])
@pytest.mark.parametrize("body", [MEDIUM, LARGE], ids=["whole", "streamed"])
def test_a_body_cut_short_stores_nothing(objectd, unique, cut, body):
    payload = body + _footer(body)
    stamp = object_put_headers()["X-Timestamp"]
    head = (
        f"PUT {_path(unique)} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {stamp}\r\n"
        f"Content-Type: text/plain\r\n{DIGEST_FOOTER_HEADER}: 1\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", objectd.port)) as sock:
        sock.sendall(head + payload[: len(payload) - cut])
        time.sleep(0.3)
    time.sleep(0.5)
    assert objectd.request("HEAD", _path(unique)).status_code == 404
    assert not hash_dir_of(objectd, "sda", 3, "AUTH_f", "cont", unique).exists()


@pytest.mark.parametrize(
    ("body", "streamed"), [(LARGE, True), (MEDIUM, False)], ids=["streamed", "whole"]
)
def test_the_recorded_xxh3_is_the_nodes_own(objectd, unique, body, streamed):
    """What readers verify with is computed from the bytes this node wrote (it equals the
    footer's only because the bytes arrived intact)."""
    assert _put(objectd, unique, body, _footer(body), streamed=streamed).status_code == 201
    hash_dir = hash_dir_of(objectd, "sda", 3, "AUTH_f", "cont", unique)
    (data_file,) = [f for f in os.listdir(hash_dir) if f.endswith(".data")]
    fd = os.open(hash_dir / data_file, os.O_RDONLY)
    try:
        metadata = read_file(DiskIO(), fd, os.fstat(fd).st_size).metadata
    finally:
        os.close(fd)
    assert metadata[BODY_CHECKSUM_KEY] == xxhash.xxh3_64_hexdigest(body)
    assert metadata["ETag"] == hashlib.md5(body).hexdigest()
