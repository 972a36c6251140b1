"""rclone's swift backend (Debian's ``rclone``) against a real ``shoal aio``: what an rclone user
does first. rclone keeps modification times in ``X-Object-Meta-Mtime``, checks every transfer by
size and MD5 (ETag), lists with ``format=json`` and ``delimiter``, moves by server-side COPY and
sets times with an object POST, so it exercises more of the API than swiftclient's round trips.

Method: the real binary against the session's cluster, configured by environment variables only
(no config file is read or written); results checked through rclone and, independently, through
python-swiftclient."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import swiftclient

from tests.proxy.aio_harness import AioCluster

RCLONE = shutil.which("rclone")
if RCLONE is None:  # tests/system/packages.txt installs it: a missing binary is a setup error
    raise RuntimeError("rclone is not installed (Debian package rclone, tests/system/packages.txt)")


def rclone_env(aio: AioCluster, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),  # absent: nothing read from ~/.config
        "RCLONE_CONFIG_SHOAL_TYPE": "swift",
        "RCLONE_CONFIG_SHOAL_AUTH": aio.auth_url,
        "RCLONE_CONFIG_SHOAL_USER": "test:tester",
        "RCLONE_CONFIG_SHOAL_KEY": "testing",
    }


def rclone(aio: AioCluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [RCLONE, "--retries", "1", "--low-level-retries", "1", *args]
    env = rclone_env(aio, tmp_path)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def rclone_bytes(
    aio: AioCluster, tmp_path: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """rclone with binary standard input and output (``rcat``, ``cat``)."""
    argv = [RCLONE, "--retries", "1", "--low-level-retries", "1", *args]
    env = rclone_env(aio, tmp_path)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=120, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def listing(aio: AioCluster, tmp_path: Path, remote: str) -> dict[str, dict]:
    entries = json.loads(ok(rclone(aio, tmp_path, "lsjson", "-R", "--files-only", remote)))
    return {entry["Path"]: entry for entry in entries}


@pytest.fixture
def remote() -> str:
    return f"shoal:rc-{uuid.uuid4().hex[:10]}"


def test_copy_then_check_then_sync_converges(aio: AioCluster, tmp_path: Path, remote: str):
    src = tmp_path / "src"
    files = {
        "a.bin": os.urandom(1024 * 1024 + 3),
        "empty": b"",
        "deep/er/x.txt": b"x\n",
        "ünï cødé/ß %20+?.txt": "grüße\n".encode(),
    }
    make_tree(src, files)
    old = datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=datetime.UTC).timestamp()
    os.utime(src / "deep/er/x.txt", (old, old))
    ok(rclone(aio, tmp_path, "copy", str(src), remote))
    ok(rclone(aio, tmp_path, "check", str(src), remote))  # sizes and MD5s, both ways

    remote_files = listing(aio, tmp_path, remote)
    assert {path: entry["Size"] for path, entry in remote_files.items()} == {
        name: len(data) for name, data in files.items()
    }
    assert remote_files["deep/er/x.txt"]["ModTime"].startswith("2021-03-04T05:06:07")

    # a sync removes, replaces and adds; swiftclient sees the same container afterwards
    (src / "a.bin").unlink()
    (src / "deep/er/x.txt").write_bytes(b"changed, longer\n")
    (src / "new.txt").write_bytes(b"new\n")
    ok(rclone(aio, tmp_path, "sync", str(src), remote))
    ok(rclone(aio, tmp_path, "check", str(src), remote))
    swift = swiftclient.Connection(aio.auth_url, "test:tester", "testing", retries=0)
    container = remote.split(":", 1)[1]
    _, objects = swift.get_container(container)
    assert sorted(o["name"] for o in objects) == sorted(
        ["empty", "deep/er/x.txt", "ünï cødé/ß %20+?.txt", "new.txt"]
    )
    assert swift.get_object(container, "deep/er/x.txt")[1] == b"changed, longer\n"


def test_rcat_cat_moveto_touch_and_hashes(aio: AioCluster, tmp_path: Path, remote: str):
    streamed = os.urandom(90_000)  # below --streaming-upload-cutoff (100 KiB): one object
    put = rclone_bytes(aio, tmp_path, "rcat", f"{remote}/in/streamed.bin", stdin=streamed)
    assert put.returncode == 0, put.stderr
    md5 = hashlib.md5(streamed).hexdigest()
    hashes = ok(rclone(aio, tmp_path, "hashsum", "md5", remote))
    assert hashes.split() == [md5, "in/streamed.bin"]

    # server-side move: COPY to the new name, DELETE of the old one
    ok(rclone(aio, tmp_path, "moveto", f"{remote}/in/streamed.bin", f"{remote}/out/moved.bin"))
    assert list(listing(aio, tmp_path, remote)) == ["out/moved.bin"]
    got = rclone_bytes(aio, tmp_path, "cat", f"{remote}/out/moved.bin")
    assert got.returncode == 0 and got.stdout == streamed

    # touch sets the time with a POST of the metadata alone: the Content-Type must survive it
    (tmp_path / "page.html").write_bytes(b"<p>hi</p>\n")
    ok(rclone(aio, tmp_path, "copyto", str(tmp_path / "page.html"), f"{remote}/page.html"))
    before = listing(aio, tmp_path, remote)["page.html"]
    assert before["MimeType"].startswith("text/html")
    ok(rclone(aio, tmp_path, "touch", "-t", "2020-01-02T03:04:05", f"{remote}/page.html"))
    after = listing(aio, tmp_path, remote)["page.html"]
    assert after["ModTime"].startswith("2020-01-02T03:04:05")
    assert after["MimeType"] == before["MimeType"]


def test_purge_removes_the_container(aio: AioCluster, tmp_path: Path, remote: str):
    make_tree(tmp_path / "src", {"one": b"1", "two/three": b"3"})
    ok(rclone(aio, tmp_path, "copy", str(tmp_path / "src"), remote))
    container = remote.split(":", 1)[1]
    assert container in ok(rclone(aio, tmp_path, "lsf", "shoal:")).split("/\n")
    ok(rclone(aio, tmp_path, "purge", remote))
    swift = swiftclient.Connection(aio.auth_url, "test:tester", "testing", retries=0)
    with pytest.raises(swiftclient.ClientException) as gone:
        swift.head_container(container)
    assert gone.value.http_status == 404


def test_large_and_streamed_uploads_round_trip(aio: AioCluster, tmp_path: Path, remote: str):
    """Above ``--swift-chunk-size``, and for a stream above ``--streaming-upload-cutoff`` (whose
    size is unknown when it starts), rclone uploads segments and then a DLO manifest."""
    make_tree(tmp_path / "src", {"big.bin": os.urandom(3 * 1024 * 1024 + 5)})
    ok(rclone(aio, tmp_path, "copy", "--swift-chunk-size", "1M", str(tmp_path / "src"), remote))
    ok(rclone(aio, tmp_path, "check", str(tmp_path / "src"), remote))
    streamed = os.urandom(300_000)
    put = rclone_bytes(aio, tmp_path, "rcat", f"{remote}/streamed.bin", stdin=streamed)
    assert put.returncode == 0, put.stderr
    assert rclone_bytes(aio, tmp_path, "cat", f"{remote}/streamed.bin").stdout == streamed
