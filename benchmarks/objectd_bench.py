"""objectd benchmark: PUT and GET of 4 KiB and 1 MiB objects against one objectd, next to a raw
loop that does the same file work with no HTTP.

Usage (from the repository root):
    .venv/bin/python benchmarks/objectd_bench.py [--dir /srv/bench] [--concurrency 1,16]
        [--count-4k 2000] [--count-1m 200] [--workers 1]

What is compared, per object size and concurrency:

- **objectd**: a real objectd process (``shoal objectd``, fsync on, as always) on a device
  directory under ``--dir``, driven over HTTP by ``objectd.client.BackendClient`` (what the proxy
  uses) with ``C`` requests in flight. PUT: MD5 while streaming, temp file, fsync, link into
  place, fsync of the directories, container update off. GET: list the hash directory, read the
  trailer and the body, verify the MD5, send.
- **raw loop**: ``C`` threads doing the same file work straight on the disk, no HTTP: PUT = MD5,
  write body + a metadata trailer of the same size to a temp file, fsync, makedirs, rename into a
  hash directory, fsync of that directory (and of each parent it had to create); GET = listdir,
  open, read, MD5, close.

The ratio objectd/raw is printed for each case; the target of issue 3 is >= 0.5 for the fsynced
PUTs. For GETs from the page cache the raw loop is microseconds per object, so the ratio there
mostly measures the cost of an HTTP request in Python. Results: a table on stdout and
``benchmarks/results/objectd_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
READY_TIMEOUT_S = 30.0


def _partition_of(index: int) -> int:
    return (index * 7919) % PARTITIONS


def _name(run: str, index: int) -> str:
    return f"{run}/obj-{index:08d}"


# --- objectd over HTTP ----------------------------------------------------------------------------
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
            line = self.process.stdout.readline().decode()
            if "listening on http://" in line:
                return int(line.split("listening on http://")[1].split(":")[1].split()[0])
            if self.process.poll() is not None:
                break
        raise RuntimeError(f"objectd did not start: {(self.root / 'objectd.log').read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _http_run(port: int, op: str, names: list[str], body: bytes, concurrency: int) -> float:
    """ops/s of ``op`` (PUT or GET) over ``names`` with ``concurrency`` requests in flight."""
    node = Node("127.0.0.1", port, "sda")
    queue = list(reversed(range(len(names))))
    async with BackendClient(connections_max=concurrency * 2, response_timeout_s=60) as client:

        async def worker() -> None:
            while queue:
                index = queue.pop()
                name, partition = names[index], _partition_of(index)
                if op == "PUT":
                    headers = {
                        "X-Timestamp": Timestamp(time.time()).internal,
                        "Content-Type": "application/octet-stream",
                    }
                    response = await client.put_object(
                        node, partition, ACCOUNT, CONTAINER, name, headers, body
                    )
                    assert response.status == 201, response.status
                else:
                    async with await client.get_object(
                        node, partition, ACCOUNT, CONTAINER, name
                    ) as stream:
                        assert stream.status == 200, stream.status
                        data = await stream.read()
                        assert len(data) == len(body)

        await worker_warmup(client, node)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(names) / (time.perf_counter() - started)


async def worker_warmup(client: BackendClient, node: Node) -> None:
    """One request first, so connection set-up is not part of the timing."""
    await client.head_object(node, 0, ACCOUNT, CONTAINER, "warmup")


# --- the raw loop ---------------------------------------------------------------------------------
class RawDisk:
    """The same file work as objectd's, straight on a directory, with no HTTP."""

    def __init__(self, root: Path):
        self.layout = Layout(root / "devices", bytes.fromhex(SEED_HEX))
        self.tmp = root / "devices" / "sda" / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def put(self, index: int, name: str, body: bytes) -> None:
        etag = hashlib.md5(body).hexdigest()
        stamp = Timestamp(time.time()).internal
        metadata = {
            "name": f"/{ACCOUNT}/{CONTAINER}/{name}",
            "X-Timestamp": stamp,
            "Content-Type": "application/octet-stream",
            "ETag": etag,
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
        name_hash = self.layout.hash_of(ACCOUNT, CONTAINER, name)
        hash_dir = self.layout.object_dir("sda", _partition_of(index), 0, name_hash)
        created = _makedirs(hash_dir)
        os.rename(temp, os.path.join(hash_dir, f"{stamp}.data"))
        for directory in [hash_dir, *(os.path.dirname(d) for d in created)]:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def get(self, index: int, name: str, size: int) -> None:
        name_hash = self.layout.hash_of(ACCOUNT, CONTAINER, name)
        hash_dir = self.layout.object_dir("sda", _partition_of(index), 0, name_hash)
        (data_name,) = os.listdir(hash_dir)
        fd = os.open(os.path.join(hash_dir, data_name), os.O_RDONLY)
        try:
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
        hashlib.md5(data[:size]).hexdigest()


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


def _raw_run(disk: RawDisk, op: str, names: list[str], body: bytes, concurrency: int) -> float:
    indexes = iter(range(len(names)))

    def worker() -> None:
        for index in indexes:  # a shared iterator: each index is taken once
            if op == "PUT":
                disk.put(index, names[index], body)
            else:
                disk.get(index, names[index], len(body))

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
        return len(names) / (time.perf_counter() - started)


# --- the comparison -------------------------------------------------------------------------------
def run_case(
    root: Path, objectd: Objectd, size: int, count: int, concurrency: int, rounds: int
) -> dict:
    """Alternate objectd and the raw loop, ``rounds`` times each (ABBA order, so that a slow
    spell of a busy machine hits both), and keep the median rate of each."""
    body = os.urandom(size)
    disk = RawDisk(root / "raw")
    per_round = max(1, count // rounds)
    rates: dict[str, list[float]] = {
        "objectd_put": [],
        "raw_put": [],
        "objectd_get": [],
        "raw_get": [],
    }
    for index in range(rounds):
        run = uuid.uuid4().hex[:8]
        names = [_name(run, i) for i in range(per_round)]
        raw_names = [_name(run + "-raw", i) for i in range(per_round)]
        steps = [
            (
                "objectd",
                lambda op, n=names: uvloop.run(_http_run(objectd.port, op, n, body, concurrency)),
            ),
            ("raw", lambda op, n=raw_names: _raw_run(disk, op, n, body, concurrency)),
        ]
        if index % 2:
            steps.reverse()
        for op in ("PUT", "GET"):
            for label, step in steps:
                rates[f"{label}_{op.lower()}"].append(step(op))
    medians = {key: statistics.median(values) for key, values in rates.items()}
    return {
        "size_bytes": size,
        "count": per_round * rounds,
        "concurrency": concurrency,
        "rounds": rounds,
        "objectd_put_ops_s": round(medians["objectd_put"], 1),
        "raw_put_ops_s": round(medians["raw_put"], 1),
        "put_ratio": round(medians["objectd_put"] / medians["raw_put"], 3),
        "objectd_get_ops_s": round(medians["objectd_get"], 1),
        "raw_get_ops_s": round(medians["raw_get"], 1),
        "get_ratio": round(medians["objectd_get"] / medians["raw_get"], 3),
        "samples": {key: [round(v, 1) for v in values] for key, values in rates.items()},
    }


def _print_table(rows: list[dict]) -> None:
    header = f"{'size':>6} {'C':>3} | {'objectd PUT/s':>13} {'raw PUT/s':>10} {'ratio':>6} | "
    header += f"{'objectd GET/s':>13} {'raw GET/s':>10} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        size = "4KiB" if row["size_bytes"] == 4 * KiB else f"{row['size_bytes'] // MiB}MiB"
        print(
            f"{size:>6} {row['concurrency']:>3} | {row['objectd_put_ops_s']:>13.0f} "
            f"{row['raw_put_ops_s']:>10.0f} {row['put_ratio']:>6.2f} | "
            f"{row['objectd_get_ops_s']:>13.0f} {row['raw_get_ops_s']:>10.0f} "
            f"{row['get_ratio']:>6.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the device directories go (a real disk)")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated in-flight counts")
    parser.add_argument("--count-4k", type=int, default=2000, help="objects per 4 KiB case")
    parser.add_argument("--count-1m", type=int, default=200, help="objects per 1 MiB case")
    parser.add_argument("--workers", type=int, default=1, help="objectd worker processes")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of objectd and raw")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="objectd-bench-", dir=args.dir))
    objectd = Objectd(root / "objectd", args.workers)
    rows = []
    try:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            rows.append(run_case(root, objectd, 4 * KiB, args.count_4k, concurrency, args.rounds))
            rows.append(run_case(root, objectd, 1 * MiB, args.count_1m, concurrency, args.rounds))
    finally:
        objectd.stop()
        shutil.rmtree(root, ignore_errors=True)
    _print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"cases": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2)
    )
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
