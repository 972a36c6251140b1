"""``ringctl``: build and inspect Shoal rings (the operator's ``swift-ring-builder``).

Every command takes the builder file first (``object.builder``); ``rebalance`` writes the ring
next to it (``object.ring``). ``--json`` gives machine-readable output. Errors print one line and
exit with status 1 (2 for a bad command line); there is never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

from ring import Ring, RingBuilder, RingError, load_builder, save_builder, write_ring
from ring.device import parse_add_value, parse_search_value, parse_weight, validate_device
from shoal.progress import ProgressBar


class CommandError(Exception):
    """A command cannot be carried out; the message is the one line the operator sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def ring_path_for(builder_path: Path) -> Path:
    return builder_path.with_suffix(".ring")


def _find_one(builder: RingBuilder, search: str) -> list[dict[str, Any]]:
    found = builder.search_devs(parse_search_value(search))
    if not found:
        raise CommandError(f"no device matches {search!r}")
    return found


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


# ---- commands ---------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    if path.exists() and not args.force:
        raise CommandError(f"{path} already exists (use --force to replace it)")
    builder = RingBuilder(args.part_power, args.replicas, args.min_part_hours)
    save_builder(builder, path)
    _emit(
        args,
        {"builder": str(path), "part_power": args.part_power, "replicas": args.replicas},
        f"Created {path}: {builder.partition_count} partitions, {args.replicas} replicas, "
        f"min_part_hours {args.min_part_hours}",
    )


def cmd_add(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    builder = load_builder(path)
    if args.device_spec:
        if args.weight is None:
            raise CommandError("missing WEIGHT after the device")
        dev = parse_add_value(args.device_spec, args.weight)
    else:
        missing = [
            k for k in ("zone", "ip", "port", "device", "weight") if getattr(args, k) is None
        ]
        if missing:
            raise CommandError(
                f"missing --{', --'.join(missing)} (or give rRzZ-IP:PORT/DEVICE WEIGHT)"
            )
        dev = {
            "region": args.region,
            "zone": args.zone,
            "ip": args.ip,
            "port": args.port,
            "device": args.device,
            "weight": parse_weight(args.weight),
            "meta": args.meta or "",
        }
        validate_device(dev)
    if args.id is not None:
        dev["id"] = args.id
    dev_id = builder.add_dev(dev)
    save_builder(builder, path)
    added = builder.devs[dev_id]
    _emit(args, added, f"Added d{dev_id} {_describe(added)} weight {added['weight']:g}")


def cmd_remove(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    builder = load_builder(path)
    found = _find_one(builder, args.search)
    for dev in found:
        builder.remove_dev(dev["id"])
    save_builder(builder, path)
    _emit(
        args,
        [d["id"] for d in found],
        "\n".join(f"Marked d{d['id']} {_describe(d)} for removal" for d in found)
        + "\nRun 'ringctl rebalance' to move its partitions away.",
    )


def cmd_set_weight(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    builder = load_builder(path)
    weight = parse_weight(args.weight)
    found = _find_one(builder, args.search)
    for dev in found:
        builder.set_dev_weight(dev["id"], weight)
    save_builder(builder, path)
    _emit(
        args,
        [d["id"] for d in found],
        "\n".join(f"Set weight of d{d['id']} {_describe(d)} to {weight:g}" for d in found),
    )


def cmd_rebalance(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    builder = load_builder(path)
    bar = ProgressBar(force=args.progress)
    try:
        report = builder.rebalance(seed=args.seed, progress=None if args.json else bar)
    finally:
        bar.close()
    ring_path = ring_path_for(path)
    save_builder(builder, path)
    write_ring(builder, ring_path)
    data = {
        "ring": str(ring_path),
        "parts_moved": report.parts_moved,
        "parts_moved_pct": round(report.parts_moved_pct, 4),
        "balance_pct": round(report.balance_pct, 4),
        "dispersion_pct": round(report.dispersion_pct, 4),
        "devices_removed": report.devices_removed,
        "version": builder.version,
    }
    text = (
        f"Reassigned {report.parts_moved} ({report.parts_moved_pct:.2f}%) partition-replicas. "
        f"Balance is now {report.balance_pct:.2f}%. Dispersion is now {report.dispersion_pct:.2f}%.\n"
        f"Wrote {ring_path} (version {builder.version})."
    )
    if report.balance_pct > 1.0 and builder.min_part_hours:
        text += (
            f"\nNot yet balanced: partitions moved within min_part_hours ({builder.min_part_hours} h) "
            "stay put; rebalance again later."
        )
    _emit(args, data, text)


def cmd_show(args: argparse.Namespace) -> None:
    builder = load_builder(Path(args.builder))
    counts = builder.dev_part_counts()
    targets = builder.dev_targets() if builder.live_devs() else {}
    devs = []
    for dev in builder.devs:
        if dev is None:
            continue
        target = targets.get(dev["id"], 0.0)
        parts = counts.get(dev["id"], 0)
        balance = 100.0 * parts / target - 100.0 if target else 0.0
        devs.append(
            {**dev, "parts": parts, "target": round(target, 2), "balance_pct": round(balance, 2)}
        )
    data = {
        "part_power": builder.part_power,
        "partitions": builder.partition_count,
        "replicas": builder.replicas,
        "min_part_hours": builder.min_part_hours,
        "version": builder.version,
        "balance_pct": round(builder.get_balance(), 4),
        "regions": len({d["region"] for d in builder.live_devs()}),
        "zones": len({(d["region"], d["zone"]) for d in builder.live_devs()}),
        "devices": devs,
        "devs_changed": builder.devs_changed,
    }
    lines = [
        f"{args.builder}: {builder.partition_count} partitions, {builder.replicas} replicas, "
        f"{data['regions']} regions, {data['zones']} zones, {len(devs)} devices, "
        f"balance {data['balance_pct']:.2f}%, min_part_hours {builder.min_part_hours}, "
        f"version {builder.version}"
        + (" (devices changed since last rebalance)" if builder.devs_changed else ""),
        f"{'id':>5} {'region':>6} {'zone':>5} {'ip:port/device':<32} {'weight':>9} {'parts':>8} "
        f"{'balance':>8} meta",
    ]
    for d in devs:
        where = f"{d['ip']}:{d['port']}/{d['device']}"
        flag = " (removing)" if d.get("removed") else ""
        lines.append(
            f"{d['id']:>5} {d['region']:>6} {d['zone']:>5} {where:<32} {d['weight']:>9.2f} "
            f"{d['parts']:>8} {d['balance_pct']:>7.2f}% {d['meta']}{flag}"
        )
    _emit(args, data, "\n".join(lines))


def cmd_dispersion(args: argparse.Namespace) -> None:
    builder = load_builder(Path(args.builder))
    if not builder.replica2part2dev:
        raise CommandError("the builder has never been rebalanced: run rebalance first")
    tiers = {
        "region": lambda d: (d["region"],),
        "zone": lambda d: (d["region"], d["zone"]),
        "host": lambda d: (d["region"], d["zone"], d["ip"]),
        "device": lambda d: (d["id"],),
    }
    available = {
        name: len({key(d) for d in builder.live_devs() if d["weight"] > 0})
        for name, key in tiers.items()
    }
    shared: Counter = Counter()
    for devs in zip(*builder.replica2part2dev, strict=True):
        records = [builder.devs[d] for d in devs]
        for name, key in tiers.items():
            if len({key(r) for r in records}) < min(len(records), available[name]):
                shared[name] += 1
    data = {
        "dispersion_pct": round(builder.get_dispersion(), 4),
        "partitions": builder.partition_count,
        "tiers": {
            name: {
                "available": available[name],
                "partitions_sharing": shared[name],
                "pct": round(100.0 * shared[name] / builder.partition_count, 4),
            }
            for name in tiers
        },
    }
    lines = [
        f"Dispersion is {data['dispersion_pct']:.2f}% (partitions spread worse than the tiers allow)"
    ]
    for name, row in data["tiers"].items():
        lines.append(
            f"  {name:<7} {row['available']:>6} available; {row['partitions_sharing']:>8} partitions "
            f"({row['pct']:.2f}%) have replicas sharing one {name} though enough exist"
        )
    _emit(args, data, "\n".join(lines))


def cmd_lookup(args: argparse.Namespace) -> None:
    ring = Ring(args.ring)
    parts = args.path.lstrip("/").split("/", 2)
    if not parts[0]:
        raise CommandError("give a path ACCOUNT[/CONTAINER[/OBJECT]]")
    if len(parts) == 2 and not parts[1]:
        parts = parts[:1]
    part, primaries = ring.get_nodes(*parts)
    handoffs = []
    for dev in ring.get_more_nodes(part):
        if len(handoffs) >= args.handoffs:
            break
        handoffs.append(dev)
    data = {
        "path": "/" + "/".join(parts),
        "partition": part,
        "primaries": primaries,
        "handoffs": handoffs,
    }
    lines = [f"Path /{'/'.join(parts)} is in partition {part}", "Primaries:"]
    lines += [f"  d{d['id']} {_describe(d)}" for d in primaries]
    lines.append("Handoffs:")
    lines += [f"  d{d['id']} {_describe(d)}" for d in handoffs]
    _emit(args, data, "\n".join(lines))


def cmd_pretend(args: argparse.Namespace) -> None:
    path = Path(args.builder)
    builder = load_builder(path)
    builder.pretend_min_part_hours_passed()
    save_builder(builder, path)
    _emit(args, {"builder": str(path)}, f"{path}: every partition may move at the next rebalance")


def _describe(dev: dict[str, Any]) -> str:
    return f"r{dev['region']}z{dev['zone']}-{dev['ip']}:{dev['port']}/{dev['device']}"


# ---- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ringctl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, func, help_: str, *, builder: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if builder:
            p.add_argument("builder", help="builder file, e.g. object.builder")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = command("create", cmd_create, "create a new, empty builder")
    p.add_argument("--part-power", type=int, required=True, help="2**P partitions (0..24)")
    p.add_argument("--replicas", type=int, required=True, help="replicas of every partition (>= 1)")
    p.add_argument(
        "--min-part-hours", type=int, default=1, help="hours before a partition may move again"
    )
    p.add_argument("--force", action="store_true", help="replace an existing builder")

    p = command("add", cmd_add, "add a device: rRzZ-IP:PORT/DEVICE WEIGHT, or the --options")
    p.add_argument("device_spec", nargs="?", help="e.g. r1z1-10.0.0.1:6200/sdb")
    p.add_argument("weight", nargs="?", help="relative capacity, e.g. 100")
    p.add_argument("--region", type=int, default=1)
    p.add_argument("--zone", type=int)
    p.add_argument("--ip")
    p.add_argument("--port", type=int)
    p.add_argument("--device")
    p.add_argument("--weight", dest="weight_opt")
    p.add_argument("--meta")
    p.add_argument("--id", type=int, help="explicit device id (default: the next free one)")

    p = command("remove", cmd_remove, "mark matching devices for removal")
    p.add_argument("search", help="d3, r1z2, -10.0.0.1, z1-10.0.0.1:6200/sdb, ...")

    p = command("set-weight", cmd_set_weight, "set the weight of matching devices")
    p.add_argument("search")
    p.add_argument("weight")

    p = command("rebalance", cmd_rebalance, "place partitions; write the .ring next to the builder")
    p.add_argument(
        "--seed", type=int, help="seed for a reproducible result (default: builder version)"
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even without a terminal"
    )

    command("show", cmd_show, "devices, weights, partitions and balance")
    command("dispersion", cmd_dispersion, "how well replicas are spread over failure domains")
    command("pretend-min-part-hours-passed", cmd_pretend, "allow every partition to move at once")

    p = command("lookup", cmd_lookup, "partition, primaries and handoffs of a path", builder=False)
    p.add_argument("ring", help="ring file, e.g. object.ring")
    p.add_argument("path", help="ACCOUNT[/CONTAINER[/OBJECT]]")
    p.add_argument("--handoffs", type=int, default=3, help="how many handoffs to list")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "weight_opt", None) is not None:
        args.weight = args.weight_opt
    try:
        args.func(args)
    except (CommandError, RingError) as exc:
        print(f"ringctl: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"ringctl: error:{where} {exc.strerror}".replace(":  ", ": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ringctl: interrupted; files are unchanged unless a write completed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
