"""Relay a large GET body from objectd to the client with splice(2): socket → pipe → socket.

Public: :func:`relay`, :func:`client_socket_fd`, :data:`SPLICE_MIN_BYTES`, :class:`RelayCut`,
:class:`ClientStalled`.

Why: relaying a 1 MiB body through aiohttp costs the proxy two kernel copies (receive, send),
three user-space copies (uvloop's read buffer, aiohttp's parser, its writer), page faults for
each fresh large buffer, and Python work per chunk. Measured with ``perf`` during wrk 1 MiB GETs
(c=8), that is ~37 % of all the machine's CPU, in the proxy alone. ``splice`` moves page
references from the backend socket into a pipe and from the pipe into the client socket: the
proxy touches no byte of the body.

How: the backend connection is taken over from aiohttp (:meth:`objectd.client.BackendStream.
take_over`: the bytes aiohttp had already buffered, and the socket, with aiohttp's reading
stopped), those bytes go out through aiohttp's writer together with the status line, and once
aiohttp's write buffer is empty the rest is spliced. Waiting is done by the event loop, on
duplicates of the two descriptors (uvloop refuses a reader or writer on a descriptor that one of
its transports owns). The backend connection is closed afterwards, never reused: aiohttp's
parser did not see the body, so it cannot frame the next response.

Failure handling matches the chunk relay of :mod:`proxy.object_get`: when the backend ends early
or stalls, everything already received is first passed to the client, then :class:`RelayCut`
says how many bytes the client got, and the caller resumes from another replica or cuts the
response (a replica that failed its MD5 check). A client that goes away raises
ConnectionResetError; one that takes nothing for ``client_timeout_s`` raises
:class:`ClientStalled`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

from aiohttp import web

from shoal.units import KiB, MiB

SPLICE_MIN_BYTES = 256 * KiB
"""Bodies from this size on are spliced. Below, the fixed cost of a splice relay (a pipe, two
duplicated descriptors, a backend connection that cannot be reused) outweighs the copies saved."""

PIPE_BYTES = 1 * MiB
"""The pipe's capacity (``F_SETPIPE_SZ``; Linux's default ``pipe-max-size`` allows it for any
user). The default 64 KiB pipe would need sixteen fill/drain rounds per MiB."""

_IN_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0
_OUT_FLAGS = _IN_FLAGS | (os.SPLICE_F_MORE if hasattr(os, "splice") else 0)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class RelayCut(Exception):
    """The backend ended or stalled before the body did; ``sent`` bytes reached the client."""

    def __init__(self, sent: int, reason: str):
        super().__init__(reason)
        self.sent = sent


class ClientStalled(ConnectionError):
    """The client took no bytes for ``client_timeout_s`` (treated like a client that left)."""


def available() -> bool:
    """Whether this platform has splice (Linux, Python ≥ 3.10)."""
    return hasattr(os, "splice")


def client_socket_fd(request: web.Request) -> int | None:
    """The client connection's descriptor, or None when it cannot be spliced to (TLS, no
    transport, not a socket)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else sock.fileno()


async def _ready(fd: int, *, writable: bool, timeout_s: float) -> bool:
    """Wait until ``fd`` is readable (or writable); False after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        async with asyncio.timeout(timeout_s):
            await waiter
        return True
    except TimeoutError:
        return False
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _flushed(request: web.Request, client_fd: int, timeout_s: float) -> None:
    """Wait until aiohttp's transport has written everything it buffered, so that spliced
    bytes cannot overtake it."""
    transport = request.transport
    assert transport is not None
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("client connection closed")
        if not await _ready(client_fd, writable=True, timeout_s=timeout_s):
            _hang_up(request)
            raise ClientStalled(f"client took nothing for {timeout_s} s")
        await asyncio.sleep(0)  # the transport writes in the same loop turn as our wake-up


def _hang_up(request: web.Request) -> None:
    """Close a client connection whose response cannot be finished (part of the body is out)."""
    if request.transport is not None:
        request.transport.abort()


def _pipe() -> tuple[int, int, int]:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # a lower pipe-max-size: the default capacity works, with more rounds
    return read_end, write_end, fcntl.fcntl(write_end, _F_GETPIPE_SZ)


async def relay(
    request: web.Request,
    client_fd: int,
    backend_fd: int,
    length: int,
    *,
    backend_timeout_s: float,
    client_timeout_s: float,
) -> None:
    """Move exactly ``length`` bytes from ``backend_fd`` to ``client_fd``.

    Call after aiohttp has been handed the response's first bytes (status line included). Both
    descriptors are only borrowed: they are duplicated here and the duplicates closed.

    Raises:
        RelayCut: the backend ended early, failed or stalled for ``backend_timeout_s``; every
            byte received from it was passed on first.
        ConnectionResetError, ClientStalled: the client went away or stopped reading.
    """
    await _flushed(request, client_fd, client_timeout_s)
    source = os.dup(backend_fd)
    sink = os.dup(client_fd)
    pipe_out, pipe_in, capacity = _pipe()
    sent = in_pipe = 0
    to_read = length
    cut: str | None = None
    try:
        while sent < length:
            if in_pipe == 0 and cut is None:
                try:
                    moved = os.splice(source, pipe_in, min(to_read, capacity), flags=_IN_FLAGS)
                except BlockingIOError:
                    if not await _ready(source, writable=False, timeout_s=backend_timeout_s):
                        cut = f"no body bytes for {backend_timeout_s} s"
                    continue
                except OSError as exc:
                    cut = f"backend read failed: {exc}"
                    continue
                if moved == 0:
                    cut = f"backend closed after {length - to_read} of {length} bytes"
                    continue
                to_read -= moved
                in_pipe = moved
            if in_pipe == 0:  # the backend failed and everything it gave went out
                assert cut is not None
                raise RelayCut(sent, cut)
            flags = _OUT_FLAGS if to_read else _IN_FLAGS
            try:
                moved = os.splice(pipe_out, sink, in_pipe, flags=flags)
            except BlockingIOError:
                if not await _ready(sink, writable=True, timeout_s=client_timeout_s):
                    _hang_up(request)
                    raise ClientStalled(f"client took nothing for {client_timeout_s} s") from None
                continue
            except _CLIENT_GONE as exc:
                _hang_up(request)
                raise ConnectionResetError(f"client went away: {exc}") from None
            in_pipe -= moved
            sent += moved
    finally:
        for fd in (source, sink, pipe_out, pipe_in):
            os.close(fd)
        if request.writer is not None:  # bytes the access log and keep-alive bookkeeping count
            request.writer.output_size += sent
