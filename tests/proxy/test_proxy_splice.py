"""Large GETs through the real proxy go by splice: byte-identical bodies and ranges on both sides
of the threshold, client keep-alive intact, and no body byte through the proxy's own read/write
calls.

The last point is measured, not assumed: ``/proc/<pid>/io`` ``wchar`` counts the bytes a process
passed to write-family system calls (uvloop sends with write/writev), and splice(2) is not one
of them. The copy path's figure for an object just below the threshold shows that the
measurement does see relayed bodies. Mid-body failover, a replica that fails its MD5 check and a
client that leaves mid-body are covered by test_proxy_failover, tests/cluster and
test_proxy_client_gone, whose objects are large enough to be spliced.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from proxy.splice_relay import SPLICE_MIN_BYTES, available
from tests.proxy.aio_harness import AioCluster

pytestmark = pytest.mark.skipif(not available(), reason="no os.splice here")


def _written_bytes(aio: AioCluster) -> int:
    total = 0
    for pid in aio.proxy_pids():
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                total += int(line.split()[1])
    return total


@pytest.mark.parametrize(
    "size", [SPLICE_MIN_BYTES - 1, SPLICE_MIN_BYTES, SPLICE_MIN_BYTES + 1, 3 * 2**20 + 5]
)
def test_bodies_and_ranges_are_byte_identical_around_the_threshold(swift, container, size):
    data = os.urandom(size)
    swift.put_object(container, "o", data)
    assert swift.get_object(container, "o")[1] == data
    for header, expected in (
        (f"bytes=100-{size - 100}", data[100 : size - 99]),
        ("bytes=-70000", data[-70000:]),
        ("bytes=5-", data[5:]),
    ):
        headers, body = swift.get_object(container, "o", headers={"Range": header})
        assert body == expected, header
        assert int(headers["content-length"]) == len(expected)


def test_a_large_body_does_not_pass_through_the_proxys_writes(aio, swift, container):
    large = os.urandom(4 * 2**20)
    small = os.urandom(SPLICE_MIN_BYTES - 1)
    swift.put_object(container, "large", large)
    swift.put_object(container, "small", small)

    def written_for(name: str, times: int = 4) -> int:
        before = _written_bytes(aio)
        for _ in range(times):
            swift.get_object(container, name)
        return _written_bytes(aio) - before

    assert written_for("small") >= 4 * len(small)  # copied: the measurement sees bodies
    assert written_for("large") < 4 * 64 * 1024  # spliced: headers only


def test_the_client_connection_stays_usable_after_a_spliced_body(aio, swift, container):
    data = os.urandom(2 * 2**20 + 3)
    swift.put_object(container, "ka", data)
    url, token = swift.get_auth()
    parts = urlsplit(url)
    request = (
        f"GET {parts.path}/{container}/ka HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        for _ in range(3):  # one connection, three answers in a row
            sock.sendall(request)
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = None
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length == len(data)
            assert reader.read(length) == data
