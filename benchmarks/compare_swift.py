"""Shoal against real OpenStack Swift: the same workloads, the same client, one run.

Run from the repository root::

    .venv/bin/python -m benchmarks.compare_swift --start-shoal  # Swift and `shoal aio`, interleaved
    .venv/bin/python -m benchmarks.compare_swift                # Swift only
    .venv/bin/python -m benchmarks.compare_swift --shoal-auth-url http://127.0.0.1:8080/auth/v1.0

Both systems run at once, and the workloads take turns: each throughput step (wrk, curl) runs
``--rounds`` times per system in ABBA order (Swift, Shoal, Shoal, Swift) and each figure is the
median of its rounds, so a slow spell of a shared machine hits both systems rather than one. The
comparison is like for like: Swift's all-in-one here runs its servers (proxy, account, container,
object) plus an object-updater and a container-updater per node, so ``shoal aio`` runs the same
set (``--daemons updater,container-updater``); ``--shoal-daemons`` adds the rest (replicator,
auditor, ...), whose passes then compete with both systems' loads. The workloads, every one
bounded in time:

- Debian ``wrk`` with ``benchmarks/wrk/put.lua`` / ``get.lua``: PUT and GET of 4 KiB objects
  (32 connections) and of 1 MiB objects (8 connections), each for ``--duration-s``, with a token
  obtained beforehand; PUTs use distinct names, GETs read a pre-populated set at random.
- curl: one 256 MiB object PUT (``Content-Length``) and GET, in MB/s (10^6 bytes per second).
- A JSON listing of a 10,000-object container: the median of 3 listings, and how many objects
  the listing returned. Swift's container is filled with ``SwiftAIO.populate_container`` (the
  rows written straight into every container replica, as Swift's replicator does: a few seconds,
  where 10,000 PUTs through Swift's proxy take ~200 CPU-seconds); Shoal's by concurrent zero-byte
  PUTs (64 at a time, none started after ``LIST_POPULATE_TIMEOUT_S``). ``--list-populate-api``
  fills Swift's by PUTs too.
- The proxy's RSS (master and workers, psutil, every 50 ms) while curl streams a 1 GiB object in
  (chunked) and out: growth over the RSS measured just before.
- Server CPU per operation (``*_cpu_ms_per_op``, ``*_cpu_ms_per_mb``): user+system seconds of the
  whole cluster's processes (proxy, storage servers, daemons) during each wrk/curl run, divided by
  the successful operations. On a shared, busy machine this is steadier than throughput.

Output: ``name=value`` lines on stdout (``swift_put_4k_ops_s=…``, ``shoal_…``, ``ratio_put_4k=…``
where a ratio > 1 always means Shoal is better), ``benchmarks/results/compare_swift.json`` and the
chart ``benchmarks/results/compare_swift.png``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

from benchmarks.plot import PANELS, plot_comparison, speedup
from benchmarks.swift_aio import SwiftAIO, free_ports

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000  # throughput is reported in MB/s, decimal, as curl and wrk do
BENCHMARKS_DIR = Path(__file__).resolve().parent
WRK_DIR = BENCHMARKS_DIR / "wrk"
RESULTS_DIR = BENCHMARKS_DIR / "results"
WRK_THREADS = 2  # one per core of the benchmark machine; wrk needs connections >= threads
WRK_TIMEOUT_S = 30  # per request; Swift's 4 KiB PUT p50 is ~0.4 s at 32 connections
CHILD_SLACK_S = 60  # wrk or curl is killed if it outlives its own time limit by this much
CURL_TIMEOUT_S = 300  # a single large transfer; Swift does ~100 MB/s here
LIST_CONCURRENCY = 64  # zero-byte PUTs in flight while populating the listing container
LIST_POPULATE_TIMEOUT_S = 180  # PUT-filled listings; Swift manages 40-100 zero-byte PUTs/s here
LIST_REPEATS = 3
GET_SET_SMALL = 256  # 4 KiB objects pre-populated for the GET run
GET_SET_LARGE = 32  # 1 MiB objects pre-populated for the GET run
PUT_ATTEMPTS = 3  # set-up PUTs that failed (an overloaded store answers 503) are retried
SETUP_CONCURRENCY = 16  # set-up PUTs are not measured: no need to pile up on the store
RSS_SAMPLE_INTERVAL_S = 0.05
SWIFT_LIKE_DAEMONS = "updater,container-updater"  # what SwiftAIO runs besides its servers
START_TIMEOUT_S = 120.0  # for `shoal aio` to accept a login
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Settings:
    """What one run measures; the defaults are the figures the issue asks for."""

    duration_s: int = 10
    connections_small: int = 32
    connections_large: int = 8
    small_bytes: int = 4 * KiB
    large_bytes: int = 1 * MiB
    big_bytes: int = 256 * MiB
    stream_bytes: int = 1024 * MiB
    list_objects: int = 10_000


# (account, container, names) -> None: fills a container's listing without object PUTs
Populate = Callable[[str, str, list[str]], None]


@dataclass(frozen=True)
class Endpoint:
    """A Swift-API endpoint under test.

    ``proxy_pid`` roots the process tree whose RSS is sampled; ``server_pids`` root the trees
    whose CPU time is charged to the workloads (the whole cluster when known); ``populate``
    fills the listing container faster than object PUTs (None: use PUTs).
    """

    name: str
    auth_url: str
    user: str
    key: str
    proxy_pid: int | None
    server_pids: tuple[int, ...] = ()
    populate: Populate | None = None


@dataclass(frozen=True)
class Login:
    token: str
    storage_url: str  # http://host:port/v1/AUTH_x

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.storage_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def account_path(self) -> str:
        return urlsplit(self.storage_url).path


def progress(message: str) -> None:
    print(f"[compare_swift {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- HTTP helpers (setup requests; the measured load comes from wrk and curl) --------------------


async def login(http: aiohttp.ClientSession, endpoint: Endpoint) -> Login:
    headers = {"X-Auth-User": endpoint.user, "X-Auth-Key": endpoint.key}
    async with http.get(endpoint.auth_url, headers=headers) as response:
        response.raise_for_status()
        return Login(response.headers["X-Auth-Token"], response.headers["X-Storage-Url"])


async def put_container(http: aiohttp.ClientSession, auth: Login, container: str) -> str:
    """Create ``container``; return its path (``/v1/AUTH_x/container``)."""
    path = f"{auth.account_path}/{container}"
    async with http.put(auth.base_url + path, headers={"X-Auth-Token": auth.token}) as response:
        if response.status not in (201, 202):
            raise RuntimeError(f"PUT {path}: {response.status}")
    return path


@dataclass
class PutReport:
    """What a batch of PUTs did: names that got a 201, and the status of the others."""

    created: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # name -> status (0: no response)


async def put_objects(
    http: aiohttp.ClientSession,
    auth: Login,
    path: str,
    names: list[str],
    body: bytes,
    concurrency: int,
    deadline: float = float("inf"),
) -> PutReport:
    """PUT ``body`` under each name, ``concurrency`` at a time.

    No new PUT starts after ``deadline`` (time.monotonic()), so a slow store bounds the run by
    the deadline plus one request; names never tried are neither created nor failed.
    """
    pending = iter(names)
    report = PutReport()

    async def worker() -> None:
        for name in pending:  # the shared iterator hands each name to exactly one worker
            if time.monotonic() > deadline:
                return
            url = f"{auth.base_url}{path}/{name}"
            try:
                async with http.put(url, data=body, headers={"X-Auth-Token": auth.token}) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status == 201:
                report.created += 1
            else:
                report.failed[name] = status

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return report


async def put_all(
    http: aiohttp.ClientSession, auth: Login, path: str, names: list[str], body: bytes
) -> None:
    """Create every object (set-up, not measured): retry failures, PUT_ATTEMPTS times at most."""
    for _ in range(PUT_ATTEMPTS):
        failed = (await put_objects(http, auth, path, names, body, SETUP_CONCURRENCY)).failed
        if not failed:
            return
        names = list(failed)
    statuses = Counter(failed.values())  # 0: no response
    raise RuntimeError(f"{len(failed)} objects under {path} could not be created: {statuses}")


# --- load generators ------------------------------------------------------------------------------


async def run_wrk(script: str, auth: Login, args: list[str], connections: int, duration_s: int):
    """Run wrk with a Lua script; return its WRK_JSON summary with ``ops_s`` (2xx/3xx only)."""
    argv = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{duration_s}s"]
    argv += [f"--timeout={WRK_TIMEOUT_S}s", "-s", str(WRK_DIR / script), auth.base_url, "--"]
    process = await asyncio.create_subprocess_exec(
        *argv, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(duration_s + CHILD_SLACK_S):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    for line in stdout.decode().splitlines():
        if line.startswith("WRK_JSON "):
            summary = json.loads(line.removeprefix("WRK_JSON "))
            ok_requests = summary["requests"] - summary["status"]
            summary["ops_s"] = ok_requests / (summary["duration_us"] / 1e6)
            return summary
    raise RuntimeError(f"wrk printed no summary: {stdout.decode()} {stderr.decode()}")


async def curl(argv: list[str], stdin: int | None = None) -> dict[str, float]:
    """Run curl with ``-w`` reporting status, seconds and bytes; raise on a non-2xx status."""
    write_out = "%{http_code} %{time_total} %{size_upload} %{size_download}"
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", str(CURL_TIMEOUT_S), "-o", "/dev/null", "-w", write_out,
        *argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(CURL_TIMEOUT_S + CHILD_SLACK_S):  # in case curl itself hangs
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    status, seconds, uploaded, downloaded = stdout.decode().split()
    if not status.startswith("2"):
        raise RuntimeError(f"curl {argv[:3]}: HTTP {status} {stderr.decode()}")
    return {"seconds": float(seconds), "bytes": float(uploaded) + float(downloaded)}


def proxy_rss_bytes(root_pid: int) -> int:
    """RSS of the proxy process tree (master and workers), re-walked each time: workers change."""
    root = psutil.Process(root_pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def tree_cpu_s(root_pids: tuple[int, ...]) -> float:
    """User + system CPU seconds of the process trees (processes gone since are not counted)."""
    total = 0.0
    for root_pid in root_pids:
        try:
            root = psutil.Process(root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


async def sample_rss_while(root_pid: int | None, work) -> tuple[object, float | None]:
    """Await ``work`` while sampling RSS; return its result and the peak RSS in MB (or None)."""
    if root_pid is None:
        return await work, None
    peak = 0

    async def sampler() -> None:
        nonlocal peak
        while True:
            peak = max(peak, proxy_rss_bytes(root_pid))
            await asyncio.sleep(RSS_SAMPLE_INTERVAL_S)

    task = asyncio.create_task(sampler())
    try:
        result = await work
    finally:
        task.cancel()
    return result, peak / MB


# --- workloads ------------------------------------------------------------------------------------


async def measure_wrk_pair(
    http: aiohttp.ClientSession, auth: Login, label: str, size: int, connections: int,
    get_set: int, settings: Settings, run_id: str, server_pids: tuple[int, ...],
) -> dict[str, float]:  # fmt: skip
    """wrk PUT then GET of ``size``-byte objects; figures ``put_<label>_*`` / ``get_<label>_*``."""
    path = await put_container(http, auth, f"bench-{label}")
    names = [f"get-{index}" for index in range(get_set)]
    await put_all(http, auth, path, names, os.urandom(size))
    figures: dict[str, float] = {}
    runs = (
        ("put", "put.lua", [auth.token, path, str(size), f"put-{run_id}"]),
        ("get", "get.lua", [auth.token, path, "get", str(get_set)]),
    )
    for verb, script, args in runs:
        progress(f"wrk {verb} {label}: {connections} connections, {settings.duration_s} s")
        cpu_before_s = tree_cpu_s(server_pids)
        summary = await run_wrk(script, auth, args, connections, settings.duration_s)
        cpu_s = tree_cpu_s(server_pids) - cpu_before_s
        figures[f"{verb}_{label}_ops_s"] = summary["ops_s"]
        figures[f"{verb}_{label}_mb_s"] = summary["ops_s"] * size / MB
        figures[f"{verb}_{label}_p50_ms"] = summary["p50_us"] / 1000
        figures[f"{verb}_{label}_p99_ms"] = summary["p99_us"] / 1000
        errors = sum(summary[kind] for kind in ("connect", "read", "write", "status", "timeout"))
        figures[f"{verb}_{label}_errors"] = errors
        ok_requests = summary["requests"] - summary["status"]
        if server_pids and ok_requests:
            figures[f"{verb}_{label}_cpu_ms_per_op"] = cpu_s * 1000 / ok_requests
    return figures


async def delete_object(http: aiohttp.ClientSession, auth: Login, url: str) -> None:
    """Free the disk a large object takes (x3 replicas) as soon as it has been measured."""
    async with http.delete(url, headers={"X-Auth-Token": auth.token}) as response:
        await response.read()


async def measure_big(
    http: aiohttp.ClientSession, auth: Login, big_file: Path, size: int,
    server_pids: tuple[int, ...],
) -> dict[str, float]:  # fmt: skip
    """curl PUT of one large object from a file (Content-Length), then GET to /dev/null."""
    path = await put_container(http, auth, "bench-big")
    url = f"{auth.base_url}{path}/big"
    token = f"X-Auth-Token: {auth.token}"
    progress(f"curl PUT/GET of one {size // MiB} MiB object")
    # "Expect:" turns off curl's 100-continue wait; Swift clients do not send it either.
    figures = {}
    for verb, argv in (
        ("put", ["-X", "PUT", "-T", str(big_file), "-H", token, "-H", "Expect:", url]),
        ("get", ["-H", token, url]),
    ):
        cpu_before_s = tree_cpu_s(server_pids)
        transfer = await curl(argv)
        cpu_s = tree_cpu_s(server_pids) - cpu_before_s
        if transfer["bytes"] != size:
            raise RuntimeError(f"large object {verb}: {transfer['bytes']} bytes, want {size}")
        figures[f"{verb}_big_mb_s"] = size / transfer["seconds"] / MB
        if server_pids:
            figures[f"{verb}_big_cpu_ms_per_mb"] = cpu_s * 1000 / (size / MB)
    await delete_object(http, auth, url)
    return figures


async def populate_listing(
    http: aiohttp.ClientSession, auth: Login, path: str, names: list[str], populate: Populate | None
) -> dict[str, float]:
    """Fill the listing container: the endpoint's fast way if it has one, else zero-byte PUTs
    (LIST_CONCURRENCY at a time, none started after LIST_POPULATE_TIMEOUT_S)."""
    started = time.monotonic()
    if populate is not None:
        progress(f"populating {len(names)} listing rows directly (no object PUTs)")
        account, container = path.split("/")[2:4]
        await asyncio.to_thread(populate, account, container, names)
        return {"list_populate_s": time.monotonic() - started}
    progress(f"populating {len(names)} zero-byte objects, {LIST_CONCURRENCY} PUTs at a time")
    deadline = started + LIST_POPULATE_TIMEOUT_S
    populated = await put_objects(http, auth, path, names, b"", LIST_CONCURRENCY, deadline)
    if populated.failed:
        statuses = Counter(populated.failed.values())
        progress(f"{len(populated.failed)} listing PUTs failed, by status: {statuses}")
    populate_s = time.monotonic() - started
    return {
        "list_populate_s": populate_s,
        "list_populate_ops_s": populated.created / populate_s,
        "list_populate_failed": len(populated.failed),
    }


async def measure_listing(
    http: aiohttp.ClientSession, auth: Login, object_count: int, populate: Populate | None
) -> dict[str, float]:
    """Populate a container, then time LIST_REPEATS JSON listings of it (median)."""
    path = await put_container(http, auth, "bench-list")
    names = [f"obj-{index:06d}" for index in range(object_count)]
    figures = await populate_listing(http, auth, path, names, populate)
    url = f"{auth.base_url}{path}?format=json&limit={object_count}"
    durations, listed = [], 0
    for _ in range(LIST_REPEATS):
        started = time.monotonic()
        async with http.get(url, headers={"X-Auth-Token": auth.token}) as response:
            body = await response.read()
        durations.append(time.monotonic() - started)
        listed = len(json.loads(body))
    return figures | {"list_objects": listed, "list_10k_s": statistics.median(durations)}


async def measure_stream_rss(
    http: aiohttp.ClientSession, auth: Login, size: int, proxy_pid: int | None
) -> dict[str, float]:
    """Stream ``size`` bytes in (chunked, from /dev/zero) and out while sampling the proxy RSS."""
    path = await put_container(http, auth, "bench-stream")
    url = f"{auth.base_url}{path}/stream"
    token = f"X-Auth-Token: {auth.token}"
    idle_mb = proxy_rss_bytes(proxy_pid) / MB if proxy_pid else None
    progress(f"streaming {size // MiB} MiB through the proxy, sampling its RSS")
    read_fd, write_fd = os.pipe()
    head = await asyncio.create_subprocess_exec(
        "head", "-c", str(size), "/dev/zero", stdout=write_fd
    )
    os.close(write_fd)
    try:
        put_args = ["-X", "PUT", "-T", "-", "-H", token, "-H", "Expect:", url]
        put, put_peak_mb = await sample_rss_while(proxy_pid, curl(put_args, stdin=read_fd))
    finally:
        os.close(read_fd)
        if head.returncode is None:
            head.kill()
        await head.wait()
    get, get_peak_mb = await sample_rss_while(proxy_pid, curl(["-H", token, url]))
    if get["bytes"] != size:  # curl's upload count includes the chunked framing: check the GET
        raise RuntimeError(f"stream: stored {get['bytes']} bytes, want {size}")
    await delete_object(http, auth, url)
    figures = {
        "put_stream_mb_s": size / put["seconds"] / MB,
        "get_stream_mb_s": size / get["seconds"] / MB,
    }
    if idle_mb is not None and put_peak_mb is not None and get_peak_mb is not None:
        figures |= {
            "rss_idle_mb": idle_mb,
            "rss_put_stream_peak_mb": put_peak_mb,
            "rss_get_stream_peak_mb": get_peak_mb,
            "rss_growth_mb": max(put_peak_mb, get_peak_mb) - idle_mb,
        }
    return figures


STEPS = ("wrk_4k", "wrk_1m", "big", "listing", "stream")
REPEATED_STEPS = frozenset({"wrk_4k", "wrk_1m", "big"})  # the throughput ratios: ABBA rounds


async def measure_step(
    step: str, http: aiohttp.ClientSession, auth: Login, endpoint: Endpoint, settings: Settings,
    big_file: Path, run_id: str,
) -> dict[str, float]:  # fmt: skip
    """One workload against one endpoint; figures without the system prefix."""
    pids = endpoint.server_pids
    if step in ("wrk_4k", "wrk_1m"):
        label, size, connections, get_set = (
            ("4k", settings.small_bytes, settings.connections_small, GET_SET_SMALL)
            if step == "wrk_4k"
            else ("1m", settings.large_bytes, settings.connections_large, GET_SET_LARGE)
        )
        return await measure_wrk_pair(
            http, auth, label, size, connections, get_set, settings, run_id, pids
        )
    if step == "big":
        return await measure_big(http, auth, big_file, settings.big_bytes, pids)
    if step == "listing":
        return await measure_listing(http, auth, settings.list_objects, endpoint.populate)
    if step == "stream":
        return await measure_stream_rss(http, auth, settings.stream_bytes, endpoint.proxy_pid)
    raise ValueError(f"unknown step {step!r}")


async def measure(
    endpoints: list[Endpoint], settings: Settings, big_file: Path, rounds: int
) -> dict[str, dict[str, float]]:
    """Every workload against every endpoint, interleaved; ``{system: {figure: value}}``.

    Step by step, the systems take turns: a throughput step runs ``rounds`` times per system in
    ABBA order (Swift, Shoal, Shoal, Swift, ...) and each figure is the median of its rounds, so
    a slow spell of a shared machine hits both systems instead of one. Every turn starts with a
    ``sync``, so it does not pay for writing back what the previous turn left dirty. The listing
    and the 1 GiB stream run once per system.
    """
    run_id = f"{os.getpid()}-{int(time.time())}"  # keeps names distinct across runs on one store
    timeout = aiohttp.ClientTimeout(total=120)
    async with contextlib.AsyncExitStack() as stack:
        sessions = {}
        for endpoint in endpoints:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=LIST_CONCURRENCY), timeout=timeout
                )
            )
            sessions[endpoint.name] = (http, await login(http, endpoint))
        samples: dict[str, dict[str, list[float]]] = {e.name: {} for e in endpoints}
        for step in STEPS:
            repeats = rounds if step in REPEATED_STEPS else 1
            for round_index in range(repeats):
                order = endpoints if round_index % 2 == 0 else endpoints[::-1]
                for endpoint in order:
                    # the other system's dirty pages would be written back during this turn
                    await asyncio.to_thread(os.sync)
                    progress(f"{endpoint.name}: {step}, round {round_index + 1} of {repeats}")
                    http, auth = sessions[endpoint.name]
                    figures = await measure_step(
                        step, http, auth, endpoint, settings, big_file, f"{run_id}-{round_index}"
                    )
                    for key, value in figures.items():
                        samples[endpoint.name].setdefault(key, []).append(value)
    return {
        name: {key: statistics.median(values) for key, values in figures.items()}
        for name, figures in samples.items()
    }


# --- Shoal as a subprocess ---------------------------------------------------------------------


def shoal_aio_missing() -> str | None:
    """Why ``shoal aio`` cannot be started from this tree, or None if it can."""
    if importlib.util.find_spec("shoal") is None:
        return "the shoal package is not installed in this interpreter"
    if importlib.util.find_spec("shoal.aio") is None:
        return "shoal.aio (the `shoal aio` command) does not exist yet"
    return None


class ShoalAIO:
    """``shoal aio --data DIR --port P`` as a child process; ready once a tempauth login works.

    Its output goes to ``<data>.log``. The RSS sampled is the proxy's: the first process in the
    tree whose command line mentions "proxy" (with its workers), else the whole aio tree.
    """

    def __init__(self, data_dir: Path, port: int, workers: int, all_daemons: bool = False) -> None:
        self.data_dir, self.port, self.workers = data_dir, port, workers
        self.all_daemons = all_daemons
        self.process: subprocess.Popen | None = None
        self.auth_url = f"http://127.0.0.1:{port}/auth/v1.0"

    def __enter__(self) -> ShoalAIO:
        argv = [sys.executable, "-m", "shoal.cli", "aio", "--data", str(self.data_dir)]
        argv += ["--port", str(self.port)]
        if "--workers" in self._help():
            argv += ["--workers", str(self.workers)]
        else:
            progress("shoal aio has no --workers option: it runs its default worker count")
        if not self.all_daemons:
            argv += ["--daemons", SWIFT_LIKE_DAEMONS]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(f"{self.data_dir}.log", "ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            asyncio.run(self._wait_ready())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        for signum, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, None)):
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None

    def _help(self) -> str:
        argv = [sys.executable, "-m", "shoal.cli", "aio", "--help"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout

    async def _wait_ready(self) -> None:
        endpoint = self.endpoint()
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"shoal aio exited with {self.process.returncode}")
                try:
                    await login(http, endpoint)
                    return
                except (aiohttp.ClientError, TimeoutError, KeyError):
                    await asyncio.sleep(0.5)
        raise RuntimeError(f"shoal aio did not accept a login within {START_TIMEOUT_S} s")

    def proxy_pid(self) -> int | None:
        if self.process is None:
            return None
        root = psutil.Process(self.process.pid)
        for process in root.children(recursive=True):
            if any("proxy" in part for part in process.cmdline()):
                return process.pid
        return root.pid

    def endpoint(self) -> Endpoint:
        assert self.process is not None
        return Endpoint(
            "shoal", self.auth_url, "test:tester", "testing", self.proxy_pid(),
            server_pids=(self.process.pid,),
        )  # fmt: skip


# --- the run -------------------------------------------------------------------------------------


def write_random_file(path: Path, size: int) -> None:
    """Incompressible data for the large-object PUT, written once and sent to both systems."""
    with open(path, "wb") as f:
        for offset in range(0, size, MiB):
            f.write(os.urandom(min(MiB, size - offset)))


def emit(name: str, value: float | int | str) -> None:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"{name}={text}", flush=True)


def shoal_endpoint(
    args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack
) -> tuple[Endpoint | None, str | None]:
    """Shoal's endpoint: an external one, or `shoal aio` started here (stopped with ``stack``),
    or none and why."""
    if args.shoal_auth_url:
        pids = (args.shoal_proxy_pid,) if args.shoal_proxy_pid else ()
        endpoint = Endpoint(
            "shoal", args.shoal_auth_url, args.shoal_user, args.shoal_key, args.shoal_proxy_pid,
            server_pids=pids,
        )  # fmt: skip
        return endpoint, None
    if not args.start_shoal:
        return None, "neither --start-shoal nor --shoal-auth-url given"
    missing = shoal_aio_missing()
    if missing:
        return None, missing
    port = args.shoal_port or free_ports(1)[0]
    shoal = stack.enter_context(ShoalAIO(workdir / "shoal", port, args.workers, args.shoal_daemons))
    return shoal.endpoint(), None


def report(figures: dict[str, float], settings: Settings, notes: list[str], results_dir: Path):
    """Print the ratios, then write the JSON results and the PNG chart."""
    for panel in PANELS:
        ratio = speedup(figures, panel)
        if ratio is not None:
            figures[f"ratio_{panel.ratio_name}"] = ratio
            emit(f"ratio_{panel.ratio_name}", ratio)
    results_dir.mkdir(parents=True, exist_ok=True)
    results = {"settings": asdict(settings), "figures": figures, "notes": notes}
    results["when_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    json_path = results_dir / "compare_swift.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    title = f"Shoal vs Swift 2.38.3, {figures['workers']} proxy worker(s); " + "; ".join(notes)
    png_path = plot_comparison(figures, results_dir / "compare_swift.png", title)
    progress(f"wrote {json_path} and {png_path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compare_swift", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--workers", type=int, default=os.cpu_count() or 1, help="proxy workers, both systems")
    add("--duration-s", type=int, default=Settings.duration_s, help="each wrk run")
    add(
        "--rounds", type=int, default=2,
        help="runs of each throughput step per system, alternated ABBA; the median is kept",
    )  # fmt: skip
    add("--big-mib", type=int, default=Settings.big_bytes // MiB, help="the curl object")
    add("--stream-mib", type=int, default=Settings.stream_bytes // MiB, help="RSS stream")
    add("--list-objects", type=int, default=Settings.list_objects)
    add("--list-populate-api", action="store_true", help="fill Swift's listing by object PUTs")
    add("--start-shoal", action="store_true", help="run `shoal aio` here (skipped if absent)")
    add(
        "--shoal-daemons", action="store_true",
        help="run all of Shoal's daemons (Swift's all-in-one here runs only its updaters)",
    )  # fmt: skip
    add("--shoal-port", type=int, default=0, help="port for the `shoal aio` started here")
    add("--shoal-auth-url", help="measure an already running Shoal instead")
    add("--shoal-user", default="test:tester")
    add("--shoal-key", default="testing")
    add("--shoal-proxy-pid", type=int, help="for RSS sampling of an external Shoal")
    add("--workdir", type=Path, help="default: a temporary directory, removed afterwards")
    add("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        duration_s=args.duration_s, big_bytes=args.big_mib * MiB,
        stream_bytes=args.stream_mib * MiB, list_objects=args.list_objects,
    )  # fmt: skip
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="compare-swift-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, float] = {"workers": args.workers}
    emit("workers", args.workers)
    notes = []
    try:
        big_file = workdir / "big.bin"
        write_random_file(big_file, settings.big_bytes)
        with (
            SwiftAIO(workdir / "swift", workers=args.workers) as swift,
            contextlib.ExitStack() as stack,
        ):
            endpoints = [
                Endpoint(
                    "swift", swift.auth_url, swift.user, swift.key, swift.proxy_pid,
                    server_pids=tuple(swift.pids()),
                    populate=None if args.list_populate_api else swift.populate_container,
                )
            ]  # fmt: skip
            shoal, skipped = shoal_endpoint(args, workdir, stack)
            if shoal is not None:
                endpoints.append(shoal)
            results = asyncio.run(measure(endpoints, settings, big_file, args.rounds))
        for name, system_figures in results.items():
            for key, value in system_figures.items():
                figures[f"{name}_{key}"] = value
                emit(f"{name}_{key}", value)
        if args.rounds > 1:
            notes.append(f"medians of {args.rounds} interleaved rounds")
        if shoal is not None and args.start_shoal and not args.shoal_daemons:
            notes.append("servers and updaters only on both sides")
        if skipped:
            notes.append(f"Shoal not measured: {skipped}")
            progress(notes[-1])
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report(figures, settings, notes, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
