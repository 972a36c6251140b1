"""``shoal blockd``: the block daemon's entry point.

Public: :func:`main`, :func:`build_app`.

``shoal blockd --config /etc/shoal/blockd.toml`` reads the ``[blockd]`` table, checks the backend
and the target at startup (a node without reflink, a missing volume group or an unreachable tgtd
is a one-line error and exit code 1, not a traceback), restores saved exports, and serves the
API until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys

from blockd.api.app import make_app
from blockd.auth import make_auth
from blockd.backends import make_backend
from blockd.commands import CommandRunner
from blockd.config import BlockdConfig, load_config
from blockd.errors import BlockdError
from blockd.service import BlockService
from blockd.targets import make_target
from shoal import log as shoal_log
from shoal.config import ConfigError, render_defaults
from shoal.daemon import serve_app


def build_app(config: BlockdConfig):
    runner = CommandRunner()
    service = BlockService(
        make_backend(config, runner), make_target(config, runner), config.target_portals
    )
    return make_app(
        service,
        make_auth(config),
        reconcile_interval_s=config.reconcile_interval_s,
        conversion_dir=config.conversion_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shoal blockd", description="the block daemon: volumes, snapshots, iSCSI exports"
    )
    parser.add_argument("--config", help="TOML file with a [blockd] table (default: defaults)")
    parser.add_argument("--port", type=int, help="override the configured API port")
    parser.add_argument("--defaults", action="store_true", help="print the default config, exit")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.defaults:
        print(render_defaults(BlockdConfig, table="blockd"), end="")
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"shoal blockd: {exc}", file=sys.stderr)
        return 2
    shoal_log.setup("blockd", config.log_level)
    port = config.port if args.port is None else args.port
    try:
        # one worker: the per-volume locks and the task list live in this process
        return serve_app(lambda: build_app(config), host=config.host, port=port, name="blockd")
    except BlockdError as exc:
        print(f"shoal blockd: cannot start: {exc}", file=sys.stderr)
        return 1
