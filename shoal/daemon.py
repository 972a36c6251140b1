"""The daemon runner: uvloop, listening sockets, worker processes, signals, graceful shutdown.

Public: :func:`serve_app`, :func:`run_async`, :func:`bind_socket`, :func:`claim_port`,
:class:`PortInUse`.

A component hands :func:`serve_app` a factory of its aiohttp application; resources that live as
long as the app (rings, client sessions, SQLite pools) belong in the app's ``cleanup_ctx``.

Workers: with ``workers > 1`` the parent forks that many processes. Each binds its own socket
with ``SO_REUSEPORT`` so the kernel spreads connections over them (better balance than one shared
accept queue), and the parent only supervises: it restarts a worker that dies, forwards SIGTERM
and SIGINT, and waits. With ``workers == 1`` (the default in tests) everything runs in-process.

Shutdown: SIGTERM or SIGINT stops accepting, lets requests in flight finish for up to
``shutdown_timeout_s``, then closes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

log = logging.getLogger("shoal.daemon")

AppFactory = Callable[[], web.Application | Awaitable[web.Application]]

WORKER_RESTART_DELAY_S = 1.0  # a worker that dies at once is not restarted in a tight loop


class PortInUse(OSError):
    """Another process listens on the port (a second copy of this daemon, most likely)."""


def claim_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if anything listens on ``host:port`` already.

    Why: workers bind with ``SO_REUSEPORT``, and the kernel lets any other process of the same
    user join such a port. A second ``shoal aio`` or objectd started on a busy port would then
    share it silently, and the kernel would split connections between two different services.
    A probe bind *without* ``SO_REUSEPORT`` fails while any socket holds the port.
    """
    if port == 0:
        return  # the kernel picks a free port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def bind_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6), ``SO_REUSEPORT`` when asked."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


GC_YOUNG_THRESHOLD = 50_000
"""Allocations (net of frees) between collections of the youngest generation; Python's default
is 700. A server allocates and frees thousands of short-lived objects per request, almost none
of them in reference cycles, so at 700 the collector ran every few requests and took ~3 % of
all CPU in 4 KiB PUTs (``perf``). At 50,000 the cyclic garbage waiting for a collection is
bounded to a few MB."""


MALLOC_MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
"""glibc serves allocations above this with their own mmap, below it from the heap. Its default
starts at 128 KiB (adjusting upwards as blocks are freed, and trimming the heap back): body
buffers of 64 KiB to 1 MiB were then mapped, faulted in page by page, zeroed and unmapped again,
over and over: ~8 % of all CPU during 1 MiB PUTs (``perf``: ``exc_page_fault`` under the
copies into fresh buffers)."""

MALLOC_TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
"""Free memory at the top of the heap that glibc keeps instead of returning it to the kernel;
a few requests' worth of body buffers, so the next requests reuse pages already faulted in."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> None:
    """Keep body-sized buffers on the heap (see MALLOC_MMAP_THRESHOLD_BYTES); a no-op where
    the C library has no ``mallopt`` (musl, macOS)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES)


def tune_gc() -> None:
    """Collect rarely, and never rescan what start-up built (modules, config, rings):
    ``gc.freeze`` moves it all to a generation the collector ignores."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _serve_on(
    factory: AppFactory, sock: socket.socket, shutdown_timeout_s: float, ready_line: str | None
) -> None:
    app = factory()
    if asyncio.iscoroutine(app) or isinstance(app, Awaitable):
        app = await app  # type: ignore[misc]
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=shutdown_timeout_s)
    await site.start()
    tune_gc()
    tune_malloc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_line:
        print(ready_line, flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing requests in flight (up to %.0f s)", shutdown_timeout_s)
        await runner.cleanup()


def serve_app(
    factory: AppFactory,
    *,
    host: str,
    port: int,
    workers: int = 1,
    shutdown_timeout_s: float = 30.0,
    name: str = "shoal",
) -> int:
    """Serve the app from ``factory`` on ``host:port`` until SIGTERM/SIGINT; return an exit code.

    Prints ``<name> listening on http://host:port`` once the socket accepts connections (tests and
    ``shoal aio`` wait for that line).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    try:
        claim_port(host, port)
        sock = bind_socket(host, port)
    except OSError as exc:
        message = exc.strerror if isinstance(exc, PortInUse) else f"cannot listen: {exc}"
        print(f"{name}: {message}", file=sys.stderr, flush=True)
        return 1
    bound_port = sock.getsockname()[1]
    ready = f"{name} listening on http://{host}:{bound_port} (pid {os.getpid()})"
    if workers == 1:
        uvloop.run(_serve_on(factory, sock, shutdown_timeout_s, ready))
        return 0
    sock.close()  # each worker binds its own SO_REUSEPORT socket
    return _supervise(factory, host, bound_port, workers, shutdown_timeout_s, name)


def _spawn_worker(factory: AppFactory, host: str, port: int, shutdown_timeout_s: float) -> int:
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            uvloop.run(_serve_on(factory, bind_socket(host, port), shutdown_timeout_s, None))
        except BaseException:
            log.exception("worker failed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _supervise(
    factory: AppFactory, host: str, port: int, workers: int, shutdown_timeout_s: float, name: str
) -> int:
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    children: dict[int, float] = {}
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for _ in range(workers):
        children[_spawn_worker(factory, host, port, shutdown_timeout_s)] = time.monotonic()
    print(f"{name} listening on http://{host}:{port} ({workers} workers)", flush=True)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        log.error("worker %d exited (status %d); restarting", pid, status)
        if time.monotonic() - started < WORKER_RESTART_DELAY_S:
            time.sleep(WORKER_RESTART_DELAY_S)
        children[_spawn_worker(factory, host, port, shutdown_timeout_s)] = time.monotonic()
    return 0


def run_async(main: Callable[[], Awaitable[int | None]]) -> int:
    """Run ``main()`` on uvloop; SIGTERM/SIGINT cancel it. Returns its exit code (0 if None)."""

    async def wrapper() -> int:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return (await task) or 0
        except asyncio.CancelledError:
            return 0

    return uvloop.run(wrapper())
