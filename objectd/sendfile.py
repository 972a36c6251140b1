"""Zero-copy bodies: push byte ranges of an open file into a response's socket with sendfile(2).

Public: :class:`FileSender`, :func:`sendfile_blocking`.

uvloop has no ``loop.sendfile``, so aiohttp would fall back to reading the file through Python.
:class:`FileSender` does it directly, off the event loop: after the response headers (and any
bytes written through aiohttp) have fully left the transport's buffer, a thread calls
``sendfile`` on a *duplicate* of the socket's descriptor, waiting with ``poll`` whenever the
socket is full (the socket is non-blocking), bounded by a timeout. The duplicate matters: if the
client goes away and the loop closes its descriptor, the number cannot be reused for another
connection while the thread still writes to it.

While a range is being sent nothing else writes to the transport (the handler awaits the send),
so bytes stay in order. On any failure the transport is aborted: a response with a
Content-Length that stops short must not leave a connection that looks reusable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import select

from aiohttp import web

_SENDFILE_CALL_BYTES_MAX = 1 << 30  # one sendfile call sends at most this (Linux caps ~2 GiB)


def sendfile_blocking(
    socket_fd: int, file_fd: int, offset: int, count: int, timeout_s: float
) -> None:
    """Send ``count`` bytes of ``file_fd`` from ``offset`` into the non-blocking ``socket_fd``.

    Raises:
        TimeoutError: the socket stayed full for ``timeout_s``.
        EOFError: the file ended early (it was truncated).
        OSError: the connection failed (EPIPE, ECONNRESET, ...).
    """
    poller = select.poll()
    poller.register(socket_fd, select.POLLOUT)
    end = offset + count
    timeout_ms = int(timeout_s * 1000)
    while offset < end:
        try:
            sent = os.sendfile(
                socket_fd, file_fd, offset, min(end - offset, _SENDFILE_CALL_BYTES_MAX)
            )
        except BlockingIOError:
            if not poller.poll(timeout_ms):
                raise TimeoutError(f"socket not writable for {timeout_s} s") from None
            continue
        if sent == 0:
            raise EOFError(f"file ended at {offset}, {end - offset} bytes short")
        offset += sent


class FileSender:
    """Sends a response body made of byte strings and file ranges. Use as an async context
    manager around the body, after ``await response.prepare(request)``."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        executor: concurrent.futures.Executor,
        timeout_s: float,
    ):
        self.request = request
        self.response = response
        self.executor = executor
        self.timeout_s = timeout_s
        self._socket_fd = -1
        self._limits: tuple[int, int] | None = None

    async def __aenter__(self) -> FileSender:
        transport = self.request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None:
            raise ConnectionResetError("connection lost before the body")
        self._socket_fd = os.dup(sock.fileno())
        low, high = transport.get_write_buffer_limits()
        self._limits = (high, low)
        transport.set_write_buffer_limits(high=0, low=0)  # drain() now waits for an empty buffer
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        transport = self.request.transport
        if self._socket_fd >= 0:
            os.close(self._socket_fd)
            self._socket_fd = -1
        if transport is not None and not transport.is_closing() and self._limits is not None:
            high, low = self._limits
            transport.set_write_buffer_limits(high=high, low=low)
        if exc is not None and transport is not None:
            transport.abort()

    async def send_bytes(self, data: bytes) -> None:
        await self.response.write(data)

    async def send_range(self, file_fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file_fd`` from ``offset`` with sendfile."""
        if count <= 0:
            return
        await self._flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self.executor,
            sendfile_blocking,
            self._socket_fd,
            file_fd,
            offset,
            count,
            self.timeout_s,
        )

    async def _flush(self) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection lost")
        async with asyncio.timeout(self.timeout_s):
            while transport.get_write_buffer_size() > 0:
                await self.request.writer.drain()
                if transport.is_closing():
                    raise ConnectionResetError("connection lost")
                if transport.get_write_buffer_size() > 0:
                    await asyncio.sleep(0.001)
