"""``shoal objectd``: start the storage-node daemon.

Public: :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from objectd.config import ObjectdConfig, load_config, resolve_seed
from shoal import log as shoal_log
from shoal.config import ConfigError, render_defaults
from shoal.daemon import serve_app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal objectd",
        description="The storage-node daemon: object, container and account servers.",
    )
    parser.add_argument(
        "--config", "-c", type=Path, help="TOML config file ([objectd] table or top level)"
    )
    parser.add_argument("--devices", type=Path, help="override the devices root")
    parser.add_argument("--bind-ip", help="override bind_ip")
    parser.add_argument("--bind-port", type=int, help="override bind_port (0: any free port)")
    parser.add_argument("--workers", type=int, help="override workers")
    parser.add_argument("--print-defaults", action="store_true", help="print every option and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.print_defaults:
        print(render_defaults(ObjectdConfig, table="objectd"), end="")
        return 0
    overrides = {
        key: value
        for key, value in (
            ("devices", str(args.devices) if args.devices else None),
            ("bind_ip", args.bind_ip),
            ("bind_port", args.bind_port),
            ("workers", args.workers),
        )
        if value is not None
    }
    try:
        config = load_config(args.config, overrides)
        resolve_seed(config)  # a missing seed is a start-up error, not a per-request one
        from objectd.app import build_app
        from objectd.diskio import FaultPlan

        FaultPlan(config.fault_injection)
    except (ConfigError, ValueError) as exc:
        print(f"objectd: {exc}", file=sys.stderr)
        return 2
    shoal_log.setup("objectd", config.log_level)
    from objectd.tmp_reclaim import reclaim_devices

    # crash leftovers in <device>/tmp, before serving: no PUT of this objectd is in flight yet
    reclaim_devices(config.devices, config.tmp_reclaim_age_s, mount_check=config.mount_check)
    return serve_app(
        lambda: build_app(config),
        host=config.bind_ip,
        port=config.bind_port,
        workers=config.workers,
        shutdown_timeout_s=config.shutdown_timeout_s,
        name="objectd",
    )


if __name__ == "__main__":
    sys.exit(main())
