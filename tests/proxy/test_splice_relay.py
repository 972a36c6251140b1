"""proxy.splice_relay on its own, with real sockets: a real aiohttp server on uvloop (as the
proxy runs) relays from a real TCP "backend" socket to a real client socket.

What must hold: the client gets exactly the backend's bytes after what aiohttp sent first; a
backend that ends early or stalls is reported with the exact count the client received (so the
caller can resume elsewhere with a Range); a client that stops reading is hung up on, not waited
for forever.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest
import uvloop
from aiohttp import web

from proxy import splice_relay

pytestmark = pytest.mark.skipif(not splice_relay.available(), reason="no os.splice here")

HEAD = b"first bytes, written by aiohttp with the status line;"


class Backend:
    """A loopback TCP connection: the test writes to ``feed``, the relay reads ``fd``."""

    def __init__(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.feed = socket.create_connection(listener.getsockname())
        self.sock, _ = listener.accept()
        listener.close()
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()

    def close(self) -> None:
        self.feed.close()
        self.sock.close()


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def _get(port: int, timeout_s: float = 10.0) -> tuple[bytes, bytes]:
    """GET / on a raw socket: (head, body as far as it came before the close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head, body


def _run(handler, client) -> tuple[object, object]:
    """Serve ``handler`` on uvloop; run the blocking ``client(port)`` in a thread."""

    async def main():
        outcome: dict[str, object] = {}

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BaseException as exc:
                outcome["raised"] = exc
                raise

        runner, port = await _serve(wrapped)
        try:
            result = await asyncio.to_thread(client, port)
        finally:
            await runner.cleanup()
        return result, outcome.get("raised")

    return uvloop.run(main())


async def _start(request: web.Request, length: int) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = len(HEAD) + length
    await response.prepare(request)
    await response.write(HEAD)
    return response


def test_the_client_gets_exactly_the_backend_bytes():
    body = os.urandom(3 * 2**20 + 11)
    backend = Backend()

    async def handler(request):
        response = await _start(request, len(body))
        fd = splice_relay.client_socket_fd(request)
        await splice_relay.relay(request, fd, backend.fd, len(body),
                                 backend_timeout_s=5, client_timeout_s=5)  # fmt: skip
        await response.write_eof()
        return response

    def client(port):
        thread = threading.Thread(target=backend.feed.sendall, args=(body,))
        thread.start()
        try:
            return _get(port)
        finally:
            thread.join()

    try:
        (head, received), raised = _run(handler, client)
    finally:
        backend.close()
    assert raised is None
    assert head.startswith(b"HTTP/1.1 200")
    assert received == HEAD + body


@pytest.mark.parametrize("how", ["closes", "stalls"])
def test_a_backend_that_ends_early_is_reported_with_the_bytes_passed_on(how):
    """Everything the backend gave reaches the client first; RelayCut.sent counts it exactly,
    so the rest can be asked of another replica from there (done here by the handler)."""
    body = os.urandom(2 * 2**20)
    given = 1_234_567
    backend = Backend()
    backend.feed.sendall(body[:given])
    if how == "closes":
        backend.feed.close()
    cuts: list[splice_relay.RelayCut] = []

    async def handler(request):
        response = await _start(request, len(body))
        fd = splice_relay.client_socket_fd(request)
        try:
            await splice_relay.relay(request, fd, backend.fd, len(body),
                                     backend_timeout_s=0.5, client_timeout_s=5)  # fmt: skip
        except splice_relay.RelayCut as cut:
            cuts.append(cut)
            await response.write(body[cut.sent :])  # "another replica", from the resume point
        await response.write_eof()
        return response

    try:
        (_head, received), raised = _run(handler, _get)
    finally:
        backend.close()
    assert raised is None
    assert len(cuts) == 1 and cuts[0].sent == given
    assert received == HEAD + body


def test_a_client_that_stops_reading_is_hung_up_on():
    body_bytes = 256 * 2**20  # far more than the socket buffers hold
    backend = Backend()

    async def handler(request):
        await _start(request, body_bytes)
        fd = splice_relay.client_socket_fd(request)

        async def feed():
            chunk = b"z" * 2**20
            for _ in range(body_bytes // len(chunk)):
                await asyncio.get_running_loop().sock_sendall(backend.feed, chunk)

        backend.feed.setblocking(False)
        feeding = asyncio.ensure_future(feed())
        try:
            await splice_relay.relay(request, fd, backend.fd, body_bytes,
                                     backend_timeout_s=5, client_timeout_s=0.5)  # fmt: skip
        finally:
            feeding.cancel()
        raise AssertionError("the relay finished although the client read nothing")

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            first = sock.recv(4096)
            time.sleep(2.0)  # read nothing while the relay's client timeout runs out
            received = len(first)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            return received

    try:
        received, raised = _run(handler, client)
    finally:
        backend.close()
    assert isinstance(raised, splice_relay.ClientStalled)
    assert received < body_bytes  # the connection was closed mid-body, never completed
