"""objectd benchmark: PUT and GET of 4 KiB and 1 MiB objects against one objectd, next to a raw
loop that does the same file work with no HTTP.

Usage (from the repository root):
    .venv/bin/python benchmarks/objectd_bench.py [--dir /srv/bench] [--concurrency 1,16]
        [--duration-s 4] [--rounds 3] [--client wrk|python] [--workers 1]

What is compared, per object size and concurrency ``C``:

- **objectd**: a real objectd process (``shoal objectd``, fsync on, as always; one worker) on a
  device directory under ``--dir``, loaded over HTTP with ``C`` requests in flight. PUT: MD5
  while streaming, temp file, fsync, link into place, fsync of the directories (container updates
  off). GET: list the hash directory, read trailer and body, verify the MD5, send. The load comes
  from ``wrk`` (C, so the client's own CPU does not compete with objectd's on a small machine)
  or, with ``--client python``, from ``objectd.client.BackendClient`` (the proxy's client; its
  CPU then counts against objectd's rate).
- **raw loop**: ``C`` threads doing the same file work on the same filesystem, no HTTP.
  PUT = MD5, write body + a metadata trailer to a temp file, fsync, makedirs, rename into a hash
  directory, fsync of that directory and of each parent it had to create. GET = listdir, open,
  read, MD5, close.
- **HTTP floor** (GET only, with wrk): the raw loop's GET file work served by a bare aiohttp
  handler in one process (``benchmarks/http_floor.py``), loaded like objectd. No server on this
  HTTP stack can do the same file work faster, so floor/raw is the best GET ratio reachable here
  and objectd/floor is what objectd's own work (metadata, checks, headers) costs.

Every figure is a rate over ``--duration-s``; objectd and raw alternate ``--rounds`` times in
ABBA order (a slow spell of a shared machine hits both) and the median is kept. The ratio
objectd/raw is printed per case; the target of issue 3 is >= 0.5. For GETs served from the page
cache the raw loop costs microseconds, so the GET ratio mostly prices one HTTP request.
Results: a table and ``name=value`` lines on stdout, and ``benchmarks/results/objectd_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from objectd.client import BackendClient, Node
from objectd.layout import Layout
from objectd.metadata import encode_trailer
from shoal.timestamp import Timestamp
from shoal.units import KiB, MiB

RESULTS = Path(__file__).resolve().parent / "results" / "objectd_bench.json"
SEED_HEX = "b3c4b3c4b3c4b3c4b3c4b3c4b3c4b3c4"
PARTITIONS = 1024  # objects spread over partitions as in a cluster: most PUTs make new dirs
ACCOUNT, CONTAINER = "AUTH_bench", "bench"
GET_SET_OBJECTS = 200  # GETs cycle over this many objects written beforehand
READY_TIMEOUT_S = 30.0

# --- wrk scripts: object names <prefix>-<thread>-<n>, partition n % 1024 ------------------------
WRK_PUT = """
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args)
   prefix = args[1]; base = tonumber(args[2]); body = string.rep("x", tonumber(args[3]))
   counter = 0
end
function request()
   counter = counter + 1
   local path = string.format("/sda/%d/%s/%s/%s-%d-%d", counter % %PARTITIONS%, "%ACCOUNT%",
                              "%CONTAINER%", prefix, id, counter)
   local stamp = string.format("%.5f", base + counter * 0.00001)
   local headers = {["X-Timestamp"] = stamp, ["Content-Type"] = "application/octet-stream"}
   return wrk.format("PUT", path, headers, body)
end
"""
WRK_GET = """
function init(args) prefix = args[1]; count = tonumber(args[2]); counter = 0 end
function request()
   counter = counter % count + 1
   local path = string.format("/sda/%d/%s/%s/%s-%d", counter % %PARTITIONS%, "%ACCOUNT%",
                              "%CONTAINER%", prefix, counter)
   return wrk.format("GET", path)
end
"""
WRK_DONE = """
function done(summary, latency, requests)
   local line = "WRK_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"status\\": %d}\\n"
   io.write(string.format(line, summary.requests, summary.duration, summary.errors.status))
end
"""


def _script(text: str) -> str:
    text = text.replace("%PARTITIONS%", str(PARTITIONS))
    return text.replace("%ACCOUNT%", ACCOUNT).replace("%CONTAINER%", CONTAINER) + WRK_DONE


# --- objectd --------------------------------------------------------------------------------------
class Objectd:
    """A real objectd process on ``root`` (device ``sda``)."""

    def __init__(self, root: Path, workers: int):
        self.root = root
        (root / "devices" / "sda").mkdir(parents=True, exist_ok=True)
        config = root / "objectd.toml"
        config.write_text(
            f'devices = "{root / "devices"}"\nbind_ip = "127.0.0.1"\nbind_port = 0\n'
            f'mount_check = false\nhash_path_seed = "{SEED_HEX}"\nworkers = {workers}\n'
            'log_level = "WARNING"\nfallocate_reserve = "0"\n'
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shoal.cli", "objectd", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=open(root / "objectd.log", "ab"),  # noqa: SIM115 (the child keeps it)
        )
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            match = re.search(
                r"listening on http://[^:]+:(\d+)", self.process.stdout.readline().decode()
            )
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
        raise RuntimeError(f"objectd did not start: {(self.root / 'objectd.log').read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class HttpFloor:
    """``benchmarks/http_floor.py`` on the raw loop's directory: its GET file work behind a bare
    aiohttp handler, started per object size (it answers that many bytes)."""

    def __init__(self, raw_root: Path, body_bytes: int):
        script = Path(__file__).resolve().parent / "http_floor.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(raw_root), str(body_bytes)], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        match = re.search(r"listening on port (\d+)", self.process.stdout.readline().decode())
        if not match:
            self.stop()
            raise RuntimeError("the HTTP floor server did not start")
        self.port = int(match.group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _wrk(port: int, script: Path, args: list[str], concurrency: int, duration_s: float) -> float:
    threads = min(concurrency, 2)
    seconds = max(1, round(duration_s))
    command = [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "30s",
        "-s", str(script), f"http://127.0.0.1:{port}", "--", *args,
    ]  # fmt: skip
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration_s + 60
    )
    match = re.search(r"WRK_JSON (\{.*\})", output.stdout)
    if not match:
        raise RuntimeError(f"wrk said: {output.stdout}\n{output.stderr}")
    figures = json.loads(match.group(1))
    if figures["status"]:
        raise RuntimeError(f"{figures['status']} requests failed: {output.stdout}")
    return figures["requests"] / (figures["duration_us"] / 1e6)


async def _python_load(
    port: int, op: str, size: int, prefix: str, concurrency: int, duration_s: float
) -> float:
    """The same load as the wrk scripts, from objectd's own client."""
    node = Node("127.0.0.1", port, "sda")
    body = os.urandom(size)
    deadline = time.monotonic() + duration_s
    done = 0
    async with BackendClient(connections_max=concurrency * 2, response_timeout_s=60) as client:

        async def worker(thread: int) -> None:
            nonlocal done
            counter = 0
            while time.monotonic() < deadline:
                counter += 1
                if op == "PUT":
                    name = f"{prefix}-{thread}-{counter}"
                    headers = {
                        "X-Timestamp": Timestamp(time.time()).internal,
                        "Content-Type": "a/b",
                    }
                    response = await client.put_object(
                        node, counter % PARTITIONS, ACCOUNT, CONTAINER, name, headers, body
                    )
                    assert response.status == 201, response.status
                else:
                    index = (thread * 7 + counter) % GET_SET_OBJECTS + 1
                    name = f"{prefix}-{index}"
                    async with await client.get_object(
                        node, index % PARTITIONS, ACCOUNT, CONTAINER, name
                    ) as stream:
                        assert stream.status == 200, stream.status
                        async for _ in stream.iter_chunks(MiB):
                            pass
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(t) for t in range(concurrency)))
        return done / (time.monotonic() - started)


async def _fill_get_set(port: int, prefix: str, size: int) -> None:
    node = Node("127.0.0.1", port, "sda")
    body = os.urandom(size)
    async with BackendClient() as client:
        for index in range(1, GET_SET_OBJECTS + 1):
            headers = {"X-Timestamp": Timestamp(time.time()).internal, "Content-Type": "a/b"}
            response = await client.put_object(
                node, index % PARTITIONS, ACCOUNT, CONTAINER, f"{prefix}-{index}", headers, body
            )
            assert response.status == 201


# --- the raw loop ---------------------------------------------------------------------------------
class RawDisk:
    """The same file work as objectd's, straight on a directory, with no HTTP."""

    def __init__(self, root: Path):
        self.root = root
        self.layout = Layout(root / "devices", bytes.fromhex(SEED_HEX))
        self.tmp = root / "devices" / "sda" / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _hash_dir(self, index: int, name: str) -> str:
        name_hash = self.layout.hash_of(ACCOUNT, CONTAINER, name)
        return self.layout.object_dir("sda", index % PARTITIONS, 0, name_hash)

    def put(self, index: int, name: str, body: bytes) -> None:
        stamp = Timestamp(time.time()).internal
        metadata = {
            "name": f"/{ACCOUNT}/{CONTAINER}/{name}",
            "X-Timestamp": stamp,
            "Content-Type": "application/octet-stream",
            "ETag": hashlib.md5(body).hexdigest(),
            "Content-Length": str(len(body)),
        }
        temp = self.tmp / f"{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, body)
            os.write(fd, encode_trailer(metadata, len(body)))
            os.fsync(fd)
        finally:
            os.close(fd)
        hash_dir = self._hash_dir(index, name)
        created = _makedirs(hash_dir)
        os.rename(temp, os.path.join(hash_dir, f"{stamp}.data"))
        for directory in [hash_dir, *(os.path.dirname(d) for d in created)]:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def get(self, index: int, name: str, size: int) -> bytes:
        """The body (the HTTP floor serves it; the raw loop drops it)."""
        hash_dir = self._hash_dir(index, name)
        (data_name,) = os.listdir(hash_dir)
        fd = os.open(os.path.join(hash_dir, data_name), os.O_RDONLY)
        try:
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
        body = data[:size]
        hashlib.md5(body).hexdigest()
        return body


def _makedirs(path: str) -> list[str]:
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
            created.append(directory)
        except FileExistsError:
            pass
    return created


def _raw_load(
    disk: RawDisk, op: str, size: int, prefix: str, concurrency: int, duration_s: float
) -> float:
    body = os.urandom(size)
    deadline = time.monotonic() + duration_s
    counts = [0] * concurrency
    lock = threading.Lock()

    def worker(thread: int) -> None:
        counter = 0
        while time.monotonic() < deadline:
            counter += 1
            if op == "PUT":
                disk.put(counter, f"{prefix}-{thread}-{counter}", body)
            else:
                index = (thread * 7 + counter) % GET_SET_OBJECTS + 1
                disk.get(index, f"{prefix}-{index}", size)
            with lock:
                counts[thread] += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker, t) for t in range(concurrency)]:
            future.result()
    return sum(counts) / (time.monotonic() - started)


# --- the comparison -------------------------------------------------------------------------------
class Bench:
    def __init__(self, root: Path, objectd: Objectd, client: str, duration_s: float):
        self.root = root
        self.objectd = objectd
        self.client = client
        self.duration_s = duration_s
        self.disk = RawDisk(root / "raw")
        self.scripts = root / "wrk"
        self.scripts.mkdir(exist_ok=True)
        (self.scripts / "put.lua").write_text(_script(WRK_PUT))
        (self.scripts / "get.lua").write_text(_script(WRK_GET))

    def objectd_rate(self, op: str, size: int, prefix: str, concurrency: int) -> float:
        if self.client == "python":
            load = _python_load(self.objectd.port, op, size, prefix, concurrency, self.duration_s)
            return uvloop.run(load)
        if op == "PUT":
            args = [prefix, f"{time.time():.5f}", str(size)]
        else:
            args = [prefix, str(GET_SET_OBJECTS)]
        script = self.scripts / f"{op.lower()}.lua"
        return _wrk(self.objectd.port, script, args, concurrency, self.duration_s)

    def raw_rate(self, op: str, size: int, prefix: str, concurrency: int) -> float:
        return _raw_load(self.disk, op, size, prefix, concurrency, self.duration_s)

    def floor_get_rate(self, floor: HttpFloor, prefix: str, concurrency: int) -> float:
        args = [prefix, str(GET_SET_OBJECTS)]
        return _wrk(floor.port, self.scripts / "get.lua", args, concurrency, self.duration_s)

    def case(self, size: int, concurrency: int, rounds: int) -> dict:
        """Alternate objectd and raw ``rounds`` times (ABBA), keep the medians."""
        get_prefix = f"get-{uuid.uuid4().hex[:8]}"
        uvloop.run(_fill_get_set(self.objectd.port, get_prefix, size))
        raw_body = os.urandom(size)
        for index in range(1, GET_SET_OBJECTS + 1):
            self.disk.put(index, f"{get_prefix}-{index}", raw_body)
        rates: dict[str, list[float]] = {
            key: [] for key in ("objectd_put", "raw_put", "objectd_get", "raw_get", "floor_get")
        }
        floor = HttpFloor(self.disk.root, size) if self.client == "wrk" else None
        try:
            for index in range(rounds):
                sides = [("objectd", self.objectd_rate), ("raw", self.raw_rate)]
                if index % 2:
                    sides.reverse()
                for op in ("PUT", "GET"):
                    for label, rate in sides:
                        prefix = f"put-{uuid.uuid4().hex[:8]}" if op == "PUT" else get_prefix
                        rates[f"{label}_{op.lower()}"].append(rate(op, size, prefix, concurrency))
                if floor is not None:
                    rates["floor_get"].append(self.floor_get_rate(floor, get_prefix, concurrency))
        finally:
            if floor is not None:
                floor.stop()
        if not rates["floor_get"]:
            rates["floor_get"] = [float("nan")]  # --client python: no wrk to load the floor
        medians = {key: statistics.median(values) for key, values in rates.items()}
        return {
            "size_bytes": size,
            "concurrency": concurrency,
            "objectd_put_ops_s": round(medians["objectd_put"], 1),
            "raw_put_ops_s": round(medians["raw_put"], 1),
            "put_ratio": round(medians["objectd_put"] / medians["raw_put"], 3),
            "objectd_get_ops_s": round(medians["objectd_get"], 1),
            "raw_get_ops_s": round(medians["raw_get"], 1),
            "get_ratio": round(medians["objectd_get"] / medians["raw_get"], 3),
            "floor_get_ops_s": round(medians["floor_get"], 1),
            "floor_get_ratio": round(medians["floor_get"] / medians["raw_get"], 3),
            "objectd_get_of_floor": round(medians["objectd_get"] / medians["floor_get"], 3),
            "samples": {key: [round(v, 1) for v in values] for key, values in rates.items()},
        }


def _print_table(rows: list[dict], client: str) -> None:
    print(f"objectd (load from {client}) vs raw file loop; ops/s, median of rounds")
    header = f"{'size':>6} {'C':>3} | {'objectd PUT/s':>13} {'raw PUT/s':>10} {'ratio':>6} | "
    header += f"{'objectd GET/s':>13} {'raw GET/s':>10} {'ratio':>6} | "
    header += f"{'floor GET/s':>11} {'floor/raw':>9} {'objectd/floor':>13}"
    print(header)
    print("-" * len(header))
    for row in rows:
        size = "4KiB" if row["size_bytes"] == 4 * KiB else f"{row['size_bytes'] // MiB}MiB"
        print(
            f"{size:>6} {row['concurrency']:>3} | {row['objectd_put_ops_s']:>13.0f} "
            f"{row['raw_put_ops_s']:>10.0f} {row['put_ratio']:>6.2f} | "
            f"{row['objectd_get_ops_s']:>13.0f} {row['raw_get_ops_s']:>10.0f} "
            f"{row['get_ratio']:>6.2f} | {row['floor_get_ops_s']:>11.0f} "
            f"{row['floor_get_ratio']:>9.2f} {row['objectd_get_of_floor']:>13.2f}"
        )
    print(
        "floor = the raw loop's GET file work behind a bare aiohttp handler "
        "(benchmarks/http_floor.py), same client"
    )


def _emit(rows: list[dict]) -> None:
    """``name=value`` lines, one per figure, for scripts."""
    for row in rows:
        size = "4k" if row["size_bytes"] == 4 * KiB else f"{row['size_bytes'] // MiB}m"
        case = f"{size}_c{row['concurrency']}"
        for key, value in row.items():
            if key not in ("size_bytes", "concurrency", "samples"):
                print(f"{key.replace('_ops_s', '')}_{case}={value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the device directories go (a real disk)")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated in-flight counts")
    parser.add_argument("--duration-s", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of objectd and raw")
    parser.add_argument("--sizes", default="4096,1048576", help="object sizes in bytes")
    parser.add_argument("--workers", type=int, default=1, help="objectd worker processes")
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator for objectd (default wrk when installed)",
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="objectd-bench-", dir=args.dir))
    objectd = Objectd(root / "objectd", args.workers)
    bench = Bench(root, objectd, args.client, args.duration_s)
    rows = []
    try:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                rows.append(bench.case(size, concurrency, args.rounds))
    finally:
        objectd.stop()
        shutil.rmtree(root, ignore_errors=True)
    _print_table(rows, args.client)
    print()
    _emit(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {"cases": rows, "args": {key: str(value) for key, value in vars(args).items()}}
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
