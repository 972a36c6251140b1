"""python-swiftclient (library and the ``swift`` CLI) against a real ``shoal aio``: the
round trips a Swift user does first. Method: real processes, real sockets, byte comparisons."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import swiftclient

from tests.proxy.aio_harness import AioCluster
from tests.proxy.conftest import connect


def swift_cli(aio: AioCluster, *args: str, user: str = "test:tester", key: str = "testing"):
    swift = Path(sys.executable).with_name("swift")
    argv = [str(swift), "-A", aio.auth_url, "-U", user, "-K", key, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_cli_upload_then_download_is_byte_identical(aio: AioCluster, tmp_path: Path):
    payloads = {"small.txt": b"hello shoal\n", "big.bin": os.urandom(3 * 1024 * 1024 + 17)}
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
    upload = swift_cli(aio, "upload", "--object-name", "dir", "cli", str(tmp_path))
    assert upload.returncode == 0, upload.stderr
    listing = swift_cli(aio, "list", "cli")
    assert listing.stdout.split() == ["dir/big.bin", "dir/small.txt"]
    out = tmp_path / "out"
    download = swift_cli(aio, "download", "cli", "-D", str(out))
    assert download.returncode == 0, download.stderr
    for name, data in payloads.items():
        assert (out / "dir" / name).read_bytes() == data
    stat = swift_cli(aio, "stat", "cli")
    assert "Objects: 2" in stat.stdout
    delete = swift_cli(aio, "delete", "cli")
    assert delete.returncode == 0, delete.stderr
    assert "cli" not in swift_cli(aio, "list").stdout.split()


def test_library_put_get_head_delete_object(swift: swiftclient.Connection, container: str):
    data = os.urandom(100_000)
    etag = swift.put_object(container, "a/b c", data, content_type="application/x-test")
    assert etag == hashlib.md5(data).hexdigest()
    headers, body = swift.get_object(container, "a/b c")
    assert body == data
    assert headers["content-type"] == "application/x-test"
    assert headers["etag"] == etag
    assert swift.head_object(container, "a/b c")["content-length"] == str(len(data))
    swift.delete_object(container, "a/b c")
    try:
        swift.head_object(container, "a/b c")
    except swiftclient.ClientException as exc:
        assert exc.http_status == 404
    else:
        raise AssertionError("deleted object still readable")


def test_chunked_upload_of_a_large_body_round_trips(swift: swiftclient.Connection, container: str):
    parts = [os.urandom(256 * 1024) for _ in range(9)]
    swift.put_object(container, "chunked", contents=iter(parts), chunk_size=65536)
    _, body = swift.get_object(container, "chunked")
    assert body == b"".join(parts)


def test_object_metadata_post_replaces_user_metadata(swift: swiftclient.Connection, container: str):
    swift.put_object(
        container, "m", b"x", content_type="text/x-shape", headers={"X-Object-Meta-Color": "blue"}
    )
    assert swift.head_object(container, "m")["x-object-meta-color"] == "blue"
    swift.post_object(container, "m", headers={"X-Object-Meta-Shape": "round"})
    headers = swift.head_object(container, "m")
    assert headers["x-object-meta-shape"] == "round"
    assert "x-object-meta-color" not in headers
    assert headers["content-type"] == "text/x-shape"  # a POST without Content-Type keeps it
    swift.post_object(container, "m", headers={"Content-Type": "text/x-new"})
    assert swift.head_object(container, "m")["content-type"] == "text/x-new"


def test_container_and_account_metadata_and_counts(swift: swiftclient.Connection, container: str):
    swift.post_container(container, {"X-Container-Meta-Owner": "team-a"})
    swift.put_object(container, "one", b"12345")
    headers = swift.head_container(container)
    assert headers["x-container-meta-owner"] == "team-a"
    assert headers["x-container-object-count"] == "1"
    assert headers["x-container-bytes-used"] == "5"
    swift.post_account({"X-Account-Meta-Project": "shoal"})
    account = swift.head_account()
    assert account["x-account-meta-project"] == "shoal"
    names = [c["name"] for c in swift.get_account(full_listing=True)[1]]
    assert container in names


def test_storage_policy_is_chosen_at_creation(swift: swiftclient.Connection, container: str):
    swift.put_container(container + "-silver", headers={"X-Storage-Policy": "silver"})
    assert swift.head_container(container + "-silver")["x-storage-policy"] == "silver"
    swift.put_object(container + "-silver", "o", b"silver data")
    assert swift.get_object(container + "-silver", "o")[1] == b"silver data"
    assert swift.head_container(container)["x-storage-policy"] == "gold"


def test_data_survives_a_restart(aio: AioCluster, tmp_path: Path):
    """A second aio on its own directory: stop it, start it again, read what it stored."""
    cluster = AioCluster(tmp_path / "data").start()
    try:
        conn = connect(cluster)
        conn.put_container("keep")
        conn.put_object("keep", "o", b"still here")
        cluster.stop()
        cluster.start()
        assert connect(cluster).get_object("keep", "o")[1] == b"still here"
    finally:
        assert cluster.stop() == 0


def test_cli_segmented_upload_round_trips(aio: AioCluster, tmp_path: Path):
    """/info does not advertise SLO, so ``swift upload --segment-size`` makes a DLO."""
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "seg.bin").write_bytes(data)
    upload = swift_cli(aio, "upload", "--segment-size", "1048576", "seg", str(tmp_path / "seg.bin"))
    assert upload.returncode == 0, upload.stderr
    out = tmp_path / "out.bin"
    assert (
        swift_cli(
            aio, "download", "seg", str(tmp_path / "seg.bin").lstrip("/"), "-o", str(out)
        ).returncode
        == 0
    )
    assert out.read_bytes() == data


def test_x_newest_reads_the_newest_replica(swift: swiftclient.Connection, container: str):
    swift.put_object(container, "n", b"first")
    swift.put_object(container, "n", b"second")
    headers, body = swift.get_object(container, "n", headers={"X-Newest": "true"})
    assert body == b"second"
    assert (
        swift.head_object(container, "n", headers={"X-Newest": "true"})["etag"] == headers["etag"]
    )
