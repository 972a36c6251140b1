"""Stale temp files: where O_TMPFILE is not used, a kill -9 during a PUT leaves a named temp file
in ``<device>/tmp``; objectd removes such files at start-up once they are older than
``tmp_reclaim_age_s``, and never a younger one, which may belong to a PUT in flight.

Method: real files (mtimes set with ``os.utime`` where a test needs an old one) and real objectd
processes started with ``named_temp_files = true``, the option that makes objectd use the named
fallback of filesystems without O_TMPFILE; a raw socket streams a PUT body and the daemon is
killed with SIGKILL while the named temp file grows.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from objectd_harness import ObjectdProcess, hash_dir_of, start_objectd
from objectd_helpers import object_put_headers, ts

from objectd.config import load_config
from objectd.daemon_config import load_daemon_config
from objectd.tmp_reclaim import TMP_RECLAIM_AGE_S_DEFAULT, reclaim_devices, reclaim_tmp_dir
from shoal.config import ConfigError

DAY_S = 86400.0
CHUNK = os.urandom(64 * 1024)
BODY_BYTES = 16 * 1024 * 1024  # announced (and fallocated at once); never all sent before the kill
WAIT_S = 20.0


def _age(path: Path, seconds: float) -> None:
    """Set ``path``'s mtime ``seconds`` into the past (as if nothing had written it since)."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


# --- the reclaim itself, on real files ----------------------------------------------------------
def test_only_regular_files_older_than_the_age_are_removed(tmp_path: Path):
    tmp = tmp_path / "sda" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "crashed.tmp").write_bytes(b"x" * 1000)
    _age(tmp / "crashed.tmp", 2 * DAY_S)
    (tmp / "in-flight.tmp").write_bytes(b"y" * 10)
    _age(tmp / "in-flight.tmp", DAY_S - 60)
    (tmp / "old-dir").mkdir()
    _age(tmp / "old-dir", 2 * DAY_S)
    outside = tmp_path / "precious"
    outside.write_bytes(b"z")
    (tmp / "old-link").symlink_to(outside)
    _age(tmp / "old-link", 2 * DAY_S)

    report = reclaim_tmp_dir(tmp, DAY_S)

    assert sorted(p.name for p in tmp.iterdir()) == ["in-flight.tmp", "old-dir", "old-link"]
    assert outside.read_bytes() == b"z"
    assert (report.removed, report.removed_bytes, report.kept, report.errors) == (1, 1000, 1, 0)
    assert reclaim_tmp_dir(tmp_path / "missing" / "tmp", DAY_S).as_dict() == {
        "removed": 0,
        "removed_bytes": 0,
        "kept": 0,
        "errors": 0,
    }
    with pytest.raises(ValueError, match="age_s"):
        reclaim_tmp_dir(tmp, 0)


def test_every_device_is_swept_and_mount_check_skips_unmounted_ones(tmp_path: Path):
    for device in ("sda", "sdb"):
        (tmp_path / device / "tmp").mkdir(parents=True)
        (tmp_path / device / "tmp" / "stale.tmp").write_bytes(b"x")
        _age(tmp_path / device / "tmp" / "stale.tmp", 2 * DAY_S)
    (tmp_path / "sdc").mkdir()  # a device without tmp
    (tmp_path / "not-a-device").write_bytes(b"")

    # temp directories are not mount points: their tmp would be the root filesystem's
    assert reclaim_devices(tmp_path, DAY_S, mount_check=True).removed == 0
    assert reclaim_devices(tmp_path, DAY_S, mount_check=False).removed == 2
    assert not list(tmp_path.glob("*/tmp/*"))


# --- the options ---------------------------------------------------------------------------------
def test_options_defaults_and_checks(tmp_path: Path):
    config = load_config(None)
    assert config.tmp_reclaim_age_s == TMP_RECLAIM_AGE_S_DEFAULT == DAY_S
    assert config.named_temp_files is False
    with pytest.raises(ConfigError, match="tmp_reclaim_age_s"):
        load_config(None, {"tmp_reclaim_age_s": 0})
    with pytest.raises(ConfigError, match="client_timeout_s"):  # a live PUT could lose its file
        load_config(None, {"tmp_reclaim_age_s": 30.0, "client_timeout_s": 60.0})
    path = tmp_path / "node.toml"
    path.write_text("[objectd]\ntmp_reclaim_age_s = 7200.0\n[auditor]\n")
    assert load_daemon_config(path, "auditor").tmp_reclaim_age_s == 7200.0  # shared
    path.write_text("[objectd]\ntmp_reclaim_age_s = 7200.0\n[auditor]\ntmp_reclaim_age_s = 60.0\n")
    assert load_daemon_config(path, "auditor").tmp_reclaim_age_s == 60.0


# --- a real objectd on the named-temp-file path --------------------------------------------------
def _temp_files(process: ObjectdProcess) -> list[Path]:
    tmp = process.devices / "sda" / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def _visible_files(process: ObjectdProcess) -> list[str]:
    """Every file of the device outside tmp (SQLite's -wal/-shm come and go)."""
    found = []
    for directory, _, files in os.walk(process.devices / "sda"):
        if Path(directory).name != "tmp":
            found += [os.path.join(directory, n) for n in files if not n.endswith(("-wal", "-shm"))]
    return sorted(found)


def _open_put(process: ObjectdProcess, path: str, headers: dict[str, str]) -> socket.socket:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=WAIT_S)
    sock.sendall(
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY_BYTES}\r\n{head}\r\n".encode()
    )
    return sock


def _send_until_temp_file(process: ObjectdProcess, sock: socket.socket, sent_min: int) -> Path:
    """Stream chunks until at least ``sent_min`` bytes are sent and the PUT's named temp file
    is in tmp; return it (O_TMPFILE would leave nothing to see there)."""
    deadline = time.monotonic() + WAIT_S
    sent = 0
    while time.monotonic() < deadline:
        sock.sendall(CHUNK)
        sent += len(CHUNK)
        assert sent < BODY_BYTES
        temps = _temp_files(process)
        if temps and sent >= sent_min:
            assert len(temps) == 1 and temps[0].suffix == ".tmp", temps
            return temps[0]
        time.sleep(0.005)
    raise AssertionError(f"no named temp file in tmp: {_temp_files(process)}")


def _container_setup(process: ObjectdProcess) -> dict[str, str]:
    assert process.request("PUT", "/sda/5/AUTH_t/box", headers={"X-Timestamp": ts()}).ok
    return {
        "X-Container-Host": f"127.0.0.1:{process.port}",
        "X-Container-Device": "sda",
        "X-Container-Partition": "5",
    }


def test_kill_9_leaves_a_temp_file_that_the_restart_reclaims(tmp_path: Path):
    age_s = 2.0  # short, so the test need not wait a day; longer than client_timeout_s
    process = start_objectd(
        tmp_path / "node", named_temp_files=True, client_timeout_s=1.0, tmp_reclaim_age_s=age_s
    )
    try:
        update = _container_setup(process)
        old = os.urandom(200_000)
        path = "/sda/5/AUTH_t/box/obj"
        put = process.request("PUT", path, data=old, headers=object_put_headers(ts(), **update))
        assert put.status_code == 201 and _temp_files(process) == []
        files_before = _visible_files(process)

        sock = _open_put(process, path, object_put_headers(ts(), **update))
        with sock:
            leftover = _send_until_temp_file(process, sock, 8 * len(CHUNK))
            process.kill()
        assert _temp_files(process) == [leftover]  # what the crash left: a named temp file

        time.sleep(max(0.0, leftover.stat().st_mtime + age_s + 0.2 - time.time()))
        process.start()

        assert _temp_files(process) == []
        assert "removed stale temp file" in process.log_text()
        got = process.request("GET", path)
        assert got.status_code == 200
        assert hashlib.md5(got.content).digest() == hashlib.md5(old).digest()
        assert _visible_files(process) == files_before  # no partial object anywhere
        listing = process.request("GET", "/sda/5/AUTH_t/box").json()
        assert [(row["name"], row["bytes"]) for row in listing] == [("obj", len(old))]
    finally:
        process.stop()


def test_kill_9_during_a_first_put_leaves_no_object_after_restart(tmp_path: Path):
    process = start_objectd(
        tmp_path / "node", named_temp_files=True, client_timeout_s=0.5, tmp_reclaim_age_s=1.0
    )
    try:
        path = "/sda/5/AUTH_t/box/fresh"
        with _open_put(process, path, object_put_headers(ts())) as sock:
            leftover = _send_until_temp_file(process, sock, 2 * len(CHUNK))
            process.kill()
        time.sleep(max(0.0, leftover.stat().st_mtime + 1.2 - time.time()))
        process.start()
        assert _temp_files(process) == []
        assert process.request("GET", path).status_code == 404
        assert not hash_dir_of(process, "sda", 5, "AUTH_t", "box", "fresh").exists()
    finally:
        process.stop()


def test_restart_keeps_young_temp_files(tmp_path: Path):
    process = start_objectd(tmp_path / "node")  # the default age: a day
    try:
        process.stop()
        tmp = process.devices / "sda" / "tmp"
        tmp.mkdir(exist_ok=True)
        (tmp / "crashed.tmp").write_bytes(b"x")
        _age(tmp / "crashed.tmp", DAY_S + 60)
        (tmp / "recent.tmp").write_bytes(b"y")
        _age(tmp / "recent.tmp", DAY_S - 600)
        process.start()
        assert [p.name for p in _temp_files(process)] == ["recent.tmp"]
    finally:
        process.stop()


def test_a_put_in_flight_keeps_its_temp_file_through_reclaims(tmp_path: Path):
    """A reclaim with an age shorter than the PUT lasts: the temp file is written all along, so
    its mtime stays young and the PUT completes."""
    process = start_objectd(tmp_path / "node", named_temp_files=True)
    try:
        path = "/sda/5/AUTH_t/box/slow"
        chunks = 120  # 7.5 MiB, at least 3 s with the pauses below: longer than the age
        body = CHUNK * chunks
        headers = object_put_headers(ts())
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with socket.create_connection(("127.0.0.1", process.port), timeout=WAIT_S) as sock:
            sock.sendall(
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n{head}\r\n".encode()
            )
            kept = 0
            for _ in range(chunks):
                sock.sendall(CHUNK)
                time.sleep(0.025)
                report = reclaim_devices(process.devices, 1.0, mount_check=False)
                assert report.removed == 0
                kept += report.kept
            assert kept > 0  # the reclaims did see the in-flight temp file
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        got = process.request("GET", path)
        assert got.status_code == 200 and got.content == body
        assert _temp_files(process) == []
    finally:
        process.stop()
