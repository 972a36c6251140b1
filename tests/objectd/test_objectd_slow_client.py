"""A PUT body that arrives slowly: the sender may pause up to ``client_timeout_s`` between
chunks, however long the whole body takes; a longer pause is a 408 that stores nothing. Both
ways objectd receives a body: whole before the disk hop (up to ``WHOLE_PUT_BYTES_MAX`` without
``Expect``) and streamed.

Method: a real objectd with a 1 s client timeout, a raw socket sending the body in pieces with
real pauses.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from objectd_harness import hash_dir_of, start_objectd
from objectd_helpers import object_put_headers

CLIENT_TIMEOUT_S = 1.0
SIZES = {"whole": 1024 * 1024 + 1, "streamed": 3 * 1024 * 1024 + 1}


@pytest.fixture(scope="module")
def objectd(tmp_path_factory):
    process = start_objectd(tmp_path_factory.mktemp("slow") / "node",
                            client_timeout_s=CLIENT_TIMEOUT_S)  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


def _put_in_pieces(objectd, path: str, body: bytes, pauses_s: list[float]) -> str:
    headers = object_put_headers(**{"Content-Length": str(len(body))})
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    pieces = len(pauses_s) + 1
    step = -(-len(body) // pieces)
    with socket.create_connection(("127.0.0.1", objectd.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n")
        for i in range(pieces):
            try:
                sock.sendall(body[i * step : (i + 1) * step])
            except OSError:
                break  # objectd gave up and closed: its answer is in
            if i < len(pauses_s):
                time.sleep(pauses_s[i])
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_short_pauses_are_fine_however_long_the_body_takes(objectd, unique, size):
    body = os.urandom(size)
    path = f"/sda/2/AUTH_s/c/{unique}"
    assert " 201 " in _put_in_pieces(objectd, path, body, [0.6 * CLIENT_TIMEOUT_S] * 4)
    assert objectd.request("GET", path).content == body


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_long_pause_is_408_and_stores_nothing(objectd, unique, size):
    path = f"/sda/2/AUTH_s/c/{unique}"
    assert " 408 " in _put_in_pieces(objectd, path, os.urandom(size), [2.5 * CLIENT_TIMEOUT_S])
    assert objectd.request("HEAD", path).status_code == 404
    assert not hash_dir_of(objectd, "sda", 2, "AUTH_s", "c", unique).exists()
