"""objectd/client.py against a real objectd: the calls the proxy and the replicator make.

Method: each test runs a coroutine with asyncio.run against the module's objectd. Failures of
the network are produced with a closed port and with small fake servers (named as such) that
accept and then never answer, or never read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest
from objectd_helpers import md5, object_put_headers, ts

from objectd.client import (
    BackendClient,
    BackendTimeout,
    BackendUnavailable,
    Node,
    PutterStateError,
    backend_path,
)


def _node(objectd, device: str = "sda") -> Node:
    return Node("127.0.0.1", objectd.port, device)


def _run(coroutine):
    return asyncio.run(coroutine)


def test_node_of_accepts_ring_device_dicts_and_objects():
    assert Node.of({"ip": "10.0.0.1", "port": 6200, "device": "sdb", "zone": 1}) == Node(
        "10.0.0.1", 6200, "sdb"
    )
    assert Node.of(Node("::1", 1, "d")).base_url == "http://[::1]:1"


def test_backend_path_quotes_names_and_keeps_object_slashes():
    assert backend_path("sda", 3, "AUTH_a", "c 1", "x/y?z") == "/sda/3/AUTH_a/c%201/x/y%3Fz"


def test_put_get_head_post_delete(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            node = _node(objectd)
            body = os.urandom(300_000)
            put = await client.put_object(
                node, 4, "AUTH_cl", "c", unique, object_put_headers(), body
            )
            assert put.status == 201 and put.headers["ETag"] == md5(body)
            async with await client.get_object(node, 4, "AUTH_cl", "c", unique) as stream:
                assert stream.status == 200
                chunks = [chunk async for chunk in stream.iter_chunks(65536)]
            assert b"".join(chunks) == body and max(map(len, chunks)) <= 65536
            head = await client.head_object(node, 4, "AUTH_cl", "c", unique)
            assert head.status == 200 and head.headers["Content-Length"] == str(len(body))
            post = await client.post_object(
                node, 4, "AUTH_cl", "c", unique, {"X-Timestamp": ts(), "X-Object-Meta-K": "v"}
            )
            assert post.status == 202
            deleted = await client.delete_object(
                node, 4, "AUTH_cl", "c", unique, {"X-Timestamp": ts()}
            )
            assert deleted.status == 204
            gone = await client.get_object(node, 4, "AUTH_cl", "c", unique)
            assert gone.status == 404
            gone.close()

    _run(scenario())


def test_a_post_without_content_type_keeps_the_objects_content_type(objectd, unique):
    """The client must not add a Content-Type of its own (aiohttp does, for POST and PUT): the
    object server would take it as the POST's and replace the stored one."""

    async def scenario():
        async with BackendClient() as client:
            node = _node(objectd)
            headers = object_put_headers(**{"Content-Type": "text/x-kept"})
            put = await client.put_object(node, 4, "AUTH_cl", "c", unique, headers, b"body")
            assert put.status == 201
            post = await client.post_object(
                node, 4, "AUTH_cl", "c", unique, {"X-Timestamp": ts(), "X-Object-Meta-K": "v"}
            )
            assert post.status == 202
            head = await client.head_object(node, 4, "AUTH_cl", "c", unique)
            assert head.headers["Content-Type"] == "text/x-kept"
            assert head.headers["X-Object-Meta-K"] == "v"

    _run(scenario())


def test_put_from_an_async_iterable_is_chunked(objectd, unique):
    async def body():
        for _ in range(5):
            yield b"z" * 100_000

    async def scenario():
        async with BackendClient() as client:
            response = await client.put_object(
                _node(objectd), 4, "AUTH_cl", "c", unique, object_put_headers(), body()
            )
            assert response.status == 201 and response.headers["ETag"] == md5(b"z" * 500_000)

    _run(scenario())


def test_putter_with_100_continue_streams_the_body(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            payload = [os.urandom(64 * 1024) for _ in range(40)]
            putter = client.object_putter(
                _node(objectd), 4, "AUTH_cl", "c", unique, object_put_headers(),
                content_length=sum(map(len, payload)),
            )  # fmt: skip
            assert await putter.connect() is None  # the node said 100 Continue
            for chunk in payload:
                await putter.send(chunk)
            response = await putter.finish()
            assert response.status == 201 and response.headers["ETag"] == md5(b"".join(payload))
            with pytest.raises(PutterStateError):
                await putter.send(b"late")

    _run(scenario())


def test_putter_learns_of_a_missing_device_before_sending_the_body(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            putter = client.object_putter(
                _node(objectd, "sdmissing"),
                4,
                "AUTH_cl",
                "c",
                unique,
                object_put_headers(),
                content_length=10**9,
            )
            started = time.monotonic()
            answer = await putter.connect()
            assert answer is not None and answer.status == 507
            assert time.monotonic() - started < 2
            with pytest.raises(PutterStateError):
                await putter.send(b"x")

    _run(scenario())


def test_putter_learns_of_a_newer_object_before_sending_the_body(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            node = _node(objectd)
            older, newer = ts(), ts()
            await client.put_object(
                node, 4, "AUTH_cl", "c", unique, object_put_headers(newer), b"new"
            )
            putter = client.object_putter(
                node, 4, "AUTH_cl", "c", unique, object_put_headers(older), content_length=3
            )
            answer = await putter.connect()
            assert answer is not None and answer.status == 409
            assert answer.headers["X-Backend-Timestamp"] == newer
            # the connection was not reused for a body nobody sent: later requests still work
            head = await client.head_object(node, 4, "AUTH_cl", "c", unique)
            assert head.status == 200 and head.headers["ETag"] == md5(b"new")

    _run(scenario())


def test_putter_abort_stores_nothing(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            node = _node(objectd)
            putter = client.object_putter(
                node, 4, "AUTH_cl", "c", unique, object_put_headers(), content_length=10**7
            )
            assert await putter.connect() is None
            await putter.send(b"a" * 100_000)
            putter.abort()
            await asyncio.sleep(0.3)
            assert (await client.head_object(node, 4, "AUTH_cl", "c", unique)).status == 404

    _run(scenario())


def test_a_closed_port_is_backend_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario():
        async with BackendClient(connect_timeout_s=0.5) as client:
            with pytest.raises(BackendUnavailable) as raised:
                await client.head_object(Node("127.0.0.1", port, "sda"), 1, "a", "c", "o")
            assert "127.0.0.1" in str(raised.value)

    _run(scenario())


class _FakeServer:
    """A fake backend (a test double): accepts, optionally sends bytes, then never reads or
    answers again. Used only to produce timeouts that a real objectd would not produce."""

    def __init__(self, greeting: bytes = b"", recv_buffer: int = 4096):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.greeting = greeting
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections.append(conn)
            if self.greeting:
                time.sleep(0.05)
                conn.sendall(self.greeting)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.connections:
            conn.close()
        self.listener.close()


def test_a_node_that_never_answers_is_backend_timeout():
    server = _FakeServer()

    async def scenario():
        async with BackendClient(response_timeout_s=0.5) as client:
            started = time.monotonic()
            with pytest.raises(BackendTimeout):
                await client.head_object(Node("127.0.0.1", server.port, "sda"), 1, "a", "c", "o")
            assert time.monotonic() - started < 3

    try:
        _run(scenario())
    finally:
        server.close()


def test_putter_send_times_out_on_a_node_that_stops_reading():
    server = _FakeServer(greeting=b"HTTP/1.1 100 Continue\r\n\r\n")

    async def scenario():
        async with BackendClient(chunk_timeout_s=0.5, response_timeout_s=5) as client:
            putter = client.object_putter(
                Node("127.0.0.1", server.port, "sda"),
                1,
                "a",
                "c",
                "o",
                object_put_headers(),
                content_length=10**9,
            )
            assert await putter.connect() is None
            with pytest.raises(BackendTimeout):
                for _ in range(10_000):  # bounded: the socket buffers fill long before this
                    await putter.send(b"x" * 65536)

    try:
        _run(scenario())
    finally:
        server.close()


def test_listing_and_database_calls(objectd, unique):
    async def scenario():
        async with BackendClient() as client:
            node = _node(objectd)
            assert (
                await client.put_account(node, 2, f"AUTH_{unique}", {"X-Timestamp": ts()})
            ).status == 201
            assert (
                await client.put_container(node, 2, f"AUTH_{unique}", "box", {"X-Timestamp": ts()})
            ).status == 201
            for name in ("a/1", "a/2", "b"):
                row = {"X-Timestamp": ts(), "X-Size": "3", "X-Content-Type": "t/t", "X-Etag": "e"}
                response = await client.update_container(
                    node, 2, f"AUTH_{unique}", "box", name, "PUT", row
                )
                assert response.status == 201
            listing = await client.list_container(node, 2, f"AUTH_{unique}", "box", delimiter="/")
            assert listing.status == 200
            assert [item.get("name", item.get("subdir")) for item in listing.items] == ["a/", "b"]
            report = {
                "X-Put-Timestamp": ts(),
                "X-Delete-Timestamp": "0",
                "X-Object-Count": "3",
                "X-Bytes-Used": "9",
            }
            assert (
                await client.update_account(node, 2, f"AUTH_{unique}", "box", report)
            ).status == 201
            accounts = await client.list_account(node, 2, f"AUTH_{unique}")
            assert [(i["name"], i["count"], i["bytes"]) for i in accounts.items] == [("box", 3, 9)]
            info = await client.replicate_db(node, 2, f"AUTH_{unique}", "box", {"op": "get_info"})
            assert info.status == 200
            assert await client.healthcheck(node)

    _run(scenario())
