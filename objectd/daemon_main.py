"""``shoal replicator|db-replicator|auditor|updater|expirer [--once]``: run a background daemon.

Public: :func:`replicator`, :func:`db_replicator`, :func:`auditor`, :func:`updater`,
:func:`expirer` (each ``argv -> exit code``, for ``shoal.cli``).

Each daemon is a behaviour with ``run_once()`` (one bounded pass, returning a report) and
``run_forever()`` (passes every ``interval_s``). ``--once`` runs one pass, prints its report as
JSON on stdout and exits 0 (1 if the pass counted errors); otherwise the daemon runs until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import sys
from pathlib import Path

import uvloop

from objectd.daemon_config import DaemonConfig, load_daemon_config
from shoal import log as shoal_log
from shoal.config import ConfigError, render_defaults

# name -> "module:Class" of the daemon behaviour
DAEMONS = {
    "replicator": "objectd.replicator:ObjectReplicator",
    "db-replicator": "objectd.db_replicator:DatabaseReplicator",
    "auditor": "objectd.auditor:ObjectAuditor",
    "updater": "objectd.updater:ObjectUpdater",
    "expirer": "objectd.expirer:ObjectExpirer",
    "container-updater": "objectd.container_updater:ContainerUpdater",
}


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"shoal {name}", description=f"The object {name}.")
    parser.add_argument("--config", "-c", type=Path, help=f"TOML file ([objectd] and [{name}])")
    parser.add_argument("--devices", type=Path, help="override the devices root")
    parser.add_argument("--once", action="store_true", help="one pass, print its report, exit")
    parser.add_argument("--print-defaults", action="store_true", help="print every option and exit")
    return parser


def run_daemon(name: str, argv: list[str] | None) -> int:
    args = _parser(name).parse_args(argv)
    table = name.replace("-", "_")
    if args.print_defaults:
        print(render_defaults(DaemonConfig, table=table), end="")
        return 0
    overrides = {"devices": str(args.devices)} if args.devices else {}
    try:
        config = load_daemon_config(args.config, table, overrides)
        module_name, _, class_name = DAEMONS[name].partition(":")
        daemon = getattr(importlib.import_module(module_name), class_name)(config)
    except (ConfigError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    shoal_log.setup(name, config.log_level)
    if args.once:
        report = uvloop.run(daemon.run_once())
        print(json.dumps(report.as_dict(), sort_keys=True))
        return 1 if getattr(report, "errors", 0) else 0
    uvloop.run(_forever(daemon))
    return 0


async def _forever(daemon) -> None:
    task = asyncio.ensure_future(daemon.run_forever())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def replicator(argv: list[str] | None = None) -> int:
    return run_daemon("replicator", argv)


def db_replicator(argv: list[str] | None = None) -> int:
    return run_daemon("db-replicator", argv)


def auditor(argv: list[str] | None = None) -> int:
    return run_daemon("auditor", argv)


def updater(argv: list[str] | None = None) -> int:
    return run_daemon("updater", argv)


def expirer(argv: list[str] | None = None) -> int:
    return run_daemon("expirer", argv)


def container_updater(argv: list[str] | None = None) -> int:
    return run_daemon("container-updater", argv)
