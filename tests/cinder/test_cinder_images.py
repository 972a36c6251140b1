"""copy_image_to_volume done by blockd itself: the image goes from Glance's URL into the volume.

Goal: creating a volume from an image, or an image from a volume, never needs an iSCSI attach
on the cinder-volume host.
Method: the driver (inside Cinder's VolumeManager process) asks blockd to download
``<glance>/v2/images/<id>/file`` (or to PUT the volume there); the Glance side is a stand-in: an
HTTP server in this process that serves and stores image bytes and records the requests (Glance
itself is not installed).
The volume is then attached through Cinder and read through iSCSI.
"""

from __future__ import annotations

import contextlib
import http.server
import os
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


def test_a_qcow2_image_is_refused_and_a_missing_one_fails(cinder):
    volume = cinder.call("create_volume", size=1)
    with image_server({}) as (url, seen):
        with pytest.raises(CinderCallError) as refused:
            meta = {"disk_format": "qcow2", "container_format": "bare"}
            cinder.call("copy_image", volume_id=volume["id"], image_id=str(uuid.uuid4()),
                        glance_url=url, meta=meta)  # fmt: skip
        assert refused.value.type == "ImageUnacceptable" and seen == []
        with pytest.raises(CinderCallError) as failed:
            meta = {"disk_format": "raw", "container_format": "bare"}
            cinder.call("copy_image", volume_id=volume["id"], image_id=str(uuid.uuid4()),
                        glance_url=url, meta=meta)  # fmt: skip
        assert failed.value.type == "ImageCopyFailure" and "404" in failed.value.message
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
