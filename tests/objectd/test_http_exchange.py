"""objectd.http_exchange: the lean keep-alive client of whole backend exchanges.

Method: everything on uvloop, as the daemons run. A real aiohttp server (what every objectd
is) for the normal exchanges; small scripted TCP servers (``asyncio.start_server``) for what an
aiohttp server would not do: malformed or oversized answers, a stall, a close mid-answer, a
close of an idle connection. What must hold: exact bodies both ways, connections reused only
after a complete answer, every failure a clean exception that leaves no connection behind to
mislead the next exchange, at most ``connections_max`` exchanges at once, header injection
refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from aiohttp import web

from objectd.http_exchange import AnswerMalformed, ExchangePool


def _pool(**overrides) -> ExchangePool:
    args = {
        "connect_timeout_s": 2.0,
        "response_timeout_s": 2.0,
        "connections_max": 16,
        "pool_timeout_s": 2.0,
        "keepalive_timeout_s": 30.0,
        "answer_bytes_max": 1 << 20,
    }
    return ExchangePool(**(args | overrides))


def _run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), 30))


async def _aiohttp_server(peers: list[int] | None = None) -> tuple[web.AppRunner, int]:
    """Echo-ish server: PUT answers 201 with the body's MD5; GET /chunked answers chunked;
    GET /close answers with Connection: close; HEAD /h answers a Content-Length, no body."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if peers is not None:
            peers.append(request.transport.get_extra_info("peername")[1])
        if request.method == "PUT":
            body = await request.read()
            return web.Response(status=201, text=hashlib.md5(body).hexdigest(),
                                headers={"X-Got": request.headers.get("X-Thing", "")})  # fmt: skip
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in (b"one,", b"two,", b"three"):
                await response.write(piece)
            await response.write_eof()
            return response
        if request.path == "/close":
            return web.Response(text="bye", headers={"Connection": "close"})
        if request.path == "/empty":
            return web.Response(status=204)
        if request.path == "/utf8":
            return web.Response(text="é", headers={"X-Meta": "café ☕"})
        return web.Response(text="x" * 1000)

    app = web.Application(client_max_size=8 << 20)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def _scripted_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def test_bodies_round_trip_and_the_connection_is_reused():
    async def test() -> None:
        peers: list[int] = []
        runner, port = await _aiohttp_server(peers)
        pool = _pool()
        try:
            for size in (0, 1, 70_000, 2 * 2**20):
                body = os.urandom(size)
                answer = await pool.exchange(
                    "PUT", "127.0.0.1", port, "/a/b%20c", {"X-Thing": "v"}, body
                )
                assert answer.status == 201
                assert answer.body.decode() == hashlib.md5(body).hexdigest()
                assert answer.headers["x-got"] == "v"
            answer = await pool.exchange("GET", "127.0.0.1", port, "/plain?x=1", {})
            assert (answer.status, answer.body) == (200, b"x" * 1000)
            assert pool.connections_made == 1
            assert len(set(peers)) == 1  # one client port: one connection for all five
        finally:
            pool.close()
            await runner.cleanup()

    _run(test)


def test_chunked_head_204_and_close_answers():
    async def test() -> None:
        runner, port = await _aiohttp_server()
        pool = _pool()
        try:
            chunked = await pool.exchange("GET", "127.0.0.1", port, "/chunked", {})
            assert chunked.body == b"one,two,three"
            head = await pool.exchange("HEAD", "127.0.0.1", port, "/plain", {})
            assert head.status == 200 and head.body == b""
            assert head.headers["Content-Length"] == "1000"
            empty = await pool.exchange("DELETE", "127.0.0.1", port, "/empty", {})
            assert (empty.status, empty.body) == (204, b"")
            assert pool.connections_made == 1  # all three framings left it reusable
            closing = await pool.exchange("GET", "127.0.0.1", port, "/close", {})
            assert closing.body == b"bye"
            await pool.exchange("GET", "127.0.0.1", port, "/plain", {})
            assert pool.connections_made == 2  # "Connection: close" was honoured
        finally:
            pool.close()
            await runner.cleanup()

    _run(test)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (b"HTTP/1.1 2x1 Odd\r\nContent-Length: 0\r\n\r\n", AnswerMalformed),
        ("HTTP/1.1 2²1 Odd\r\nContent-Length: 0\r\n\r\n".encode(), AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n", AnswerMalformed),
        (b"SMTP 220 hello\r\n\r\n", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", AnswerMalformed),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", ConnectionResetError),
        (b"", ConnectionResetError),
    ],
    ids=[
        "status",
        "unicode-digit-status",
        "two-lengths",
        "0x-chunk-size",
        "not-http",
        "negative-length",
        "too-large",
        "bad-chunk",
        "huge-head",
        "closed-mid-body",
        "closed-silently",
    ],
)
def test_a_bad_answer_is_an_error_and_its_connection_is_dropped(script: bytes, error: type):
    async def test() -> None:
        accepted = 0

        async def answer(reader, writer) -> None:
            nonlocal accepted
            accepted += 1
            await _read_request(reader)
            if accepted == 1:
                writer.write(script)
                await writer.drain()
                if error is AnswerMalformed:
                    await reader.read()  # keep it open: only the client can have dropped it
                return  # and close
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.read()  # keep it open until the client goes

        server, port = await _scripted_server(answer)
        pool = _pool()
        try:
            with pytest.raises(error):
                await pool.exchange("GET", "127.0.0.1", port, "/", {})
            good = await pool.exchange("GET", "127.0.0.1", port, "/", {})
            assert good.body == b"ok"
            assert accepted == 2  # the failed exchange's connection was not reused
        finally:
            pool.close()
            server.close()

    _run(test)


def test_non_ascii_header_values_come_back_as_they_were_sent():
    async def test() -> None:
        runner, port = await _aiohttp_server()
        pool = _pool()
        try:
            answer = await pool.exchange("GET", "127.0.0.1", port, "/utf8", {})
            assert answer.headers["X-Meta"] == "café ☕"  # aiohttp wrote it as UTF-8
            assert answer.body.decode() == "é"
        finally:
            pool.close()
            await runner.cleanup()

    _run(test)


@pytest.mark.parametrize(
    ("script", "body", "reused"),
    [
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", b"", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;ext=1\r\nok\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"ok!",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", b"ok", False),
    ],
    ids=["304-no-body", "http-1.0", "chunk-extension-and-trailer", "bytes-beyond-the-answer"],
)
def test_framings_and_when_a_connection_may_be_reused(script: bytes, body: bytes, reused: bool):
    async def test() -> None:
        accepted = 0

        async def answer(reader, writer) -> None:
            nonlocal accepted
            accepted += 1
            while True:
                try:
                    await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(script)
                await writer.drain()

        server, port = await _scripted_server(answer)
        pool = _pool()
        try:
            for _ in range(2):
                got = await pool.exchange("GET", "127.0.0.1", port, "/", {})
                assert got.body == body
            assert accepted == (1 if reused else 2)
        finally:
            pool.close()
            server.close()

    _run(test)


def test_a_cancelled_or_timed_out_wait_gives_its_turn_back():
    async def test() -> None:
        runner, good_port = await _aiohttp_server()

        async def stall(reader, writer) -> None:
            await reader.read()

        server, stall_port = await _scripted_server(stall)
        pool = _pool(connections_max=1, pool_timeout_s=0.3, response_timeout_s=5.0)
        try:
            stuck = asyncio.ensure_future(pool.exchange("GET", "127.0.0.1", stall_port, "/", {}))
            await asyncio.sleep(0.1)
            with pytest.raises(TimeoutError):  # the only turn is taken: a pool timeout
                await pool.exchange("GET", "127.0.0.1", good_port, "/plain", {})
            waiting = asyncio.ensure_future(pool.exchange("GET", "127.0.0.1", good_port, "/", {}))
            await asyncio.sleep(0.05)
            waiting.cancel()
            stuck.cancel()
            for task in (waiting, stuck):
                with pytest.raises(asyncio.CancelledError):
                    await task
            answer = await pool.exchange("GET", "127.0.0.1", good_port, "/plain", {})
            assert answer.status == 200  # neither the timeout nor the cancels kept the turn
        finally:
            pool.close()
            server.close()
            await runner.cleanup()

    _run(test)


def test_a_stalled_answer_times_out_and_a_cancelled_exchange_drops_its_connection():
    async def test() -> None:
        connections = 0

        async def stall(reader, writer) -> None:
            nonlocal connections
            connections += 1
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")  # then nothing
            await writer.drain()
            await reader.read()

        server, port = await _scripted_server(stall)
        pool = _pool(response_timeout_s=0.3)
        try:
            with pytest.raises(TimeoutError):
                await pool.exchange("GET", "127.0.0.1", port, "/", {})
            task = asyncio.ensure_future(pool.exchange("GET", "127.0.0.1", port, "/", {}))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not any(pool._idle.values())  # neither went back to the pool
            assert connections == 2
        finally:
            pool.close()
            server.close()

    _run(test)


def test_an_idle_connection_the_node_closed_is_not_reused():
    async def test() -> None:
        connections = 0

        async def once(reader, writer) -> None:
            nonlocal connections
            connections += 1
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()  # then close: the client's pooled connection is now dead

        server, port = await _scripted_server(once)
        pool = _pool()
        try:
            assert (await pool.exchange("GET", "127.0.0.1", port, "/", {})).body == b"ok"
            await asyncio.sleep(0.2)  # the close reaches the idle connection
            assert (await pool.exchange("GET", "127.0.0.1", port, "/", {})).body == b"ok"
            assert connections == 2
        finally:
            pool.close()
            server.close()

    _run(test)


def test_at_most_connections_max_exchanges_at_once():
    async def test() -> None:
        open_now = peak = 0

        async def slow(reader, writer) -> None:
            nonlocal open_now, peak
            open_now += 1
            peak = max(peak, open_now)
            try:
                await _read_request(reader)
                await asyncio.sleep(0.2)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
            finally:
                open_now -= 1

        server, port = await _scripted_server(slow)
        pool = _pool(connections_max=2)
        try:
            answers = await asyncio.gather(
                *(pool.exchange("GET", "127.0.0.1", port, "/", {}) for _ in range(6))
            )
            assert [a.body for a in answers] == [b"ok"] * 6
            assert peak == 2
        finally:
            pool.close()
            server.close()

    _run(test)


@pytest.mark.parametrize(
    "headers",
    [{"X-Meta": "a\r\nX-Injected: 1"}, {"X-Meta\nX": "a"}, {"Content-Length": "5"}],
    ids=["crlf-in-value", "lf-in-name", "wrong-length"],
)
def test_bad_request_headers_are_refused_before_anything_is_sent(headers):
    async def test() -> None:
        connections = 0

        async def count(reader, writer) -> None:
            nonlocal connections
            connections += 1

        server, port = await _scripted_server(count)
        pool = _pool()
        try:
            with pytest.raises(ValueError):
                await pool.exchange("PUT", "127.0.0.1", port, "/", headers, b"abc")
            await asyncio.sleep(0.1)
            assert connections == 0
        finally:
            pool.close()
            server.close()

    _run(test)
