"""Ring benchmark: Shoal's ring builder and lookups side by side with Swift's, same device set.

Measures, for part power 18, 3 replicas and 1000 devices in 5 regions x 20 zones (10 hosts per
zone): the initial rebalance time and the peak memory of the process doing it; lookups per second
on one core; and the partition-replicas moved when 1 % capacity is added (10 devices of the same
weight, one in each of 10 zones), against the ideal (their weight / total weight x replicas x
partitions). CPU seconds are reported beside wall seconds: on a loaded machine they are the
steadier figure. Each side runs in its own process (Swift in its own venv from PyPI), so peak RSS is
that side's alone. Prints ``name=value`` lines and the ratios (ratio > 1: Shoal is better).

    .venv/bin/python -m benchmarks.ring_bench [--part-power 18] [--skip-swift]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

# The same script body runs on both sides; only the builder/ring adapters differ.
_COMMON = textwrap.dedent(
    """
    import json, resource, sys, time
    PART_POWER, LOOKUPS = {part_power}, {lookups}
    def devices():
        for r in range(1, 6):
            for z in range(1, 21):
                for h in range(10):
                    yield dict(region=r, zone=z, ip=f"10.{{r}}.{{z}}.{{h}}", port=6200, device="d1", weight=100.0)
    def added():
        for i in range(10):
            r, z = 1 + i % 5, 1 + i
            yield dict(region=r, zone=z, ip=f"10.{{r}}.{{z}}.200", port=6200, device="d1", weight=100.0)
    out = {{}}
    """
)

_SHOAL = textwrap.dedent(
    """
    from ring import RingBuilder, Ring, write_ring
    b = RingBuilder(PART_POWER, 3, 1)
    for d in devices():
        b.add_dev(d)
    t, c = time.perf_counter(), time.process_time(); b.rebalance(seed=1)
    out["rebalance_s"] = time.perf_counter() - t; out["rebalance_cpu_s"] = time.process_time() - c
    out["balance_pct"] = b.get_balance()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_ring(b, "{workdir}/object.ring")
    before = [row.tolist() for row in b.replica2part2dev]
    b.pretend_min_part_hours_passed()
    for d in added():
        b.add_dev(d)
    t, c = time.perf_counter(), time.process_time(); b.rebalance(seed=2)
    out["add_rebalance_s"] = time.perf_counter() - t; out["add_rebalance_cpu_s"] = time.process_time() - c
    after = [row.tolist() for row in b.replica2part2dev]
    out["moved"] = sum(x != y for ra, rb in zip(before, after) for x, y in zip(ra, rb))
    out["balance_after_add_pct"] = b.get_balance()
    ring = Ring("{workdir}/object.ring")
    names = [f"o{{i}}" for i in range(LOOKUPS)]
    c = time.process_time()
    for n in names:
        ring.get_nodes("AUTH_test", "c", n)
    out["lookups_per_cpu_s"] = LOOKUPS / (time.process_time() - c)
    print(json.dumps(out))
    """
)

_SWIFT = textwrap.dedent(
    """
    from swift.common.ring import RingBuilder, Ring
    import swift.common.utils as utils
    utils.HASH_PATH_SUFFIX = b"bench"
    b = RingBuilder(PART_POWER, 3, 1)
    for i, d in enumerate(devices()):
        d["id"] = i
        b.add_dev(d)
    t, c = time.perf_counter(), time.process_time(); b.rebalance(seed=1)
    out["rebalance_s"] = time.perf_counter() - t; out["rebalance_cpu_s"] = time.process_time() - c
    out["balance_pct"] = b.get_balance()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    b.get_ring().save("{workdir}/object.ring.gz")
    before = [list(row) for row in b._replica2part2dev]
    b.pretend_min_part_hours_passed()
    for i, d in enumerate(added()):
        d["id"] = 1000 + i
        b.add_dev(d)
    t, c = time.perf_counter(), time.process_time(); b.rebalance(seed=2)
    out["add_rebalance_s"] = time.perf_counter() - t; out["add_rebalance_cpu_s"] = time.process_time() - c
    after = [list(row) for row in b._replica2part2dev]
    out["moved"] = sum(x != y for ra, rb in zip(before, after) for x, y in zip(ra, rb))
    out["balance_after_add_pct"] = b.get_balance()
    ring = Ring("{workdir}/object.ring.gz")
    names = [f"o{{i}}" for i in range(LOOKUPS)]
    c = time.process_time()
    for n in names:
        ring.get_nodes("AUTH_test", "c", n)
    out["lookups_per_cpu_s"] = LOOKUPS / (time.process_time() - c)
    print(json.dumps(out))
    """
)


def run_side(python: str, body: str, part_power: int, lookups: int, workdir: str) -> dict:
    script = (_COMMON + body).format(part_power=part_power, lookups=lookups, workdir=workdir)
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"ring_bench: {python} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part-power", type=int, default=18)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--skip-swift", action="store_true", help="measure Shoal only")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        results = {
            "shoal": run_side(sys.executable, _SHOAL, args.part_power, args.lookups, workdir)
        }
        if not args.skip_swift:
            from benchmarks.swift_env import ensure_swift_venv

            swift_python = str(ensure_swift_venv() / "bin" / "python")
            results["swift"] = run_side(
                swift_python, _SWIFT, args.part_power, args.lookups, workdir
            )
    ideal = 1000.0 / 101_000.0 * 3 * (1 << args.part_power)
    print(f"part_power={args.part_power}")
    print("devices=1000")
    print(f"ideal_moved={ideal:.0f}")
    for side, figures in results.items():
        for name, value in figures.items():
            print(
                f"{side}_{name}={value:.4g}"
                if isinstance(value, float)
                else f"{side}_{name}={value}"
            )
        print(f"{side}_moved_over_ideal={figures['moved'] / ideal:.3f}")
    if "swift" in results:
        s, w = results["shoal"], results["swift"]
        print(f"ratio_rebalance_speed={w['rebalance_s'] / s['rebalance_s']:.2f}")
        print(f"ratio_rebalance_cpu={w['rebalance_cpu_s'] / s['rebalance_cpu_s']:.2f}")
        print(f"ratio_add_rebalance_speed={w['add_rebalance_s'] / s['add_rebalance_s']:.2f}")
        print(f"ratio_add_rebalance_cpu={w['add_rebalance_cpu_s'] / s['add_rebalance_cpu_s']:.2f}")
        print(f"ratio_peak_rss={w['peak_rss_mib'] / s['peak_rss_mib']:.2f}")
        print(f"ratio_lookups_per_cpu_s={s['lookups_per_cpu_s'] / w['lookups_per_cpu_s']:.2f}")
        print(f"ratio_moved={w['moved'] / s['moved']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
