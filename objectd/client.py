"""The client of objectd's backend protocol (``objectd/PROTOCOL.md``).

Public: :class:`BackendClient`, :class:`Node`, :class:`ObjectPutter`, :class:`BackendResponse`,
:class:`BackendStream`, :class:`Listing`, :class:`BackendError`, :class:`BackendUnavailable`,
:class:`BackendTimeout`, :class:`BackendProtocolError`, :class:`PutterStateError`,
:func:`backend_path`.

The proxy, the replicator, the updater and objectd itself (container updates) use this module;
nothing else speaks the backend protocol. One :class:`BackendClient` per process holds two
keep-alive connection pools, so a request to a node that was used recently costs no TCP
handshake: requests with a bytes body whose answer is read whole (container updates, HEADs,
listings, POSTs, DELETEs, the proxy's object PUTs up to 2 MiB) go through the lean client of
:mod:`objectd.http_exchange`, at half the CPU of aiohttp's; streams (putters with
``100-continue``, object GETs) through one aiohttp session. Each pool holds at most
``connections_max`` connections; ``connections_per_node_max`` bounds the aiohttp pool's per node.

Timeouts, each a parameter because the caller knows what a miss costs it:

- ``connect_timeout_s``: the TCP connect (Swift's ``conn_timeout``, 0.5 s): a miss means "try a
  handoff", so it is short.
- ``response_timeout_s``: from the end of the request to the first byte of the answer, and
  between two chunks of a streamed answer (Swift's ``node_timeout``).
- ``chunk_timeout_s``: how long an :class:`ObjectPutter` waits for a slow node to take one chunk
  (backpressure: a full queue blocks the sender, up to this long).

Errors: an HTTP status is an *answer* (404, 409, 507 are facts the caller acts on), so statuses
are returned, never raised. Failures to get an answer are raised, named by who is at fault:
:class:`BackendUnavailable` (connect refused, connection reset or closed early) and its subclass
:class:`BackendTimeout` (no answer in time); :class:`BackendProtocolError` (an answer we cannot
parse); :class:`PutterStateError` (our own code used a putter out of order).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from objectd.http_exchange import AnswerMalformed, ExchangePool

_FAILURES = (aiohttp.ClientError, OSError)


# --- aborting a request whose node stopped reading ----------------------------------------------
class _ConnectionHolder:
    """The connection a request goes out on, so that a cancelled request can *abort* it.

    Closing an aiohttp connection is graceful: it waits until the write buffer has drained.
    A node that stopped reading never drains it, so a cancelled PUT would keep its socket (and
    ``ClientSession.close()``) waiting forever. Aborting drops the buffer and the socket at once.
    """

    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


_holder: contextvars.ContextVar[_ConnectionHolder | None] = contextvars.ContextVar(
    "objectd_client_connection", default=None
)


class _AbortableRequest(aiohttp.ClientRequest):
    """aiohttp's request, telling the current :class:`_ConnectionHolder` its transport."""

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        holder = _holder.get()
        if holder is not None:
            holder.transport = conn.transport  # kept: the connection forgets it when released
        return await super().send(conn)


_FAILURES_OR_TIMEOUT = (*_FAILURES, asyncio.TimeoutError)


# --- nodes and paths ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """Where a request goes: the node's address and one of its devices."""

    ip: str
    port: int
    device: str

    @classmethod
    def of(cls, node: Any) -> Node:
        """A Node from a Node, a ring device (object with ``ip``/``port``/``device``) or a dict."""
        if isinstance(node, Node):
            return node
        if isinstance(node, Mapping):
            return cls(str(node["ip"]), int(node["port"]), str(node["device"]))
        return cls(str(node.ip), int(node.port), str(node.device))

    @property
    def base_url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.device}"


def _quote(name: str, safe: str = "") -> str:
    return quote(name.encode("utf-8", "surrogateescape"), safe=safe)


def backend_path(
    device: str, partition: int, account: str, container: str | None = None, obj: str | None = None
) -> str:
    """``/<device>/<partition>/<account>[/<container>[/<object>]]``, percent-encoded."""
    path = f"/{_quote(device)}/{int(partition)}/{_quote(account)}"
    if container is not None:
        path += "/" + _quote(container)
        if obj is not None:
            path += "/" + _quote(obj, safe="/")
    return path


# --- errors ---------------------------------------------------------------------------------------
class BackendError(Exception):
    """A backend request got no usable answer."""

    def __init__(self, node: Node, message: str):
        super().__init__(f"{node}: {message}")
        self.node = node


class BackendUnavailable(BackendError):
    """The node could not be reached, or the connection broke (refused, reset, closed early)."""


class BackendTimeout(BackendUnavailable):
    """The node did not connect, answer or take a chunk within its timeout."""


class BackendProtocolError(BackendError):
    """The node answered something that is not the protocol (e.g. a listing that is not JSON)."""


class PutterStateError(RuntimeError):
    """Our code used an :class:`ObjectPutter` out of order (a bug, not a node failure)."""


def _translate(node: Node, exc: BaseException) -> BackendError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return BackendTimeout(node, f"timed out: {exc!r}")
    return BackendUnavailable(node, f"{type(exc).__name__}: {exc}")


# --- answers --------------------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class BackendResponse:
    """A complete answer: status, headers and the (small) body."""

    node: Node
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclasses.dataclass(slots=True)
class Listing:
    """A container or account listing: status, headers and the decoded JSON rows."""

    node: Node
    status: int
    headers: CIMultiDictProxy[str]
    items: list[dict[str, Any]]


class BackendStream:
    """A streamed answer (object GET): status and headers now, the body as chunks.

    Use as an async context manager, or call :meth:`close`; an unread body closes the connection
    rather than draining it. A body that ends early raises :class:`BackendUnavailable` from the
    iterator, so the caller can fail over to another replica in the middle of the stream.
    """

    def __init__(self, node: Node, response: aiohttp.ClientResponse):
        self.node = node
        self.status = response.status
        self.headers = response.headers
        self._response = response

    async def __aenter__(self) -> BackendStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def iter_chunks(self, chunk_bytes: int | None = None) -> AsyncIterator[bytes]:
        """The body, in chunks of at most ``chunk_bytes``; by default as they arrive.

        As they arrive is cheaper for a relay: re-cutting into fixed sizes joins and slices the
        received buffers (a copy of every byte) and yields more often."""
        content = self._response.content
        chunks = content.iter_any() if chunk_bytes is None else content.iter_chunked(chunk_bytes)
        try:
            async for chunk in chunks:
                yield chunk
        except _FAILURES_OR_TIMEOUT as exc:
            raise _translate(self.node, exc) from exc

    def take_over(self) -> tuple[bytes, int] | None:
        """Stop aiohttp reading this answer; return the body bytes it had buffered and the
        connection's socket descriptor, from which the caller reads the rest itself (the proxy's
        splice relay). The connection is then closed by :meth:`close`, never reused: aiohttp's
        parser did not see the rest of the body. None when there is nothing to take over (the
        body is complete already, or the connection is TLS).

        Raises:
            BackendUnavailable: the body had already failed.
        """
        response = self._response
        connection = response.connection
        if connection is None or response.content.is_eof():
            return None  # the whole body is buffered and the connection back in the pool
        transport, protocol = connection.transport, connection.protocol
        if transport is None or protocol is None or transport.is_closing():
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_extra_info("sslcontext") is not None:
            return None
        try:
            buffered = response.content.read_nowait()
        except _FAILURES_OR_TIMEOUT as exc:
            raise _translate(self.node, exc) from exc
        protocol.pause_reading()  # no await since the read: nothing more reached aiohttp
        return buffered, sock.fileno()

    async def read(self) -> bytes:
        """The whole body (for small objects and tests)."""
        try:
            return await self._response.read()
        except _FAILURES_OR_TIMEOUT as exc:
            raise _translate(self.node, exc) from exc

    def close(self) -> None:
        if not self._response.closed:
            self._response.close()


# --- the putter -----------------------------------------------------------------------------------
class PutterState(enum.Enum):
    NEW = "new"
    READY = "ready"  # the node said 100 Continue and waits for the body
    SENDING = "sending"
    DONE = "done"  # final answer received (or failed)


class ObjectPutter:
    """One object PUT to one node, streamed: Swift's Putter as a small state machine.

    ``await connect()`` sends the headers with ``Expect: 100-continue`` and waits for the node:
    it returns None when the node is ready for the body, or the node's final answer when it
    refused up front (507 full or missing device, 409 newer timestamp, 412 If-None-Match). A proxy
    thus connects to all its nodes, learns which accepted, then streams to those with
    ``await send(chunk)`` (backpressure: it waits while the node is slow, up to
    ``chunk_timeout_s``) and ends with ``await finish()``, which returns the final answer.
    ``abort()`` drops the request at any point (the node discards what it got).
    """

    def __init__(
        self,
        client: BackendClient,
        node: Node,
        path: str,
        headers: Mapping[str, str],
        *,
        content_length: int | None,
        queue_chunks_max: int,
        chunk_timeout_s: float,
    ):
        self.node = node
        self.state = PutterState.NEW
        self._client = client
        self._path = path
        self._headers = CIMultiDict(headers)
        self._headers["Expect"] = "100-continue"
        if content_length is not None:
            self._headers["Content-Length"] = str(content_length)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_chunks_max)
        self._chunk_timeout_s = chunk_timeout_s
        self._ready = asyncio.Event()
        self._task: asyncio.Task[BackendResponse] | None = None

    async def connect(self) -> BackendResponse | None:
        """Send the headers, wait for 100 Continue; None if ready, else the final answer.

        Raises:
            BackendUnavailable, BackendTimeout: no answer at all.
            PutterStateError: called twice.
        """
        if self.state is not PutterState.NEW:
            raise PutterStateError(f"connect() in state {self.state.value}")
        self._task = asyncio.ensure_future(self._run())
        ready = asyncio.ensure_future(self._ready.wait())
        timeout_s = self._client.connect_timeout_s + self._client.response_timeout_s
        try:
            await asyncio.wait(
                {ready, self._task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if self._ready.is_set():
            self.state = PutterState.READY
            return None
        if not self._task.done():
            self.abort()
            raise BackendTimeout(self.node, f"no 100 Continue within {timeout_s} s")
        self.state = PutterState.DONE
        return self._task.result()  # raises the BackendError of a failed request

    async def send(self, chunk: bytes) -> None:
        """Queue one chunk for the node, waiting while its queue is full.

        Raises:
            BackendUnavailable: the node answered or failed before taking the body.
            BackendTimeout: the node did not take the chunk within ``chunk_timeout_s``.
        """
        if self.state not in (PutterState.READY, PutterState.SENDING):
            raise PutterStateError(f"send() in state {self.state.value}")
        self.state = PutterState.SENDING
        await self._put(chunk)

    async def finish(self) -> BackendResponse:
        """End the body and wait for the node's final answer (201, 422, 499, 507, ...)."""
        if self.state not in (PutterState.READY, PutterState.SENDING):
            raise PutterStateError(f"finish() in state {self.state.value}")
        await self._put(None)
        assert self._task is not None
        timeout_s = self._client.response_timeout_s + self._chunk_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(self._task)
        except TimeoutError:
            self.abort()
            raise BackendTimeout(self.node, f"no answer within {timeout_s} s") from None
        finally:
            self.state = PutterState.DONE

    def abort(self) -> None:
        """Drop the request (idempotent); the node sees a short body and stores nothing."""
        self.state = PutterState.DONE
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _ended_early(self) -> BackendError:
        """The error for a request that ended before its body did (retrieves the task's)."""
        assert self._task is not None
        self.state = PutterState.DONE
        if not self._task.cancelled() and isinstance(self._task.exception(), BackendError):
            return self._task.exception()  # type: ignore[return-value]
        return BackendUnavailable(self.node, "the node ended the request before the body did")

    async def _put(self, item: bytes | None) -> None:
        assert self._task is not None
        if self._task.done():
            raise self._ended_early()
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        putting = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait(
            {putting, self._task},
            timeout=self._chunk_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if putting in done:
            return
        putting.cancel()
        if done:
            raise self._ended_early()
        self.abort()
        raise BackendTimeout(self.node, f"chunk not taken within {self._chunk_timeout_s} s")

    async def _body(self) -> AsyncIterator[bytes]:
        self._ready.set()  # aiohttp pulls the first chunk only after 100 Continue
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            yield chunk

    async def _run(self) -> BackendResponse:
        return await self._client._complete(
            "PUT", self.node, self._path, self._headers, data=self._body(), expect100=True
        )


# --- the client -----------------------------------------------------------------------------------
class BackendClient:
    """Backend requests to objectd nodes over one pooled aiohttp session.

    Args:
        connect_timeout_s: TCP connect timeout per request.
        response_timeout_s: wait for an answer, and between chunks of a streamed answer.
        chunk_timeout_s: how long a putter waits for a node to take one chunk.
        connections_max: open connections in all (the pool bound).
        connections_per_node_max: open connections per ip:port (0: only the total bound).
        pool_timeout_s: how long a request waits for a free connection of the pool.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float = 0.5,
        response_timeout_s: float = 10.0,
        chunk_timeout_s: float = 10.0,
        connections_max: int = 1024,
        connections_per_node_max: int = 0,
        pool_timeout_s: float = 10.0,
        keepalive_timeout_s: float = 30.0,
        user_agent: str = "shoal-backend",
    ):
        for name, value in (
            ("connect_timeout_s", connect_timeout_s),
            ("response_timeout_s", response_timeout_s),
            ("chunk_timeout_s", chunk_timeout_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self.chunk_timeout_s = chunk_timeout_s
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=pool_timeout_s + connect_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=response_timeout_s,
        )
        self._connector_args = {
            "limit": connections_max,
            "limit_per_host": connections_per_node_max,
            "keepalive_timeout": keepalive_timeout_s,
        }
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._pool_args = {
            "connect_timeout_s": connect_timeout_s,
            "response_timeout_s": response_timeout_s,
            "connections_max": connections_max,
            "pool_timeout_s": pool_timeout_s,
            "keepalive_timeout_s": keepalive_timeout_s,
            "user_agent": user_agent,
        }
        self._exchanges: ExchangePool | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must be made inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**self._connector_args),
                timeout=self._timeout,
                auto_decompress=False,  # objects stored gzip-encoded are served as stored
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self._user_agent},
                # aiohttp would add "Content-Type: application/octet-stream" to every POST/PUT
                # without one: an object POST that only sets metadata would then replace the
                # object's Content-Type (Swift keeps it unless the POST names one).
                skip_auto_headers=("Accept-Encoding", "Content-Type"),
                request_class=_AbortableRequest,
            )
        return self._session

    @property
    def exchanges(self) -> ExchangePool:
        """The lean keep-alive client of whole exchanges (:mod:`objectd.http_exchange`)."""
        if self._exchanges is None:
            self._exchanges = ExchangePool(**self._pool_args)  # type: ignore[arg-type]
        return self._exchanges

    async def close(self) -> None:
        if self._exchanges is not None:
            self._exchanges.close()
            self._exchanges = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- the two primitives -----------------------------------------------------------------
    async def _send(
        self,
        method: str,
        node: Node,
        path: str,
        headers: Mapping[str, str] | None,
        *,
        query: str = "",
        data: Any = None,
        expect100: bool = False,
    ) -> aiohttp.ClientResponse:
        url = URL(node.base_url + path + ("?" + query if query else ""), encoded=True)
        holder = _ConnectionHolder()
        token = _holder.set(holder)
        try:
            return await self.session.request(
                method, url, headers=headers, data=data, expect100=expect100, allow_redirects=False
            )
        except _FAILURES_OR_TIMEOUT as exc:
            holder.abort()
            raise _translate(node, exc) from exc
        except BaseException:  # cancelled (a putter aborted, a caller's timeout): drop the socket
            holder.abort()
            raise
        finally:
            _holder.reset(token)

    async def _complete(
        self,
        method: str,
        node: Node,
        path: str,
        headers: Mapping[str, str] | None,
        *,
        query: str = "",
        data: Any = None,
        expect100: bool = False,
    ) -> BackendResponse:
        if not expect100 and (data is None or isinstance(data, bytes)):
            return await self._exchange(method, node, path, headers, query, data or b"")
        response = await self._send(
            method, node, path, headers, query=query, data=data, expect100=expect100
        )
        try:
            body = await response.read()
        except _FAILURES_OR_TIMEOUT as exc:
            raise _translate(node, exc) from exc
        finally:
            response.release()
        return BackendResponse(node, response.status, response.headers, body)

    async def _exchange(
        self,
        method: str,
        node: Node,
        path: str,
        headers: Mapping[str, str] | None,
        query: str,
        body: bytes,
    ) -> BackendResponse:
        """A request with a bytes body and its whole answer, on the lean client (the streamed
        ones, with ``100-continue`` or an iterable body, go through aiohttp)."""
        target = path + ("?" + query if query else "")
        try:
            answer = await self.exchanges.exchange(
                method, node.ip, node.port, target, headers or {}, body
            )
        except TimeoutError as exc:
            raise BackendTimeout(node, f"timed out: {exc!r}") from exc
        except AnswerMalformed as exc:
            raise BackendUnavailable(node, f"malformed answer: {exc}") from exc
        except OSError as exc:
            raise BackendUnavailable(node, f"{type(exc).__name__}: {exc}") from exc
        return BackendResponse(node, answer.status, answer.headers, answer.body)

    async def request(
        self,
        method: str,
        node: Any,
        partition: int,
        account: str,
        container: str | None = None,
        obj: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> BackendResponse:
        """Any backend request with a small body and a small answer."""
        node = Node.of(node)
        path = backend_path(node.device, partition, account, container, obj)
        query_text = urlencode(query, quote_via=quote) if query else ""
        return await self._complete(method, node, path, headers, query=query_text, data=body)

    # --- objects ------------------------------------------------------------------------------
    async def put_object(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterable[bytes],
        *,
        content_length: int | None = None,
    ) -> BackendResponse:
        """PUT an object in one call: ``body`` is bytes or an async iterable of chunks (sent
        chunked unless ``content_length`` is given). Must carry X-Timestamp and Content-Type."""
        node = Node.of(node)
        request_headers = CIMultiDict(headers)
        if content_length is not None:
            request_headers["Content-Length"] = str(content_length)
        path = backend_path(node.device, partition, account, container, obj)
        return await self._complete("PUT", node, path, request_headers, data=body)

    def object_putter(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str],
        *,
        content_length: int | None = None,
        queue_chunks_max: int = 4,
    ) -> ObjectPutter:
        """A streamed PUT with ``Expect: 100-continue`` (see :class:`ObjectPutter`).

        ``queue_chunks_max`` bounds the chunks buffered for this node (memory and backpressure).
        """
        node = Node.of(node)
        path = backend_path(node.device, partition, account, container, obj)
        return ObjectPutter(
            self,
            node,
            path,
            headers,
            content_length=content_length,
            queue_chunks_max=queue_chunks_max,
            chunk_timeout_s=self.chunk_timeout_s,
        )

    async def get_object(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str] | None = None,
    ) -> BackendStream:
        """GET an object; the answer's body is streamed (close the stream when done)."""
        node = Node.of(node)
        path = backend_path(node.device, partition, account, container, obj)
        return BackendStream(node, await self._send("GET", node, path, headers))

    async def head_object(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        return await self.request("HEAD", node, partition, account, container, obj, headers=headers)

    async def delete_object(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str],
    ) -> BackendResponse:
        """Write a tombstone (X-Timestamp required); 204 if there was an object, 404 if not."""
        return await self.request(
            "DELETE", node, partition, account, container, obj, headers=headers
        )

    async def post_object(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        headers: Mapping[str, str],
    ) -> BackendResponse:
        """Replace the object's user metadata (X-Timestamp required); 202."""
        return await self.request("POST", node, partition, account, container, obj, headers=headers)

    # --- containers -----------------------------------------------------------------------------
    async def put_container(
        self, node: Any, partition: int, account: str, container: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        """Create or update a container (201 created, 202 updated)."""
        return await self.request("PUT", node, partition, account, container, headers=headers)

    async def head_container(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        headers: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        return await self.request("HEAD", node, partition, account, container, headers=headers)

    async def post_container(
        self, node: Any, partition: int, account: str, container: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        return await self.request("POST", node, partition, account, container, headers=headers)

    async def delete_container(
        self, node: Any, partition: int, account: str, container: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        """204 deleted, 404 missing, 409 not empty."""
        return await self.request("DELETE", node, partition, account, container, headers=headers)

    async def update_container(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        obj: str,
        op: str,
        headers: Mapping[str, str],
    ) -> BackendResponse:
        """Record an object PUT or DELETE in a container DB (``op`` is ``PUT`` or ``DELETE``)."""
        if op not in ("PUT", "DELETE"):
            raise ValueError(f"op must be PUT or DELETE, got {op!r}")
        request_headers = {**headers, "X-Backend-Server-Type": "container"}
        return await self.request(
            op, node, partition, account, container, obj, headers=request_headers
        )

    async def list_container(
        self,
        node: Any,
        partition: int,
        account: str,
        container: str,
        *,
        prefix: str | None = None,
        delimiter: str | None = None,
        marker: str | None = None,
        end_marker: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Listing:
        """A container listing: rows ``{name, hash, bytes, content_type, last_modified}`` and
        ``{subdir}``, Swift's JSON format."""
        query = _listing_query(prefix, delimiter, marker, end_marker, limit, reverse)
        response = await self.request(
            "GET", node, partition, account, container, headers=headers, query=query
        )
        return _listing(response)

    # --- accounts -------------------------------------------------------------------------------
    async def put_account(
        self, node: Any, partition: int, account: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        return await self.request("PUT", node, partition, account, headers=headers)

    async def head_account(
        self, node: Any, partition: int, account: str, headers: Mapping[str, str] | None = None
    ) -> BackendResponse:
        return await self.request("HEAD", node, partition, account, headers=headers)

    async def post_account(
        self, node: Any, partition: int, account: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        return await self.request("POST", node, partition, account, headers=headers)

    async def delete_account(
        self, node: Any, partition: int, account: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        return await self.request("DELETE", node, partition, account, headers=headers)

    async def update_account(
        self, node: Any, partition: int, account: str, container: str, headers: Mapping[str, str]
    ) -> BackendResponse:
        """Report a container's state to an account DB (X-Put-Timestamp, X-Delete-Timestamp,
        X-Object-Count, X-Bytes-Used, X-Backend-Storage-Policy-Index)."""
        request_headers = {**headers, "X-Backend-Server-Type": "account"}
        return await self.request(
            "PUT", node, partition, account, container, headers=request_headers
        )

    async def list_account(
        self,
        node: Any,
        partition: int,
        account: str,
        *,
        prefix: str | None = None,
        delimiter: str | None = None,
        marker: str | None = None,
        end_marker: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Listing:
        """An account listing: rows ``{name, count, bytes, last_modified}`` and ``{subdir}``."""
        query = _listing_query(prefix, delimiter, marker, end_marker, limit, reverse)
        response = await self.request("GET", node, partition, account, headers=headers, query=query)
        return _listing(response)

    # --- replication ----------------------------------------------------------------------------
    async def replicate_db(
        self, node: Any, partition: int, account: str, container: str | None, body: dict[str, Any]
    ) -> BackendResponse:
        """A replication operation on a container or account DB (``{"op": "merge_items", ...}``,
        see PROTOCOL.md). Swift's verb is REPLICATE; aiohttp's HTTP parser accepts only
        registered methods, so it travels as POST with ``X-Backend-Replicate: true``."""
        return await self.request(
            "POST",
            node,
            partition,
            account,
            container,
            headers={"Content-Type": "application/json", "X-Backend-Replicate": "true"},
            body=json.dumps(body).encode(),
        )

    async def healthcheck(self, node: Any) -> bool:
        node = Node.of(node)
        try:
            response = await self._complete("GET", node, "/healthcheck", None)
        except BackendError:
            return False
        return response.status == 200


def _listing_query(
    prefix: str | None,
    delimiter: str | None,
    marker: str | None,
    end_marker: str | None,
    limit: int | None,
    reverse: bool,
) -> dict[str, str]:
    query = {"format": "json"}
    for key, value in (
        ("prefix", prefix),
        ("delimiter", delimiter),
        ("marker", marker),
        ("end_marker", end_marker),
    ):
        if value is not None:
            query[key] = value
    if limit is not None:
        query["limit"] = str(limit)
    if reverse:
        query["reverse"] = "true"
    return query


def _listing(response: BackendResponse) -> Listing:
    items: list[dict[str, Any]] = []
    if response.status == 200 and response.body:
        try:
            items = json.loads(response.body)
        except ValueError as exc:
            raise BackendProtocolError(response.node, f"listing is not JSON: {exc}") from None
        if not isinstance(items, list):
            raise BackendProtocolError(response.node, "listing is not a JSON array")
    return Listing(response.node, response.status, response.headers, items)
