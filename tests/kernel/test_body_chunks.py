"""shoal.body_chunks.next_chunk: a body's pieces as the network brought them, never joined.

Method: a real aiohttp server on uvloop and raw sockets writing the body in separate sends with
pauses, so several network reads are buffered before the handler reads. What must hold: the
pieces add up to the exact body, no piece is larger than one network read (readany() would join
them), the end of each HTTP chunk is not taken for the end of the body, and the end is b"".
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvloop
from aiohttp import web

from shoal.body_chunks import next_chunk

PIECE = b"x" * 1000


@pytest.fixture()
def server():
    """A server that, after a pause, reads the body with next_chunk; yields (port, results)."""
    results: list[list[bytes]] = []
    ready = threading.Event()
    state: dict = {}

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # let every piece arrive and be buffered separately
        pieces = []
        while chunk := await next_chunk(request.content):
            pieces.append(chunk)
        results.append(pieces)
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_put("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = runner.addresses[0][1]
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield state["port"], results
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def _send(port: int, head: bytes, pieces: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        for piece in pieces:
            time.sleep(0.02)  # one network read each on the server side
            sock.sendall(piece)
        sock.settimeout(10)
        return sock.recv(4096)


def test_pieces_of_a_sized_body_are_not_joined(server):
    port, results = server
    pieces = [PIECE] * 5
    head = f"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(PIECE) * 5}\r\n\r\n".encode()
    assert b" 200 " in _send(port, head, pieces)
    (got,) = results
    assert b"".join(got) == PIECE * 5
    assert len(got) > 1  # readany() would have returned one joined piece
    assert max(len(p) for p in got) <= len(PIECE)


def test_the_end_of_an_http_chunk_is_not_the_end_of_the_body(server):
    port, results = server
    chunks = [b"%x\r\n%s\r\n" % (len(PIECE), PIECE) for _ in range(4)] + [b"0\r\n\r\n"]
    head = b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert b" 200 " in _send(port, head, chunks)
    (got,) = results
    assert b"".join(got) == PIECE * 4
    assert all(got)


def test_an_empty_body_ends_at_once(server):
    port, results = server
    assert b" 200 " in _send(port, b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", [])
    assert results == [[]]
