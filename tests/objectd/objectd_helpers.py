"""Small helpers shared by the objectd tests: timestamps, raw sockets, object paths."""

from __future__ import annotations

import hashlib
import itertools
import socket
import time

from shoal.timestamp import Timestamp

_ticks = itertools.count()


def ts(offset_s: float = 0.0) -> str:
    """A fresh timestamp, strictly increasing within the test run (10 µs steps)."""
    base = time.time() + offset_s
    return Timestamp(base + next(_ticks) * 0.00001).internal


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def object_put_headers(timestamp: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"X-Timestamp": timestamp or ts(), "Content-Type": "application/octet-stream"}
    headers.update(extra)
    return headers


def raw_request(port: int, head: bytes, body: bytes = b"", *, read: bool = True) -> bytes:
    """Send raw bytes (headers + body) and read until the server closes or answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if not read:
            return b""
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data
