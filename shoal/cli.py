"""The ``shoal`` command: one entry point that starts any Shoal daemon.

``shoal <command> [options]``; ``shoal <command> --help`` shows that command's options. Commands are
looked up lazily, so starting one daemon never imports the others.
"""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function taking argv and returning an exit code", one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "aio": ("shoal.aio:main", "all-in-one cluster in the foreground (rings, objectd x4, proxy)"),
    "proxy": ("proxy.main:main", "the Swift API proxy server"),
    "objectd": ("objectd.main:main", "the storage-node daemon (object, container, account)"),
    "replicator": ("objectd.daemon_main:replicator", "object replicator [--once]"),
    "db-replicator": ("objectd.daemon_main:db_replicator", "container/account DB replicator"),
    "auditor": ("objectd.daemon_main:auditor", "object auditor (MD5, quarantine)"),
    "updater": ("objectd.daemon_main:updater", "retries async-pending container updates [--once]"),
    "expirer": ("objectd.daemon_main:expirer", "deletes objects past X-Delete-At [--once]"),
    "container-updater": (
        "objectd.daemon_main:container_updater",
        "reports container counts to accounts [--once]",
    ),
    "blockd": ("blockd.main:main", "the block daemon (volumes, snapshots, iSCSI exports)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: shoal <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'shoal <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name in ("-V", "--version"):
        from shoal import __version__

        print(f"shoal {__version__}")
        return 0
    if name not in COMMANDS:
        print(f"shoal: unknown command {name!r} (try 'shoal --help')", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"shoal: command {name!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, function_name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
