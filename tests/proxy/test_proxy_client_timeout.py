"""The client's pauses while sending a PUT body: each may last up to ``client_timeout_s``
(Swift's ``client_timeout``), whatever the whole upload takes; a longer pause is a 408 and
stores nothing. Both PUT paths: a body read whole before the nodes are asked (up to
``WHOLE_PUT_BYTES_MAX``) and a streamed one.

Method: a second proxy with a 1 s client timeout beside the session's ``shoal aio`` (same rings
and nodes), real sockets sending the body in pieces with real pauses.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.proxy.aio_harness import AioCluster, ProxyProcess

CLIENT_TIMEOUT_S = 1.0
SIZES = {"whole": 300_000, "streamed": 3 * 2**20 + 5}


@pytest.fixture(scope="module")
def proxy(aio: AioCluster, tmp_path_factory) -> Iterator[ProxyProcess]:
    process = ProxyProcess(
        tmp_path_factory.mktemp("slow-client-proxy"),
        {"ring_dir": str(aio.data / "rings"), "client_timeout_s": CLIENT_TIMEOUT_S},
        {},
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def auth(proxy: ProxyProcess) -> tuple[str, str]:
    answer = requests.get(f"{proxy.url}/auth/v1.0", timeout=10,
                          headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})  # fmt: skip
    token, url = answer.headers["X-Auth-Token"], answer.headers["X-Storage-Url"]
    assert requests.put(f"{url}/slow", headers={"X-Auth-Token": token}, timeout=10).ok
    return token, url


def _put_in_pieces(proxy: ProxyProcess, token: str, path: str, body: bytes, pauses_s: list[float]):
    """PUT ``body`` in ``len(pauses_s) + 1`` pieces, sleeping ``pauses_s[i]`` after piece i;
    returns the status line."""
    pieces = len(pauses_s) + 1
    step = -(-len(body) // pieces)
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(head)
        for i in range(pieces):
            try:
                sock.sendall(body[i * step : (i + 1) * step])
            except OSError:
                break  # the proxy gave up on us and closed: its answer is already in
            if i < len(pauses_s):
                time.sleep(pauses_s[i])
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_pauses_shorter_than_the_timeout_are_fine_however_long_the_upload(proxy, auth, size):
    token, url = auth
    body = os.urandom(size)
    path = f"{url.split(str(proxy.port), 1)[1]}/slow/ok-{size}"
    pauses = [0.6 * CLIENT_TIMEOUT_S] * 4  # 2.4 timeouts in all
    assert " 201 " in _put_in_pieces(proxy, token, path, body, pauses)
    got = requests.get(f"{url}/slow/ok-{size}", headers={"X-Auth-Token": token}, timeout=10)
    assert got.content == body


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_pause_longer_than_the_timeout_is_408_and_stores_nothing(proxy, auth, size):
    token, url = auth
    body = os.urandom(size)
    path = f"{url.split(str(proxy.port), 1)[1]}/slow/late-{size}"
    assert " 408 " in _put_in_pieces(proxy, token, path, body, [2.5 * CLIENT_TIMEOUT_S])
    got = requests.head(f"{url}/slow/late-{size}", headers={"X-Auth-Token": token}, timeout=10)
    assert got.status_code == 404
