"""The HTTP floor of objectd_bench: the raw loop's GET file work behind a bare aiohttp handler.

Usage (objectd_bench starts it; by hand from the repository root):
    .venv/bin/python benchmarks/http_floor.py RAW_ROOT BODY_BYTES
prints ``http floor listening on port N`` and serves until SIGTERM.

``GET /sda/<partition>/<account>/<container>/<object>`` runs ``RawDisk.get`` of
``objectd_bench`` itself (list the hash directory, open, read, MD5, close) on ``RAW_ROOT`` and
answers the body, with aiohttp and uvloop in one process like objectd, and nothing else: no
metadata, no conditionals, no checks. Its rate is what *any* server on this HTTP stack could
reach for the same file work on this machine, so it tells how much of the gap between objectd
and the raw loop is HTTP itself, and how much is objectd's own work.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web
from objectd_bench import RawDisk  # benchmarks/ is this script's directory: first on sys.path


def build_app(raw_root: Path, body_bytes: int) -> web.Application:
    disk = RawDisk(raw_root)

    async def get(request: web.Request) -> web.Response:
        _, _device, partition, _account, _container, name = request.path.split("/", 5)
        return web.Response(body=disk.get(int(partition), name, body_bytes))

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    return app


async def serve(raw_root: Path, body_bytes: int) -> None:
    runner = web.AppRunner(build_app(raw_root, body_bytes), access_log=None)
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
        print(__doc__.strip().splitlines()[0] + "\nusage: http_floor.py RAW_ROOT BODY_BYTES")
        sys.exit(0 if "-h" in sys.argv or "--help" in sys.argv else 2)
    uvloop.run(serve(Path(sys.argv[1]), int(sys.argv[2])))
