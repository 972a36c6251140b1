"""``shoal aio``: a whole Shoal cluster on one machine, in the foreground.

Public: :func:`main`, :func:`build_rings`.

First start (an empty ``--data`` directory): build the rings (4 nodes x 1 device, 3 replicas,
two storage policies ``gold`` (default) and ``silver``) and pick a free port per node. Every
start: one ``objectd`` per node on its own port, then the proxy; print the auth URL and the
credentials when everything listens; then the background daemons this build has (replicator,
db-replicator, auditor, updater, expirer: one of each per node; ``--no-daemons`` skips them).
Ctrl-C or SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period). An objectd
or the proxy that dies stops the others too, since a silently shrunken cluster is worse than a
clear exit; a background daemon that dies is only reported (the data path still works). A restart on the same directory keeps the data,
the ports and the token secret (so clients stay logged in).

Layout of ``--data``::

    aio.toml                  token secret (kept across restarts)
    rings/{account,container,object,object-1}.ring
    node<N>/devices/d<N>/     one device per node
    node<N>/objectd.toml, proxy.toml
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

from ring import Ring, RingBuilder, ring_name, write_ring

NODES = 4
REPLICAS = 3
PART_POWER = 10  # 1,024 partitions: plenty for 4 devices, and a ring builds in well under 1 s
POLICY_INDEXES = (0, 1)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # the daemons' own shutdown timeout is 30 s too
_PR_SET_PDEATHSIG = 1
_DAEMON_TABLES = (
    "replicator", "db_replicator", "auditor", "updater", "expirer", "container_updater",
)  # fmt: skip
_FORWARDERS: set[asyncio.Future[None]] = set()  # output pumps, kept referenced while they run


def _free_ports(count: int, host: str) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def build_rings(ring_dir: Path, host: str, ports: list[int]) -> None:
    """Account, container and one object ring per policy over one device per port."""
    ring_dir.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(16)  # one seed for every ring: objectd reads it from object.ring
    kinds = [("account", 0), ("container", 0)] + [("object", i) for i in POLICY_INDEXES]
    for kind, index in kinds:
        builder = RingBuilder(PART_POWER, REPLICAS, 1)
        builder.hash_seed = seed
        for number, port in enumerate(ports, start=1):
            builder.add_dev(
                {"region": 1, "zone": number, "ip": host, "port": port,
                 "device": f"d{number}", "weight": 100.0}
            )  # fmt: skip
        builder.rebalance(seed=index + len(kind))
        write_ring(builder, ring_dir / ring_name(kind, index))


def _toml(values: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"{k} = {value(v)}\n" for k, v in values.items())


def _secret(data: Path) -> str:
    path = data / "aio.toml"
    if path.exists():
        import tomllib

        return tomllib.loads(path.read_text())["token_secret"]
    token_secret = secrets.token_hex(32)
    path.write_text(_toml({"token_secret": token_secret}))
    path.chmod(0o600)
    return token_secret


def _prepare(data: Path, host: str, args: argparse.Namespace) -> tuple[list[Path], Path]:
    """Rings (first start), device directories and config files; the config paths."""
    ring_dir = data / "rings"
    if not (ring_dir / "object.ring").exists():
        build_rings(ring_dir, host, _free_ports(NODES, host))
    devs = [d for d in Ring(ring_dir / "object.ring").devs if d is not None]
    node_configs = []
    for number, dev in enumerate(sorted(devs, key=lambda d: d["id"]), start=1):
        node = data / f"node{number}"
        (node / "devices" / dev["device"]).mkdir(parents=True, exist_ok=True)
        config = node / "objectd.toml"
        config.write_text(
            "[objectd]\n"
            + _toml({"devices": str(node / "devices"), "bind_ip": dev["ip"],
                     "bind_port": dev["port"], "mount_check": False, "ring_dir": str(ring_dir),
                     "workers": 1, "log_level": "WARNING"})
            + "".join(f"\n[{table}]\nlog_level = \"WARNING\"\n" for table in _DAEMON_TABLES)
        )  # fmt: skip
        node_configs.append(config)
    proxy_config = data / "proxy.toml"
    proxy_config.write_text(
        _toml({"bind_ip": host, "bind_port": args.port, "workers": args.workers,
               "ring_dir": str(ring_dir), "token_secret": _secret(data),
               "node_timeout_s": args.node_timeout_s, "log_level": "WARNING"})
    )  # fmt: skip
    return node_configs, proxy_config


def _die_with_parent() -> None:
    """Runs in the child before exec: if ``shoal aio`` is killed, its daemons go too."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _start(name: str, argv: list[str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{name} exited before it listened ({await process.wait()})")
                sys.stdout.write(line.decode(errors="replace"))
                if b"listening on" in line:
                    break
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    _FORWARDERS.add(asyncio.ensure_future(_forward(process.stdout)))
    return process


async def _forward(stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    waits = [asyncio.ensure_future(p.wait()) for p in processes]
    if not waits:
        return
    _, pending = await asyncio.wait(waits, timeout=STOP_TIMEOUT_S)
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    if pending:
        await asyncio.wait(pending)


async def _run(args: argparse.Namespace) -> int:
    data = args.data.expanduser().resolve()
    data.mkdir(parents=True, exist_ok=True)
    node_configs, proxy_config = _prepare(data, args.bind, args)
    python = [sys.executable, "-m", "shoal.cli"]
    processes: list[asyncio.subprocess.Process] = []
    background: list[asyncio.subprocess.Process] = []
    try:
        for number, config in enumerate(node_configs, start=1):
            argv = [*python, "objectd", "--config", str(config)]
            processes.append(await _start(f"objectd {number}", argv))
        processes.append(await _start("proxy", [*python, "proxy", "--config", str(proxy_config)]))
        background = await _start_daemons(python, node_configs, args.daemon_names)
        url = f"http://{args.bind}:{args.port}"
        print(
            f"\nShoal all-in-one is ready (data in {data}).\n"
            f"  auth URL:  {url}/auth/v1.0\n"
            "  users:     test:tester / testing (.admin), test2:tester2 / testing2,"
            " admin:admin / admin (.reseller_admin)\n"
            f"  try:       swift -A {url}/auth/v1.0 -U test:tester -K testing stat\n"
            "Ctrl-C stops everything; a restart keeps the data.",
            flush=True,
        )
        for process in background:
            _FORWARDERS.add(asyncio.ensure_future(_report_exit(process)))
        waits = {asyncio.ensure_future(p.wait()): p for p in processes}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        dead = waits[next(iter(done))]
        print(f"shoal aio: a daemon (pid {dead.pid}) exited with {dead.returncode}; stopping",
              file=sys.stderr)  # fmt: skip
        return 1
    except asyncio.CancelledError:
        return 0
    finally:
        await asyncio.shield(_stop(processes + background))


def _available_daemons() -> list[str]:
    """The background daemons this build has (replicator, auditor, ...), by command name."""
    try:
        from objectd.daemon_main import DAEMONS
    except ImportError:
        return []
    names = []
    for name, target in DAEMONS.items():
        module = target.partition(":")[0]
        with contextlib.suppress(ImportError, ValueError):
            if importlib.util.find_spec(module) is not None:
                names.append(name)
    return names


def _chosen_daemons(args: argparse.Namespace) -> list[str]:
    """The daemons to run: ``--daemons`` (a comma list), none with ``--no-daemons``, else all.

    Raises:
        ValueError: a name this build does not have.
    """
    if args.no_daemons:
        return []
    available = _available_daemons()
    if args.daemons is None:
        return available
    chosen = [name.strip() for name in args.daemons.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise ValueError(f"--daemons: unknown {', '.join(unknown)} (have: {', '.join(available)})")
    return chosen


async def _start_daemons(
    python: list[str], node_configs: list[Path], names: list[str]
) -> list[asyncio.subprocess.Process]:
    """One of each background daemon per node. They print no ready line: started, not awaited."""
    processes = []
    for name in names:
        for config in node_configs:
            argv = [*python, name, "--config", str(config)]
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
            processes.append(process)
    if processes:
        print(f"background daemons: {', '.join(names)} (one per node)", flush=True)
    return processes


async def _report_exit(process: asyncio.subprocess.Process) -> None:
    """A background daemon that dies is reported, not fatal: the data path keeps working, and
    the operator sees why in its log lines above."""
    code = await process.wait()
    if code not in (0, -signal.SIGTERM):
        print(f"shoal aio: background daemon pid {process.pid} exited with {code}",
              file=sys.stderr, flush=True)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal aio", description=__doc__.split("\n\n")[0])
    default_data = Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")) / "shoal" / "aio"
    parser.add_argument(
        "--data", type=Path, default=default_data, help=f"data directory ({default_data})"
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address of every daemon")
    parser.add_argument("--port", type=int, default=8080, help="the proxy's port")
    parser.add_argument("--workers", type=int, default=0, help="proxy workers (0: one per core)")
    parser.add_argument("--no-daemons", action="store_true", help="no replicator, auditor, ...")
    parser.add_argument(
        "--daemons", metavar="LIST",
        help="only these background daemons, comma-separated (e.g. updater,container-updater)",
    )  # fmt: skip
    parser.add_argument(
        "--node-timeout-s", type=float, default=10.0, help="proxy's backend timeout"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.daemon_names = _chosen_daemons(args)
    except ValueError as exc:
        print(f"shoal aio: {exc}", file=sys.stderr)
        return 2
    from shoal.daemon import run_async

    try:
        return run_async(lambda: _run(args))
    except RuntimeError as exc:
        print(f"shoal aio: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
