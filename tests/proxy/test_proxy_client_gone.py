"""A client that hangs up before its answer is an everyday event, not a proxy error.

Method: the session's real ``shoal aio``; raw sockets send a GET and close at once with a TCP
reset (SO_LINGER 0), so the proxy finds the connection gone when it starts its answer. The
proxy's log must not report those requests as errors with a traceback, and it keeps serving.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlsplit

from tests.proxy.aio_harness import AioCluster, hang_up_mid_body

HANGUPS = 40
BODY = b"x" * (256 * 1024)  # a streamed GET: the proxy prepares its answer after the node's


def _get_and_reset(host: str, port: int, path: str, token: str) -> None:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {token}\r\n\r\n"
        sock.sendall(request.encode())


def test_clients_that_hang_up_are_not_logged_as_errors(aio: AioCluster, swift, container):
    swift.put_object(container, "big", BODY)
    url, token = swift.get_auth()
    parts = urlsplit(url)
    path = f"{parts.path}/{container}/big"
    log_offset = aio.log_path.stat().st_size
    for _ in range(HANGUPS):
        _get_and_reset(parts.hostname, parts.port, path, token)
    time.sleep(1.0)  # the proxy finishes (or fails) the abandoned requests
    assert swift.get_object(container, "big")[1] == BODY  # still serving
    with open(aio.log_path, "rb") as log:
        log.seek(log_offset)
        new_lines = log.read().decode(errors="replace")
    assert "Error handling request" not in new_lines
    assert "Traceback" not in new_lines


def test_a_client_that_hangs_up_mid_body_is_not_an_error(aio: AioCluster, swift, container):
    """Gone after the status line: the proxy's write fails with "Connection lost"."""
    body = b"y" * (4 * 1024 * 1024)
    swift.put_object(container, "large", body)
    url, token = swift.get_auth()
    logged = hang_up_mid_body(aio, f"{url}/{container}/large", token)
    assert swift.get_object(container, "large")[1] == body
    assert "Traceback" not in logged and "Error handling request" not in logged
