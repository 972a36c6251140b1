"""``shoal proxy``: start the Swift API proxy server.

Public: :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from proxy.config import ProxyConfig, load_config
from shoal import log as shoal_log
from shoal.config import ConfigError, render_defaults
from shoal.daemon import serve_app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal proxy", description="The Swift API proxy server.")
    parser.add_argument(
        "--config", "-c", type=Path, help="TOML config ([proxy] table or top level)"
    )
    parser.add_argument("--bind-ip", help="override bind_ip")
    parser.add_argument("--bind-port", type=int, help="override bind_port (0: any free port)")
    parser.add_argument("--workers", type=int, help="override workers (0: one per core)")
    parser.add_argument("--ring-dir", type=Path, help="override ring_dir")
    parser.add_argument("--print-defaults", action="store_true", help="print every option and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.print_defaults:
        print(render_defaults(ProxyConfig, table="proxy"), end="")
        return 0
    overrides = {
        key: value
        for key, value in (
            ("bind_ip", args.bind_ip),
            ("bind_port", args.bind_port),
            ("workers", args.workers),
            ("ring_dir", str(args.ring_dir) if args.ring_dir else None),
        )
        if value is not None
    }
    try:
        config = load_config(args.config, overrides)
        from proxy.app import build_app
        from proxy.cluster import Cluster

        Cluster(config)  # missing or unreadable rings are a start-up error, not a per-request one
    except (ConfigError, OSError, ValueError) as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    # chosen before the workers fork, so a token issued by one worker is valid in all of them
    secret = bytes.fromhex(config.token_secret) if config.token_secret else os.urandom(32)
    from proxy.container_info import Generations

    generations = Generations()  # shared by the workers forked below
    shoal_log.setup("proxy", config.log_level)
    return serve_app(
        lambda: build_app(config, secret, generations),
        host=config.bind_ip,
        port=config.bind_port,
        workers=config.worker_count,
        shutdown_timeout_s=config.shutdown_timeout_s,
        name="proxy",
    )


if __name__ == "__main__":
    sys.exit(main())
