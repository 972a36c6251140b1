"""Crash safety: kill -9 objectd while a large PUT streams; after a restart the object is the
old version (or absent), never partial, and no temp file is visible anywhere.

Method: a real objectd; a raw socket streams a large body slowly; SIGKILL lands at a random
point (seeded, printed on failure); the daemon restarts on the same files and the object, its
hash directory, the device's tmp directory and the container listing are checked.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time

import pytest
from objectd_harness import hash_dir_of
from objectd_helpers import object_put_headers, ts

OLD = os.urandom(3 * 1024 * 1024 + 11)
NEW_SIZE = 64 * 1024 * 1024
CHUNK = os.urandom(256 * 1024)


def _visible_files(process) -> list[str]:
    """Every file under the device (SQLite's -wal/-shm come and go with connections)."""
    found = []
    for directory, _, files in os.walk(process.devices / "sda"):
        found += [os.path.join(directory, n) for n in files if not n.endswith(("-wal", "-shm"))]
    return found


def _stream_then_kill(process, path: str, stamp: str, kill_after_s: float, headers: dict) -> None:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Timestamp: {stamp}\r\n{head}"
        f"Content-Type: application/octet-stream\r\nContent-Length: {NEW_SIZE}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", process.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + kill_after_s
        sent = 0
        while time.monotonic() < deadline and sent + len(CHUNK) < NEW_SIZE:
            sock.sendall(CHUNK)
            sent += len(CHUNK)
            time.sleep(0.01)
        process.kill()
    assert sent < NEW_SIZE  # the body was never complete


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_during_a_large_put_leaves_the_old_version(fresh_objectd, seed):
    rng = random.Random(seed)
    process = fresh_objectd
    path = "/sda/5/AUTH_c/box/obj"
    container_headers = {"X-Timestamp": ts()}
    assert process.request("PUT", "/sda/5/AUTH_c/box", headers=container_headers).status_code == 201
    update = {
        "X-Container-Host": f"127.0.0.1:{process.port}",
        "X-Container-Device": "sda",
        "X-Container-Partition": "5",
    }
    response = process.request("PUT", path, data=OLD, headers=object_put_headers(ts(), **update))
    assert response.status_code == 201
    files_before = sorted(_visible_files(process))

    kill_after_s = rng.uniform(0.1, 1.0)
    _stream_then_kill(process, path, ts(), kill_after_s, update)
    process.start()

    got = process.request("GET", path)
    assert got.status_code == 200, f"seed {seed}"
    assert hashlib.md5(got.content).hexdigest() == hashlib.md5(OLD).hexdigest(), f"seed {seed}"
    assert sorted(_visible_files(process)) == files_before, f"seed {seed}: new files appeared"
    listing = process.request("GET", "/sda/5/AUTH_c/box").json()
    assert [row["name"] for row in listing] == ["obj"]
    assert listing[0]["bytes"] == len(OLD)


def test_kill_9_during_the_first_put_leaves_no_object(fresh_objectd):
    process = fresh_objectd
    path = "/sda/5/AUTH_c/box/fresh"
    _stream_then_kill(process, path, ts(), 0.5, {})
    process.start()
    assert process.request("GET", path).status_code == 404
    assert not hash_dir_of(process, "sda", 5, "AUTH_c", "box", "fresh").exists()
    assert _visible_files(process) == []
