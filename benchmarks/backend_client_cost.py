"""Client CPU per backend exchange: aiohttp's ClientSession against objectd.http_exchange.

Usage (from the repository root):
    .venv/bin/python -m benchmarks.backend_client_cost [--requests N] [--body-bytes B]

A container-update-shaped PUT (a dozen headers, an empty or small body, a 201 with an empty
answer) is sent N times, one after another over one keep-alive connection, to an aiohttp server
on uvloop running in a *separate process*, so the CPU time measured here (``process_time`` of
this process) is the client's alone. Both clients alternate in rounds (ABAB...) and the median
per client is printed as ``name=value`` lines:

    aiohttp_client_us_per_exchange=...
    lean_client_us_per_exchange=...
    ratio_aiohttp_over_lean=...
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

import aiohttp
import uvloop
from aiohttp import web

from objectd.http_exchange import ExchangePool

HEADERS = {
    "X-Timestamp": "1795672716.65945",
    "X-Trans-Id": "tx0123456789abcdef0123456789abcdef",
    "X-Backend-Storage-Policy-Index": "0",
    "X-Size": "4096",
    "X-Content-Type": "application/octet-stream",
    "X-Etag": "d41d8cd98f00b204e9800998ecf8427e",
    "X-Backend-Server-Type": "container",
}
TARGET = "/sda/123/AUTH_test/bench/object-name"
ROUNDS = 6


def _serve(port_queue: multiprocessing.Queue) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_queue.put(runner.addresses[0][1])
        await asyncio.Event().wait()  # until terminated

    uvloop.run(main())


async def _measure(port: int, requests: int, body: bytes) -> dict[str, float]:
    session = aiohttp.ClientSession(skip_auto_headers=("Content-Type", "Accept-Encoding"))
    pool = ExchangePool(connect_timeout_s=2, response_timeout_s=10, connections_max=16,
                        pool_timeout_s=10, keepalive_timeout_s=30)  # fmt: skip
    url = f"http://127.0.0.1:{port}{TARGET}"

    async def with_aiohttp() -> None:
        async with session.put(url, headers=HEADERS, data=body) as response:
            await response.read()
            assert response.status == 201

    async def with_lean() -> None:
        answer = await pool.exchange("PUT", "127.0.0.1", port, TARGET, HEADERS, body)
        assert answer.status == 201

    samples: dict[str, list[float]] = {"aiohttp_client": [], "lean_client": []}
    try:
        for one in (with_aiohttp, with_lean):
            for _ in range(200):  # warm: connections open, code paths hot
                await one()
        for _ in range(ROUNDS):
            for name, one in (("aiohttp_client", with_aiohttp), ("lean_client", with_lean)):
                started = time.process_time()
                for _ in range(requests):
                    await one()
                samples[name].append((time.process_time() - started) / requests * 1e6)
    finally:
        await session.close()
        pool.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="exchanges per round")
    parser.add_argument("--body-bytes", type=int, default=0, help="PUT body size")
    args = parser.parse_args(argv)
    ports: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        figures = uvloop.run(_measure(port, args.requests, b"b" * args.body_bytes))
    finally:
        server.terminate()
        server.join(10)
    for name, value in figures.items():
        print(f"{name}_us_per_exchange={value:.1f}")
    print(f"ratio_aiohttp_over_lean={figures['aiohttp_client'] / figures['lean_client']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
