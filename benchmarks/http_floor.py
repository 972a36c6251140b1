"""The HTTP floor of objectd_bench: the raw loop's GET file work behind a bare aiohttp handler.

Usage (objectd_bench starts it; by hand from the repository root):
    .venv/bin/python benchmarks/http_floor.py DEVICES_DIR BODY_BYTES
prints ``http floor listening on port N`` and serves until SIGTERM.

``GET /sda/<partition>/<account>/<container>/<object>`` does exactly what ``RawDisk.get`` in
``objectd_bench`` does (list the hash directory, open, read, MD5, close) and answers the body,
with aiohttp and uvloop in one process like objectd, and nothing else: no metadata, no
conditionals, no checks. Its rate is what *any* server on this HTTP stack could reach for the
same file work on this machine, so it tells how much of the gap between objectd and the raw loop
is HTTP itself, and how much is objectd's own work.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop
from aiohttp import web

from objectd.layout import Layout

SEED_HEX = "b3c4b3c4b3c4b3c4b3c4b3c4b3c4b3c4"  # objectd_bench's seed


def build_app(devices_dir: str, body_bytes: int) -> web.Application:
    layout = Layout(devices_dir, bytes.fromhex(SEED_HEX))

    async def get(request: web.Request) -> web.Response:
        _, device, partition, account, container, name = request.path.split("/", 5)
        name_hash = layout.hash_of(account, container, name)
        hash_dir = layout.object_dir(device, int(partition), 0, name_hash)
        (data_name,) = os.listdir(hash_dir)
        fd = os.open(os.path.join(hash_dir, data_name), os.O_RDONLY)
        try:
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
        body = data[:body_bytes]
        hashlib.md5(body).hexdigest()
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    return app


async def serve(devices_dir: str, body_bytes: int) -> None:
    runner = web.AppRunner(build_app(devices_dir, body_bytes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http floor listening on port {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print(__doc__.strip().splitlines()[0] + "\nusage: http_floor.py DEVICES_DIR BODY_BYTES")
        sys.exit(0 if "-h" in sys.argv or "--help" in sys.argv else 2)
    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
