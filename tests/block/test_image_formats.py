"""Image imports in formats other than raw: blockd downloads, checks with ``qemu-img info`` and
converts with ``qemu-img convert`` into the new volume (Cinder's ``fetch_to_raw``).

Goal: a qcow2, vmdk, vdi or vhd image lands in the volume byte for byte, and an image that is
unsafe (a backing file or an external data file naming a host path, a format other than the
declared one) or larger than the volume is refused (the task fails with status 400) without
touching the volume. Method: images made here by ``qemu-img convert`` from a raw file of known
content (random data with a hole between, so sparse runs are converted too), served by a loopback
HTTP server, imported by a real blockd (reflink on XFS, tgtd) and read back from the volume's file;
one of them also through iSCSI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shoal.units import GiB, MiB
from tests.block.support import BlockdClient, BlockdProcess, ImageServer, run, wait_task

pytestmark = [pytest.mark.root]

HEAD_BYTES = 3 * MiB + 4096  # data, then a hole, then more data: the zero run stays a hole
TAIL_OFFSET = 40 * MiB
TAIL_BYTES = 1 * MiB


@pytest.fixture(scope="module")
def content(tmp_path_factory) -> tuple[Path, bytes, bytes]:
    directory = tmp_path_factory.mktemp("images")
    head, tail = os.urandom(HEAD_BYTES), os.urandom(TAIL_BYTES)
    raw = directory / "source.raw"
    with raw.open("wb") as f:
        f.write(head)
        f.seek(TAIL_OFFSET)
        f.write(tail)
    return raw, head, tail


@pytest.fixture(scope="module")
def server(content):
    server = ImageServer(content[0].parent)
    try:
        yield server
    finally:
        server.close()


def qemu_img(*argv: str) -> None:
    subprocess.run(["qemu-img", *argv], check=True, capture_output=True, timeout=120)


def import_image(node, server, name: str, disk_format: str) -> tuple[dict, dict]:
    body = {"size_gib": 1, "image": {"url": f"{server.url}/{name}", "disk_format": disk_format}}
    status, data = node.api.call("POST", "/v1/volumes", body)
    assert status == 202, data
    return data["volume"], wait_task(node.api, data["task"]["id"])


def volume_file(node, volume: dict) -> Path:
    return node.mount / "volumes" / f"volume-{volume['id']}"


def no_download_left(node) -> bool:
    return not list((node.mount / "volumes").glob(".tmp-image-*"))


@pytest.mark.parametrize(
    ("disk_format", "qemu_format"),
    [("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vdi", "vdi"), ("vhd", "vpc")],
)
def test_an_image_is_converted_into_the_volume(node, content, server, disk_format, qemu_format):
    raw, head, tail = content
    name = f"image-{disk_format}"
    qemu_img("convert", "-f", "raw", "-O", qemu_format, str(raw), str(raw.parent / name))
    volume, task = import_image(node, server, name, disk_format)
    assert task["state"] == "done" and task["progress"] == 1.0, task
    assert task["phase"] == "converting" and task["done_bytes"] == task["total_bytes"], task
    assert task["total_bytes"] >= TAIL_OFFSET + TAIL_BYTES  # the virtual size (vhd rounds up)
    with volume_file(node, volume).open("rb") as f:
        assert f.read(HEAD_BYTES) == head
        assert f.read(TAIL_OFFSET - HEAD_BYTES) == bytes(TAIL_OFFSET - HEAD_BYTES)
        assert f.read(TAIL_BYTES) == tail
        f.seek(GiB - MiB)
        assert f.read() == bytes(MiB)
    assert no_download_left(node)
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)


def test_a_qcow2_image_reads_back_through_iscsi(node, content, server):
    raw, head, tail = content
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(raw.parent / "c.qcow2"))
    volume, task = import_image(node, server, "c.qcow2", "qcow2")  # compressed clusters
    assert task["state"] == "done", task
    export = node.export(volume["id"])
    assert node.initiator.read(export, HEAD_BYTES) == head
    assert node.initiator.read(export, TAIL_BYTES, offset=TAIL_OFFSET) == tail


def refused(node, server, name: str, disk_format: str) -> str:
    volume, task = import_image(node, server, name, disk_format)
    assert task["state"] == "failed" and task["error_status"] == 400, task
    with volume_file(node, volume).open("rb") as f:
        assert f.read(4 * MiB) == bytes(4 * MiB)  # nothing was written
    assert no_download_left(node)
    node.api.ok("DELETE", f"/v1/volumes/{volume['id']}", status=204)
    return task["error"]


def test_an_image_larger_than_the_volume_is_refused(node, content, server):
    directory = content[0].parent
    qemu_img("create", "-f", "qcow2", str(directory / "big.qcow2"), "2G")  # 2 GiB virtual
    assert "larger than the volume" in refused(node, server, "big.qcow2", "qcow2")
    with (directory / "huge.qcow2").open("wb") as f:
        f.truncate(2 * GiB)  # a 2 GiB download: refused from its Content-Length, never fetched
    assert "larger than the volume" in refused(node, server, "huge.qcow2", "qcow2")


def test_an_image_naming_another_file_is_refused(node, content, server):
    raw, head, _ = content
    directory = raw.parent
    secret = directory / "host-secret"
    secret.write_bytes(head[:MiB])  # a host file a tenant should never read through a volume
    qemu_img("create", "-f", "qcow2", "-b", str(secret), "-F", "raw",
             str(directory / "backed.qcow2"), "1M")  # fmt: skip
    assert "backing file" in refused(node, server, "backed.qcow2", "qcow2")
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on",
             str(directory / "datafile.qcow2"), "1M")  # fmt: skip
    assert "data file" in refused(node, server, "datafile.qcow2", "qcow2")


def test_an_image_of_another_format_than_declared_is_refused(node, content, server):
    raw = content[0]
    assert "content is raw" in refused(node, server, raw.name, "qcow2")
    qemu_img("convert", "-f", "raw", "-O", "vdi", str(raw), str(raw.parent / "really.vdi"))
    assert "content is vdi" in refused(node, server, "really.vdi", "vmdk")


def test_an_unknown_disk_format_is_a_400(node, server):
    before = node.api.ok("GET", "/v1/volumes")["volumes"]
    body = {"size_gib": 1, "image": {"url": f"{server.url}/x", "disk_format": "iso"}}
    status, data = node.api.call("POST", "/v1/volumes", body)
    assert status == 400 and "disk_format" in data["error"]["message"], data
    body = {"size_gib": 1, "image": {"url": f"{server.url}/x", "colour": "red"}}
    status, data = node.api.call("POST", "/v1/volumes", body)
    assert status == 400 and "colour" in data["error"]["message"], data
    assert node.api.ok("GET", "/v1/volumes")["volumes"] == before  # refused before any volume


def test_no_room_for_the_download_is_507_and_leftovers_go_at_start(node, content, server, tmp_path):
    """``image_conversion_dir`` on a 2 MiB tmpfs: a stale download there is removed when blockd
    starts, and a 4 MiB qcow2 is refused (507) before any byte is downloaded."""
    raw = content[0]
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(raw.parent / "room.qcow2"))
    small = tmp_path / "conversion"
    small.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(small))
    node.blockd.stop()
    other = BlockdProcess(tmp_path, {**node.config, "image_conversion_dir": str(small)})
    try:
        (small / ".tmp-image-left-by-a-crash").write_bytes(bytes(MiB))
        other.start()
        assert list(small.iterdir()) == []
        api = BlockdClient(other.url)
        image = {"url": f"{server.url}/room.qcow2", "disk_format": "qcow2"}
        status, data = api.call("POST", "/v1/volumes", {"size_gib": 1, "image": image})
        assert status == 202, data
        task = wait_task(api, data["task"]["id"])
        assert task["state"] == "failed" and task["error_status"] == 507, task
        assert task["done_bytes"] == 0 and "free" in task["error"], task
        assert list(small.iterdir()) == []
    finally:
        other.stop()
        run("umount", str(small), check=False)
        node.restart_blockd()
