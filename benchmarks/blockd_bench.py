"""blockd benchmark: snapshot and clone time against volume size, and the iSCSI data path.

Usage (root, on a node with tgt, libiscsi-bin, qemu-utils, qemu-block-extra, xfsprogs):
    .venv/bin/python benchmarks/blockd_bench.py [--sizes 1,10,100] [--io-mib 1024] [--repeat 5]

What it measures, all on a fresh reflink backend (XFS on a loop file) with a private tgtd:

1. Snapshot and clone latency through blockd's API (POST /v1/snapshots; POST /v1/volumes with
   source_volume_id) for volumes of 1, 10 and 100 GiB. Each volume first gets 1 MiB written every
   64 MiB over its whole size, so a bigger volume really has more extents; the claim to check is
   that the time does not grow with the size (FICLONE shares extents, it copies no data).
2. Sequential write and read MiB/s (1 MiB requests, queue depth 16, `qemu-img bench` through
   QEMU's libiscsi driver) of (a) the raw backing file, (b) a tgt target made by hand with tgtadm
   on an equal file (tgt's own cost), (c) the same through an export made by blockd. blockd is
   not in the data path: (c) should equal (b).

3. With ``--guest``: (1) again for lvm-thin inside the cached UML guest (tests/block/guest/), on
   a 64 GiB sparse data disk. UML's single vCPU and ptrace make every LVM command cost ~0.3-1 s,
   so only the shape (flat in the size) means anything, not the absolute times.

Results: a table on stdout and ``benchmarks/results/blockd_bench.json``. Measured 2026-11-25 on
the 2-core CI machine kind under load 3-9 (other work running): reflink snapshot/clone 2-3.5 ms
for 1, 10 and 100 GiB with the same data, growing with the extent count only (~30-55 ms for
1600 extents); lvm-thin 1.3-2.1 s / 2.7-4.5 s in UML, flat in the size; sequential MiB/s
write/read raw file 1474/1112, tgt by hand 197/488, blockd export 218/385 (run-to-run noise
±25%: blockd is not in the data path).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoal.units import GiB, MiB
from tests.block.support import DEV_TOKEN, BlockdClient, BlockdProcess, host_node, run

SPREAD_STEP_BYTES = 64 * MiB  # one 1 MiB write per 64 MiB of volume: extents grow with size
FIXED_WRITES = 16  # the "fixed" series: 16 MiB at the start of every volume, whatever its size
QUEUE_DEPTH = 16
RESULTS = Path(__file__).resolve().parent / "results" / "blockd_bench.json"
REPO = Path(__file__).resolve().parents[1]
GUEST_VG = "bench-volumes"


def timed_ms(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def spread_writes(path: Path, size_bytes: int, step: int = SPREAD_STEP_BYTES) -> int:
    """Write 1 MiB at every ``step`` bytes over ``size_bytes`` of the file; returns the count."""
    chunk = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY)
    count = 0
    try:
        for offset in range(0, size_bytes, step):
            os.pwrite(fd, chunk, offset)
            count += 1
        os.fsync(fd)
    finally:
        os.close(fd)
    return count


def bench_cow(node, sizes_gib: list[int], repeat: int, volume_path) -> list[dict]:
    """Two series per size: ``fixed`` (16 MiB written at the start, the same extents whatever
    the size) isolates the size; ``spread`` (1 MiB per 64 MiB) grows the extents with it."""
    rows = []
    for size_gib in sizes_gib:
        for series in ("fixed", "spread"):
            rows.append(bench_cow_one(node, size_gib, series, repeat, volume_path))
    return rows


def bench_cow_one(node, size_gib: int, series: str, repeat: int, volume_path) -> dict:
    volume = node.create_volume(size_gib)
    path = volume_path(volume)
    span_bytes = size_gib * GiB if series == "spread" else FIXED_WRITES * SPREAD_STEP_BYTES
    writes = spread_writes(path, span_bytes)
    snapshot_ms, clone_ms = [], []
    for _ in range(repeat):
        body = {"id": str(uuid.uuid4()), "volume_id": volume["id"]}
        snapshot_ms.append(
            timed_ms(lambda b=body: node.api.ok("POST", "/v1/snapshots", b, status=201))
        )
        clone = {"id": str(uuid.uuid4()), "size_gib": size_gib, "source_volume_id": volume["id"]}
        clone_ms.append(timed_ms(lambda b=clone: node.api.ok("POST", "/v1/volumes", b, status=201)))
    return {
        "size_gib": size_gib,
        "series": series,
        "extents_written": writes,
        "snapshot_ms_median": round(statistics.median(snapshot_ms), 2),
        "clone_ms_median": round(statistics.median(clone_ms), 2),
        "snapshot_ms_max": round(max(snapshot_ms), 2),
        "clone_ms_max": round(max(clone_ms), 2),
    }


def qemu_bench(image_args: list[str], io_mib: int, write: bool) -> float:
    """MiB/s of one sequential qemu-img bench run (1 MiB requests, depth QUEUE_DEPTH)."""
    argv = ["qemu-img", "bench", *(["-w"] if write else []), "-s", "1M", "-c", str(io_mib),
            "-d", str(QUEUE_DEPTH), "-t", "none", *image_args]  # fmt: skip
    started = time.perf_counter()
    run(*argv, timeout=600)
    return io_mib / (time.perf_counter() - started)


def iscsi_args(export: dict, initiator: str) -> list[str]:
    """QEMU's iSCSI driver as a json: filename (qemu-img bench takes no --image-opts/--object,
    so the CHAP secret goes in the driver's plain ``password`` option: benchmark-only)."""
    options = {
        "driver": "raw",
        "file": {
            "driver": "iscsi",
            "transport": "tcp",
            "portal": export["target_portal"],
            "target": export["target_iqn"],
            "lun": export["target_lun"],
            "user": export["auth_username"],
            "password": export["auth_password"],
            "initiator-name": initiator,
        },
    }
    return ["json:" + json.dumps(options)]


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def bench_data_path(node, io_mib: int, rounds: int) -> dict:
    size_gib = max(1, -(-io_mib // 1024))
    results: dict[str, dict[str, float]] = {}
    raw = node.mount / "raw.img"
    run("truncate", "-s", f"{size_gib}G", str(raw))
    by_hand = node.mount / "by-hand.img"
    run("truncate", "-s", f"{size_gib}G", str(by_hand))
    iqn = "iqn.2024-01.org.example:by-hand"
    tgtd = node.tgtd
    tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "900", "-T", iqn)
    tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "900",
                "--lun", "1", "-b", str(by_hand))  # fmt: skip
    tgtd.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "account", "--user", "handuser",
                "--password", "handsecret123456")  # fmt: skip
    tgtd.tgtadm("--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "900",
                "--user", "handuser")  # fmt: skip
    tgtd.tgtadm("--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "900",
                "--initiator-name", node.initiator.iqn)  # fmt: skip
    by_hand_export = {"target_portal": tgtd.portal, "target_iqn": iqn, "target_lun": 1,
                      "auth_username": "handuser", "auth_password": "handsecret123456"}  # fmt: skip
    volume = node.create_volume(size_gib)
    blockd_export = node.export(volume["id"])
    cases = {
        "raw_file": ["-f", "raw", "-i", "native", str(raw)],
        "tgt_by_hand": iscsi_args(by_hand_export, node.initiator.iqn),
        "blockd_export": iscsi_args(blockd_export, node.initiator.iqn),
    }
    samples: dict[str, dict[str, list[float]]] = {n: {"write": [], "read": []} for n in cases}
    names = list(cases)
    for round_index in range(rounds):  # interleaved, order flipped every round: a burst of
        order = names if round_index % 2 == 0 else names[::-1]  # load hits every case alike
        for name in order:
            args = cases[name]
            for mode in ("write", "read"):
                drop_caches()
                samples[name][mode].append(qemu_bench(args, io_mib, write=mode == "write"))
    for name, figures in samples.items():
        results[name] = {
            "write_mib_s": round(statistics.median(figures["write"])),
            "read_mib_s": round(statistics.median(figures["read"])),
            "write_samples": [round(x) for x in figures["write"]],
            "read_samples": [round(x) for x in figures["read"]],
        }
    return results


class GuestNode:
    """blockd with lvm-thin + LIO inside the UML guest (``--in-guest``), on its first data disk."""

    def __init__(self, workdir: Path):
        for module in ("dm_thin_pool", "target_core_mod", "target_core_iblock", "iscsi_target_mod"):
            run("modprobe", module)
        disk = os.environ["TEST_DISKS"].split()[0]
        run("pvcreate", "-qy", disk)
        run("vgcreate", "-q", GUEST_VG, disk)
        config = {"dev_token": DEV_TOKEN, "backend": "lvm-thin", "lvm_vg": GUEST_VG,
                  "target": "lio", "lio_save_file": str(workdir / "saveconfig.json"),
                  "max_over_subscription_ratio": 100.0}  # fmt: skip
        self.blockd = BlockdProcess(workdir, config)
        self.blockd.start()
        self.api = BlockdClient(self.blockd.url)

    def create_volume(self, size_gib: int) -> dict:
        body = {"id": str(uuid.uuid4()), "size_gib": size_gib}
        return self.api.ok("POST", "/v1/volumes", body, status=201)["volume"]


def run_in_guest(args) -> list[dict]:
    """Boot the cached UML guest and run this file with ``--in-guest`` there; its COW rows."""
    guest_scripts = REPO / "tests" / "block" / "guest"
    env = {**os.environ, "PIP": sys.executable}
    built = subprocess.run([str(guest_scripts / "ensure-guest.sh")], env=env, check=True,
                           capture_output=True, text=True, timeout=1800)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="blockd-bench-guest-") as work:
        script = Path(work) / "bench.sh"
        script.write_text(
            "#!/bin/bash\ncd /mnt/src && PYTHONPATH=/mnt/src PYTHONDONTWRITEBYTECODE=1 exec "
            f"python3 benchmarks/blockd_bench.py --in-guest --sizes {args.sizes} "
            f"--repeat {args.repeat}\n"
        )
        guest_dir = built.stdout.strip().splitlines()[-1]
        env.update(GUEST_DIR=guest_dir, SRC_DIR=str(REPO), WORK=str(Path(work) / "run"),
                   DATA_DISKS="64G", GUEST_TIMEOUT="1500")  # fmt: skip
        subprocess.run([str(guest_scripts / "run-in-guest.sh"), str(script)], env=env,
                       check=True, timeout=1600, stdout=subprocess.DEVNULL)  # fmt: skip
        return json.loads((Path(work) / "run" / "share" / "guest-cow.json").read_text())


def print_cow(title: str, cow: list[dict]) -> None:
    print(title)
    print(f"{'size GiB':>9} {'series':>7} {'extents':>8} {'snapshot ms':>12} {'clone ms':>9}"
          " (median (max))")  # fmt: skip
    for row in cow:
        print(f"{row['size_gib']:>9} {row['series']:>7} {row['extents_written']:>8} "
              f"{row['snapshot_ms_median']:>7} ({row['snapshot_ms_max']}) "
              f"{row['clone_ms_median']:>6} ({row['clone_ms_max']})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="volume sizes in GiB")
    parser.add_argument("--repeat", type=int, default=5, help="snapshots and clones per size")
    parser.add_argument("--io-mib", type=int, default=1024, help="MiB moved per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per case (median)")
    parser.add_argument("--guest", action="store_true", help="also lvm-thin in the UML guest")
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.in_guest:  # inside the guest: lvm-thin snapshot/clone timing only
        with tempfile.TemporaryDirectory(prefix="blockd-bench-") as workdir:
            node = GuestNode(Path(workdir))
            try:
                cow = bench_cow(node, sizes, args.repeat,
                                lambda v: Path(f"/dev/{GUEST_VG}/{v['name']}"))  # fmt: skip
            finally:
                node.blockd.stop()
        Path("/mnt/host/guest-cow.json").write_text(json.dumps(cow))
        return 0
    xfs_size = f"{max(sizes) * 3 + 8}G"
    with (
        tempfile.TemporaryDirectory(prefix="blockd-bench-") as workdir,
        host_node(Path(workdir), xfs_size=xfs_size) as node,
    ):
        cow = bench_cow(node, sizes, args.repeat, lambda v: node.mount / "volumes" / v["name"])
        data_path = bench_data_path(node, args.io_mib, args.rounds)
    guest_cow = run_in_guest(args) if args.guest else None
    print_cow("reflink on XFS (host), through blockd's API:", cow)
    if guest_cow is not None:
        print_cow("\nlvm-thin (UML guest: 1 vCPU, ptrace; absolute times inflated):", guest_cow)
    print(f"\nsequential, 1 MiB x depth {QUEUE_DEPTH}, {args.io_mib} MiB, median of {args.rounds}:")
    print("  write / read MiB/s")
    for name, figures in data_path.items():
        print(f"  {name:<14} {figures['write_mib_s']:>6} / {figures['read_mib_s']:>6}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    document = {"cow_reflink": cow, "cow_lvm_thin_guest": guest_cow, "data_path": data_path,
                "args": vars(args), "when": when}  # fmt: skip
    RESULTS.write_text(json.dumps(document, indent=2))
    print(f"\nwritten {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
