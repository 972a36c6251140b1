"""A lean HTTP/1.1 client for small backend exchanges: a request with a bytes body out, a whole
answer back, over pooled keep-alive connections.

Public: :class:`ExchangePool`, :class:`Answer`, :class:`AnswerMalformed`.

Why not aiohttp's client for these: one keep-alive PUT with a dozen headers and a 201 answer
costs twice the client CPU through ``aiohttp.ClientSession`` (151 us here, kernel included) as
through this module (72 us): ``python -m benchmarks.backend_client_cost`` measures both against
one aiohttp server in another process. Every object PUT makes six such exchanges (the proxy's three node PUTs of a body up to 2 MiB, the nodes' three
container updates), and the machine is CPU-bound under load, so the difference is throughput.
Streams (putters with ``100-continue``, object GETs, the splice relay) stay on aiohttp.

Scope and rules:

- Answers are framed by ``Content-Length``, ``Transfer-Encoding: chunked``, or the end of the
  connection; ``HEAD``, 1xx, 204 and 304 answers have no body. An answer above
  ``answer_bytes_max`` or a head above ``HEAD_BYTES_MAX`` is :class:`AnswerMalformed`.
- A connection goes back to the pool only after a complete, well-framed HTTP/1.1 answer without
  ``Connection: close``. An exchange that fails, times out or is cancelled aborts its connection,
  so a half-read answer can never be taken for the next one.
- Idle connections expire after ``keepalive_timeout_s`` (far below the 3630 s after which an
  aiohttp server drops them, so the server does not close first in normal operation); one the
  peer closed while idle is noticed by the event loop and never reused.
- At most ``connections_max`` exchanges are in flight (each holds one connection); more wait up to
  ``pool_timeout_s`` for a turn.
- Header names and values may not contain CR or LF (``ValueError`` before anything is sent), as
  in aiohttp; they are encoded UTF-8 with surrogate escapes, as aiohttp does.

Errors are the caller's to translate: ``OSError`` (refused, reset, closed early),
``TimeoutError`` (connect, pool turn, or no byte for ``response_timeout_s``),
:class:`AnswerMalformed`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import time
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

HEAD_BYTES_MAX = 64 * 1024
"""Status line and headers of one answer; aiohttp's server limit is 8 KiB per line."""


ANSWER_BYTES_MAX = 128 * 1024 * 1024
"""Default bound of one answer's body: far above the largest listing (10,000 rows of 1 KiB
names, JSON-escaped) or replication batch, far below what would hurt a process."""

_BUFFER_BYTES_MAX = 2 * ANSWER_BYTES_MAX
"""Received bytes not yet consumed, beyond which a connection is dropped."""

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_PRUNE_INTERVAL_S = 1.0


class AnswerMalformed(Exception):
    """The node's answer is not HTTP/1.x as this client reads it, or is too large."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP connection: bytes received so far, and a way to wait for more."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended = False  # the peer closed (or the connection broke): no more bytes will come
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _BUFFER_BYTES_MAX and self.transport is not None:
            self.transport.abort()  # far beyond any answer read (or bytes sent while idle)
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- reading ----------------------------------------------------------------------------
    async def _more(self, timeout_s: float) -> bool:
        """Wait until more bytes arrived (True) or the connection ended (False)."""
        if self.ended:
            return False
        have = len(self.buffer)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._waiter
        finally:
            self._waiter = None
        return len(self.buffer) > have

    async def _need(self, count: int, timeout_s: float) -> None:
        while len(self.buffer) < count:
            if not await self._more(timeout_s) and self.ended:
                raise ConnectionResetError("the node closed the connection mid-answer")

    async def read_answer(
        self, method: str, timeout_s: float, answer_bytes_max: int
    ) -> tuple[Answer, bool]:
        """The next whole answer, and whether the connection may carry another exchange."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(self.buffer) > HEAD_BYTES_MAX:
                    raise AnswerMalformed(f"answer head above {HEAD_BYTES_MAX} bytes")
                if not await self._more(timeout_s) and self.ended:
                    if self.buffer:
                        raise ConnectionResetError("the node closed the connection mid-answer")
                    raise ConnectionResetError("the node closed the connection without answering")
                end = self.buffer.find(b"\r\n\r\n")
            if end > HEAD_BYTES_MAX:
                raise AnswerMalformed(f"answer head above {HEAD_BYTES_MAX} bytes")
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            version, status, headers = _parse_head(head)
            if status >= 200:
                break  # 1xx answers (none expected: no Expect is sent) are skipped
        keep = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = await self._read_chunked(timeout_s, answer_bytes_max)
        elif "Content-Length" in headers:
            length = _content_length(headers["Content-Length"])
            if length > answer_bytes_max:
                raise AnswerMalformed(f"answer of {length} bytes, above {answer_bytes_max}")
            await self._need(length, timeout_s)
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        else:  # framed by the end of the connection
            while await self._more(timeout_s) or not self.ended:
                if len(self.buffer) > answer_bytes_max:
                    raise AnswerMalformed(f"answer above {answer_bytes_max} bytes")
            body, keep = bytes(self.buffer), False
            self.buffer.clear()
        if self.buffer:
            keep = False  # bytes nobody asked for: the framing is not what it seems
        return Answer(status, CIMultiDictProxy(headers), body), keep

    async def _read_chunked(self, timeout_s: float, answer_bytes_max: int) -> bytes:
        body = bytearray()
        while True:
            end = self.buffer.find(b"\r\n")
            while end < 0:
                if len(self.buffer) > HEAD_BYTES_MAX:
                    raise AnswerMalformed("chunk size line too long")
                await self._need(len(self.buffer) + 1, timeout_s)
                end = self.buffer.find(b"\r\n")
            size_text = bytes(self.buffer[:end]).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise AnswerMalformed(f"bad chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if len(body) + size > answer_bytes_max:
                raise AnswerMalformed(f"chunked answer above {answer_bytes_max} bytes")
            del self.buffer[: end + 2]
            if size == 0:  # trailers (none expected) end with an empty line
                while (end := self.buffer.find(b"\r\n")) != 0:
                    if end < 0:
                        if len(self.buffer) > HEAD_BYTES_MAX:
                            raise AnswerMalformed(f"trailers above {HEAD_BYTES_MAX} bytes")
                        await self._need(len(self.buffer) + 1, timeout_s)
                    else:
                        del self.buffer[: end + 2]
                del self.buffer[:2]
                return bytes(body)
            await self._need(size + 2, timeout_s)
            if self.buffer[size : size + 2] != b"\r\n":
                raise AnswerMalformed("chunk not followed by CRLF")
            body += self.buffer[:size]
            del self.buffer[: size + 2]


def _parse_head(head: bytes) -> tuple[str, int, CIMultiDict[str]]:
    # UTF-8 with surrogate escapes, as aiohttp encodes header values and decoded them before:
    # a metadata value such as "café" must come back as it went in
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    parts = lines[0].split(" ", 2)
    code = parts[1] if len(parts) > 1 else ""
    if not parts[0].startswith("HTTP/1.") or len(code) != 3 or not code.isascii():
        raise AnswerMalformed(f"bad status line {lines[0][:80]!r}")
    if not code.isdigit() or code[0] == "0":
        raise AnswerMalformed(f"bad status {code!r}")
    status = int(code)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise AnswerMalformed(f"bad header line {line[:80]!r}")
        headers.add(name, value.strip())
    if len(headers.getall("Content-Length", ())) > 1:
        raise AnswerMalformed("more than one Content-Length")
    return parts[0], status, headers


def _content_length(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise AnswerMalformed(f"bad Content-Length {text[:40]!r}")
    return int(text)


def _request_head(
    method: str, host: str, port: int, target: str, headers: Mapping[str, str], body_bytes: int,
    user_agent: str,
) -> bytes:  # fmt: skip
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", f"User-Agent: {user_agent}"]
    for name, value in headers.items():
        if name.lower() == "content-length":  # framed here, from the body itself
            if value.strip() != str(body_bytes):
                raise ValueError(f"Content-Length {value!r} but a body of {body_bytes} bytes")
            continue
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"header {name!r}: CR, LF (or ':' in the name) not allowed")
        lines.append(f"{name}: {value}")
    if body_bytes or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {body_bytes}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


class ExchangePool:
    """Keep-alive connections per ``(host, port)`` and the exchanges over them.

    Create and use it inside one running event loop.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        response_timeout_s: float,
        connections_max: int,
        pool_timeout_s: float,
        keepalive_timeout_s: float,
        answer_bytes_max: int = ANSWER_BYTES_MAX,
        user_agent: str = "shoal-backend",
    ):
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.answer_bytes_max = answer_bytes_max
        self.user_agent = user_agent
        self._turns = asyncio.Semaphore(connections_max)
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = {}
        self._closed = False
        self._pruned_at = time.monotonic()
        self.connections_made = 0  # for tests and debugging: new TCP connections so far

    async def exchange(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Answer:
        """Send one request, return its whole answer (see the module docstring for errors)."""
        head = _request_head(method, host, port, target, headers, len(body), self.user_agent)
        async with asyncio.timeout(self.pool_timeout_s):
            await self._turns.acquire()
        try:
            connection = self._take_idle(host, port) or await self._connect(host, port)
            reusable = False
            try:
                assert connection.transport is not None
                if body:
                    connection.transport.writelines((head, body))
                else:
                    connection.transport.write(head)
                answer, reusable = await connection.read_answer(
                    method, self.response_timeout_s, self.answer_bytes_max
                )
            finally:
                if reusable and not connection.ended and not self._closed:
                    connection.idle_since = time.monotonic()
                    self._idle.setdefault((host, port), collections.deque()).append(connection)
                elif connection.transport is not None:
                    connection.transport.abort()
            return answer
        finally:
            self._turns.release()

    def _take_idle(self, host: str, port: int) -> _Connection | None:
        if time.monotonic() - self._pruned_at > _PRUNE_INTERVAL_S:
            self._prune()
        idle = self._idle.get((host, port))
        if not idle:
            return None
        expired_before = time.monotonic() - self.keepalive_timeout_s
        while idle:
            connection = idle.pop()  # the most recently used: least likely to have expired
            if (
                connection.ended
                or connection.idle_since < expired_before
                or connection.buffer
                or connection.transport is None
                or connection.transport.is_closing()
            ):
                if connection.transport is not None:
                    connection.transport.abort()
                continue
            return connection
        return None

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _, connection = await loop.create_connection(_Connection, host, port)
        self.connections_made += 1
        return connection

    def _prune(self) -> None:
        """Close idle connections past their keep-alive (checked every ``_PRUNE_INTERVAL_S``
        of use: connections left over from a burst do not stay open for long)."""
        self._pruned_at = time.monotonic()
        expired_before = self._pruned_at - self.keepalive_timeout_s
        for key in list(self._idle):
            idle = self._idle[key]
            while idle and (idle[0].idle_since < expired_before or idle[0].ended):
                old = idle.popleft()
                if old.transport is not None:
                    old.transport.abort()
            if not idle:
                del self._idle[key]

    def close(self) -> None:
        """Close every idle connection; exchanges in flight close theirs when they end."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                if connection.transport is not None:
                    connection.transport.abort()
        self._idle.clear()
