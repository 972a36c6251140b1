"""The devices of this node: which exist, their thread pools, and the checks behind 507.

Public: :class:`Devices`.

Every disk operation runs on the thread pool of its device (``threads_per_device`` threads), so
a slow or hung disk ties up only its own threads while requests for other devices go on. The
event loop never touches a disk: even the list of devices is read in a thread, every
``DEVICE_RESCAN_INTERVAL_S`` and at once when a request names a device not seen before (at most
ten times a second, so a flood of bad names costs at most ten listdirs a second).

The per-request device check (:meth:`Devices.check`) runs inside the request's disk thread, as
the first step of the operation: a device that is missing, or is not a mount point while
``mount_check`` is on, raises :class:`~objectd.errors.DeviceUnavailable` (507).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from objectd.cached_io import cached_reads_for
from objectd.config import Reserve
from objectd.diskio import DiskIO
from objectd.errors import DeviceUnavailable, DiskFull
from objectd.layout import Layout
from objectd.limits import DEVICE_RESCAN_INTERVAL_S, DEVICES_MAX

T = TypeVar("T")

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_RESCAN_MIN_INTERVAL_S = 0.1


class Devices:
    """Device pools and checks for one ``devices`` root. Create and close on the event loop."""

    def __init__(
        self,
        io: DiskIO,
        layout: Layout,
        *,
        mount_check: bool,
        reserve: Reserve,
        threads_per_device: int,
        named_temp_files: bool = False,
        keep_cache_bytes_max: int = -1,
    ):
        self.io = io
        self.cached_reads = cached_reads_for(io)  # None: every read goes to the disk threads
        self.layout = layout
        self.mount_check = mount_check
        self.reserve = reserve
        self.threads_per_device = threads_per_device
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self.no_tmpfile: set[str] = set()  # devices whose filesystem refused O_TMPFILE
        self.named_temp_files = named_temp_files  # the option: never try O_TMPFILE
        self.keep_cache_bytes_max = keep_cache_bytes_max  # -1: never drop written objects
        self._known: frozenset[str] = frozenset()
        self._scanned_at = 0.0
        self._scan_lock = asyncio.Lock()
        self._scanner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devscan")

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=False)
        self._scanner.shutdown(wait=True)

    def in_use(self, device: str) -> bool:
        """Whether ``device`` was found and its threads exist (:meth:`submit` works for it)."""
        return device in self._pools

    # --- running work on a device's threads ---------------------------------------------------
    async def run(self, device: str, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on ``device``'s threads; ENOSPC/EDQUOT become DiskFull."""
        pool = self._pools.get(device) or await self._pool_for(device)
        return await asyncio.get_running_loop().run_in_executor(
            pool, functools.partial(_translate_errors, function, *args)
        )

    def submit(self, device: str, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Like :meth:`run` for a device already in use by this request (no lookup await)."""
        pool = self._pools[device]
        return asyncio.get_running_loop().run_in_executor(
            pool, functools.partial(_translate_errors, function, *args)
        )

    async def _pool_for(self, device: str) -> concurrent.futures.ThreadPoolExecutor:
        if device not in self._known:
            await self._rescan()
        if device not in self._known:
            raise DeviceUnavailable(f"no device {device!r}")
        pool = self._pools.get(device)
        if pool is None:
            if len(self._pools) >= DEVICES_MAX:
                raise DeviceUnavailable(f"more than {DEVICES_MAX} devices")
            pool = concurrent.futures.ThreadPoolExecutor(
                self.threads_per_device, thread_name_prefix=f"dev-{device}"
            )
            self._pools[device] = pool
        return pool

    async def _rescan(self) -> None:
        async with self._scan_lock:
            if time.monotonic() - self._scanned_at < _RESCAN_MIN_INTERVAL_S:
                return
            loop = asyncio.get_running_loop()
            self._known = await loop.run_in_executor(self._scanner, self._list_devices)
            self._scanned_at = time.monotonic()

    def _list_devices(self) -> frozenset[str]:
        try:
            names = os.listdir(self.layout.devices)
        except OSError:
            return frozenset()
        root = self.layout.devices
        return frozenset(n for n in names if os.path.isdir(os.path.join(root, n)))

    async def rescan_forever(self) -> None:
        """Re-read the device list periodically (a background task of the app)."""
        while True:  # never ends; each pass is one listdir
            with contextlib.suppress(Exception):
                self._scanned_at = 0.0
                await self._rescan()
            await asyncio.sleep(DEVICE_RESCAN_INTERVAL_S)

    # --- checks run inside disk threads ---------------------------------------------------------
    def check(self, device: str) -> str:
        """The device's path; raises DeviceUnavailable if it is missing or not mounted."""
        path = self.layout.device_path(device)
        if self.mount_check:
            if not self.io.ismount(path):
                raise DeviceUnavailable(f"device {device!r} is not mounted")
        elif not self.io.isdir(path):
            raise DeviceUnavailable(f"device {device!r} does not exist")
        return path

    def check_space(self, fd: int, bytes_to_add: int) -> None:
        """Raise DiskFull if writing ``bytes_to_add`` would break ``fallocate_reserve``."""
        stats = self.io.fstatvfs(fd)
        free_bytes = stats.f_bavail * stats.f_frsize - bytes_to_add
        total_bytes = stats.f_blocks * stats.f_frsize
        if free_bytes < 0 or self.reserve.violated(free_bytes, total_bytes):
            raise DiskFull(f"writing {bytes_to_add} bytes would break fallocate_reserve")


def _translate_errors(function: Callable[..., T], *args: Any) -> T:
    try:
        return function(*args)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise DiskFull(os.strerror(exc.errno)) from exc
        raise
