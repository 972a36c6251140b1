"""copy_image_to_volume done by blockd itself: the image goes from Glance's URL into the volume.

Goal: creating a volume from an image, or an image from a volume, never needs an iSCSI attach
on the cinder-volume host.
Method: the driver (inside Cinder's VolumeManager process) asks blockd to download
``<glance>/v2/images/<id>/file`` (or to PUT the volume there); the Glance side is a stand-in: an
HTTP server in this process that serves and stores image bytes and records the requests (Glance
itself is not installed).
The volume is then attached through Cinder and read through iSCSI. A qcow2 image is converted by
blockd (qemu-img), and refused when unsafe (a backing file) or larger than the volume.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from shoal.units import GiB, MiB
from tests.cinder.support import CinderCallError, attach, blockd_with_backup_routes

pytestmark = [pytest.mark.root, pytest.mark.slow]


@contextlib.contextmanager
def image_server(images: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``GET /v2/images/<id>/file`` from ``images`` (a Glance stand-in) on a free port."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            seen.append("PUT " + self.path)
            image_id = self.path.removeprefix("/v2/images/").removesuffix("/file")
            length = int(self.headers["Content-Length"])
            received = bytearray()
            while len(received) < length:
                received += self.rfile.read(min(1 << 20, length - len(received)))
            images[image_id] = bytes(received)
            self.send_response(204)
            self.end_headers()

        def do_GET(self):
            seen.append(self.path)
            image_id = self.path.removeprefix("/v2/images/").removesuffix("/file")
            data = images.get(image_id)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_blockd_downloads_a_raw_image_into_the_volume(cinder, node):
    image_id, image = str(uuid.uuid4()), os.urandom(3 * MiB)
    with image_server({image_id: image}) as (url, seen):
        volume = cinder.call("create_volume", size=1)
        meta = {"disk_format": "raw", "container_format": "bare", "size": len(image)}
        row = cinder.call(
            "copy_image", volume_id=volume["id"], image_id=image_id, glance_url=url, meta=meta
        )
    assert seen == [f"/v2/images/{image_id}/file"]  # fetched by blockd, once
    assert row["deleted"] is False
    attachment, info = attach(cinder, volume["id"])
    assert node.initiator.read(info, len(image)) == image
    assert node.initiator.read(info, MiB, offset=len(image)) == bytes(MiB)
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    cinder.call("delete_volume", volume_id=volume["id"])


def qcow2_of(raw: bytes, workdir, *options: str) -> bytes:
    """A real qcow2 image of ``raw`` (made by qemu-img, as an image builder would)."""
    (workdir / "source.raw").write_bytes(raw)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *options,
         str(workdir / "source.raw"), str(workdir / "image.qcow2")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return (workdir / "image.qcow2").read_bytes()


def test_blockd_converts_a_qcow2_image_into_the_volume(cinder, node, tmp_path):
    """Cinder's LVM driver runs qemu-img convert on the cinder host (fetch_to_raw); here blockd
    downloads the qcow2, checks it with qemu-img info and converts it into the volume."""
    content = os.urandom(2 * MiB) + bytes(5 * MiB) + os.urandom(MiB)
    image_id, image = str(uuid.uuid4()), qcow2_of(content, tmp_path)
    assert image[:4] == b"QFI\xfb" and image[: len(content)] != content
    with image_server({image_id: image}) as (url, seen):
        volume = cinder.call("create_volume", size=1)
        meta = {"disk_format": "qcow2", "container_format": "bare", "size": len(image)}
        cinder.call(
            "copy_image", volume_id=volume["id"], image_id=image_id, glance_url=url, meta=meta
        )
    assert seen == [f"/v2/images/{image_id}/file"]
    attachment, info = attach(cinder, volume["id"])
    assert node.initiator.read(info, len(content)) == content
    assert node.initiator.read(info, MiB, offset=len(content)) == bytes(MiB)
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    cinder.call("delete_volume", volume_id=volume["id"])


def test_unacceptable_images_are_refused_and_a_missing_one_fails(cinder, tmp_path):
    volume = cinder.call("create_volume", size=1)
    too_big = str(uuid.uuid4())  # 2 GiB virtual into a 1 GiB volume
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(tmp_path / "big.qcow2"), "2G"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    backed = str(uuid.uuid4())  # would make qemu-img read a host file into the tenant's volume
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw",
                    str(tmp_path / "backed.qcow2"), "1M"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    images = {
        too_big: (tmp_path / "big.qcow2").read_bytes(),
        backed: (tmp_path / "backed.qcow2").read_bytes(),
    }

    def copy(image_id: str, disk_format: str, container_format: str = "bare", **extra):
        meta = {"disk_format": disk_format, "container_format": container_format, **extra}
        with pytest.raises(CinderCallError) as error:
            cinder.call("copy_image", volume_id=volume["id"], image_id=image_id,
                        glance_url=url, meta=meta)  # fmt: skip
        return error.value

    with image_server(images) as (url, seen):
        refused = copy(str(uuid.uuid4()), "iso")
        assert refused.type == "ImageUnacceptable" and "iso" in refused.message
        refused = copy(str(uuid.uuid4()), "qcow2", "ova")
        assert refused.type == "ImageUnacceptable" and "ova" in refused.message
        assert seen == []  # refused by the driver: nothing was fetched
        refused = copy(too_big, "qcow2", virtual_size=2 * GiB)  # Glance knows: not fetched
        assert refused.type == "ImageUnacceptable" and "larger than the volume" in refused.message
        assert seen == []
        refused = copy(too_big, "qcow2")  # Glance does not know: blockd finds out
        assert refused.type == "ImageUnacceptable" and "larger than the volume" in refused.message
        assert seen == [f"/v2/images/{too_big}/file"]
        refused = copy(backed, "qcow2")
        assert refused.type == "ImageUnacceptable" and "backing file" in refused.message
        failed = copy(str(uuid.uuid4()), "raw")
        assert failed.type == "ImageCopyFailure" and "404" in failed.message
    cinder.call("delete_volume", volume_id=volume["id"])


def test_blockd_uploads_the_volume_as_a_raw_image(cinder, node, tmp_path):
    """The upload route is added by add_backup_routes, which make_app does not call yet: the
    driver is pointed at a blockd in this process that has it, on the same storage and target."""
    volume = cinder.call("create_volume", size=1)
    attachment, info = attach(cinder, volume["id"])
    data = os.urandom(2 * MiB)
    node.initiator.write(info, data, offset=10 * MiB)
    cinder.call("detach", volume_id=volume["id"], attachment_id=attachment)
    images: dict[str, bytes] = {}
    image_id = str(uuid.uuid4())
    with image_server(images) as (url, seen), blockd_with_backup_routes(node, tmp_path) as blockd:
        cinder.call("set_blockd_url", url=blockd)
        try:
            meta = {"id": image_id, "disk_format": "raw", "container_format": "bare"}
            cinder.call("upload_image", volume_id=volume["id"], glance_url=url, meta=meta)
        finally:
            cinder.call("set_blockd_url", url=node.blockd.url)
    assert seen == [f"PUT /v2/images/{image_id}/file"]
    image = images[image_id]
    assert len(image) == GiB
    assert image[10 * MiB : 12 * MiB] == data
    assert image[: 10 * MiB] == bytes(10 * MiB)
    cinder.call("delete_volume", volume_id=volume["id"])
