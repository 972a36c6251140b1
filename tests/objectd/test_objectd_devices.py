"""Devices: 507 for a missing, unmounted or full device; injected disk faults leave nothing
partial; metadata at Swift's maximums on a freshly made ext4.

Method: an objectd of its own per test, configured for the case (mount_check,
fallocate_reserve, fault_injection). Root-only cases mount real filesystems (an ext4 loop
image, a tiny tmpfs) and are marked ``root``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from objectd_harness import filesystem_type, hash_dir_of, start_objectd
from objectd_helpers import object_put_headers, ts

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to mount filesystems")


def _put(process, name: str, body: bytes = b"data", device: str = "sda", **headers):
    return process.request(
        "PUT", f"/{device}/1/AUTH_d/c/{name}", data=body, headers=object_put_headers(**headers)
    )


def test_missing_device_is_507_for_every_kind_of_request(fresh_objectd):
    stamp = {"X-Timestamp": ts()}
    assert _put(fresh_objectd, "o", device="sdz").status_code == 507
    assert fresh_objectd.request("GET", "/sdz/1/AUTH_d/c/o").status_code == 507
    assert fresh_objectd.request("DELETE", "/sdz/1/AUTH_d/c/o", headers=stamp).status_code == 507
    assert fresh_objectd.request("PUT", "/sdz/1/AUTH_d/c", headers=stamp).status_code == 507
    assert fresh_objectd.request("HEAD", "/sdz/1/AUTH_d").status_code == 507


def test_a_device_removed_while_running_is_507(fresh_objectd):
    assert _put(fresh_objectd, "before").status_code == 201
    shutil.rmtree(fresh_objectd.devices / "sda")
    assert _put(fresh_objectd, "after").status_code == 507
    assert fresh_objectd.request("GET", "/sda/1/AUTH_d/c/before").status_code == 507


def test_a_device_added_while_running_is_served(fresh_objectd):
    fresh_objectd.add_device("sdq")
    time.sleep(0.2)  # unknown names trigger a rescan at most every 0.1 s
    assert _put(fresh_objectd, "o", device="sdq").status_code == 201


def test_mount_check_refuses_a_device_that_is_a_plain_directory(tmp_path):
    process = start_objectd(tmp_path, mount_check=True)
    try:
        assert _put(process, "o").status_code == 507
        assert process.request("GET", "/sda/1/AUTH_d/c/o").status_code == 507
    finally:
        process.stop()


def test_fallocate_reserve_percent_makes_puts_507_but_deletes_still_work(tmp_path):
    process = start_objectd(tmp_path, fallocate_reserve="99.9999%")
    try:
        assert _put(process, "o").status_code == 507
        assert not hash_dir_of(process, "sda", 1, "AUTH_d", "c", "o").exists()
        response = process.request("DELETE", "/sda/1/AUTH_d/c/o", headers={"X-Timestamp": ts()})
        assert response.status_code == 404  # a tombstone could still be written
    finally:
        process.stop()


def test_fallocate_reserve_in_bytes(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    process = start_objectd(tmp_path, fallocate_reserve=str(free + 10**9))
    try:
        assert _put(process, "o").status_code == 507
    finally:
        process.stop()


def test_fault_fsync_eio_fails_the_put_and_leaves_nothing(tmp_path):
    process = start_objectd(tmp_path, fault_injection="fsync@1=EIO")
    try:
        assert _put(process, "first").status_code == 500
        assert not hash_dir_of(process, "sda", 1, "AUTH_d", "c", "first").exists()
        assert _put(process, "second").status_code == 201  # only the first fsync was faulted
        assert "EIO" in process.log_text() or "Input/output" in process.log_text()
    finally:
        process.stop()


def test_fault_enospc_on_write_is_507_for_large_and_small_puts(tmp_path):
    process = start_objectd(tmp_path, fault_injection="write@1+=ENOSPC")
    try:
        assert _put(process, "small").status_code == 507
        assert _put(process, "large", os.urandom(3 * 1024 * 1024)).status_code == 507
        tmp_dir = process.devices / "sda" / "tmp"
        assert not tmp_dir.exists() or os.listdir(tmp_dir) == []
    finally:
        process.stop()


def test_fault_on_link_leaves_the_old_version(tmp_path):
    process = start_objectd(tmp_path, fault_injection="link@2=EIO")
    try:
        assert _put(process, "o", b"old").status_code == 201
        assert _put(process, "o", b"new").status_code == 500
        assert process.request("GET", "/sda/1/AUTH_d/c/o").content == b"old"
    finally:
        process.stop()


# --- real filesystems (root) --------------------------------------------------------------------
def _mount(kind: str, target: Path, *, image: Path | None = None, size: str = "") -> None:
    target.mkdir(parents=True, exist_ok=True)
    if kind == "ext4":
        assert image is not None
        subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(target)], check=True)
    else:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], check=True
        )


@pytest.fixture
def ext4_device(tmp_path):
    if not IS_ROOT or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4")
    target = tmp_path / "node" / "devices" / "sda"
    _mount("ext4", target, image=tmp_path / "ext4.img")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.root
@needs_root
def test_mount_check_accepts_a_mounted_ext4_device_and_max_metadata_fits(ext4_device, monkeypatch):
    import http.client

    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)
    from test_objectd_object_reads import _swift_max_metadata

    assert filesystem_type(ext4_device) == "ext4"
    process = start_objectd(ext4_device.parent.parent, devices=(), mount_check=True)
    try:
        headers = _swift_max_metadata()
        response = _put(process, "N" * 1024, b"payload", **headers)
        assert response.status_code == 201
        got = process.request("GET", "/sda/1/AUTH_d/c/" + "N" * 1024)
        assert got.content == b"payload"
        assert all(got.headers[key] == value for key, value in headers.items())
    finally:
        process.stop()


@pytest.fixture
def tiny_tmpfs_device(tmp_path):
    if not IS_ROOT:
        pytest.skip("needs root")
    target = tmp_path / "node" / "devices" / "sda"
    _mount("tmpfs", target, size="2m")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.root
@needs_root
def test_a_really_full_device_answers_507_and_keeps_nothing(tiny_tmpfs_device):
    process = start_objectd(tiny_tmpfs_device.parent.parent, devices=(), fallocate_reserve="0")
    try:
        assert _put(process, "big", os.urandom(4 * 1024 * 1024)).status_code == 507
        chunked = iter([os.urandom(512 * 1024) for _ in range(8)])  # no length: fails mid-write
        response = process.request(
            "PUT", "/sda/1/AUTH_d/c/chunked", data=chunked, headers=object_put_headers()
        )
        assert response.status_code == 507
        assert process.request("HEAD", "/sda/1/AUTH_d/c/big").status_code == 404
        assert process.request("HEAD", "/sda/1/AUTH_d/c/chunked").status_code == 404
        assert _put(process, "small", b"still fits").status_code == 201
    finally:
        process.stop()


def test_two_workers_share_the_port_devices_and_databases(tmp_path):
    """Workers are separate processes: objects and SQLite databases must work across them."""
    import concurrent.futures

    process = start_objectd(tmp_path, workers=2)
    try:
        stamp = {"X-Timestamp": ts()}
        assert process.request("PUT", "/sda/2/AUTH_w/box", headers=stamp).status_code == 201
        me = {
            "X-Container-Host": f"127.0.0.1:{process.port}",
            "X-Container-Device": "sda",
            "X-Container-Partition": "2",
        }

        def put(index: int) -> int:
            import requests

            response = requests.put(
                f"{process.base_url}/sda/1/AUTH_w/box/o{index}",
                data=b"x" * index,
                headers=object_put_headers(**me),
                timeout=30,
            )
            return response.status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(put, range(40))) == {201}
        listing = process.request("GET", "/sda/2/AUTH_w/box").json()
        assert len(listing) == 40
        head = process.request("HEAD", "/sda/2/AUTH_w/box").headers
        assert head["X-Container-Object-Count"] == "40"
        assert head["X-Container-Bytes-Used"] == str(sum(range(40)))
    finally:
        process.stop()
