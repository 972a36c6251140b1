"""A real OpenStack Swift all-in-one on loopback, the reference that Shoal's benchmarks compare to.

Public: ``SwiftAIO`` (a context manager), ``SwiftAIOError``, ``free_ports``. Usage::

    with SwiftAIO(workdir, workers=2, port=8080) as swift:
        swift.auth_url, swift.user, swift.key   # tempauth v1.0: test:tester / testing
        swift.proxy_pid                         # the proxy's master process (workers are children)

The cluster mirrors Swift's own SAIO: 4 storage nodes, each running an object, container and account
server on its own port with one plain-directory device (``mount_check = false``), zones z1..z4;
policy 0 ``gold`` with 3 replicas (default) and policy 1 ``silver`` with 2; a container-updater and
object-updater per node; memcached (Debian ``memcached``) as a child process on a free port, because
tempauth keeps its tokens only in memcache; the proxy runs the pipeline of Swift's
``proxy-server.conf-sample`` (without container_sync, which needs a realms file) with ``workers``
equal to Shoal's.

Nothing outside ``workdir`` is written; in particular not ``/etc/swift``. Swift reads
``/etc/swift/swift.conf`` at import time (``swift.common.utils.SWIFT_CONF_FILE``) and logs to syslog
(UDP to 127.0.0.1:514 when there is no ``/dev/log``). Every Swift process is therefore started by
this same file run as a script under the Swift venv's python (``--launch``): it points
``SWIFT_CONF_FILE`` at ``workdir/etc/swift.conf`` and reloads policies and constraints before any
server module is imported, and it swaps Swift's syslog handler for a file handler writing to
``workdir/log/<server>.log``. That is why this module imports only the standard library at top
level.

Every process gets its own session (process group); stopping signals each group, so forked workers
go too. Stopping happens on ``__exit__`` whatever the outcome, and also when start-up fails.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NODE_COUNT = 4
PART_POWER = 10  # 1024 partitions: Swift's SAIO value; ample for 4 devices
POLICY_REPLICAS = {0: 3, 1: 2}  # policy index -> replica count; 0 is the default policy
RING_SEED = 20261125  # fixed, so a restart over the same data puts objects where they already are
SERVER_KINDS = ("object", "container", "account")
USER = "test:tester"
KEY = "testing"
HOST = "127.0.0.1"
MEMCACHED_MEMORY_MB = 64  # tokens and account/container info only
# Per proxy worker. Swift's default of 2 makes requests wait for a pool slot under 32+ concurrent
# clients; after pool_timeout (1 s) the token lookup fails and the client gets a 401. Operators
# raise it; 64 covers the benchmarks' highest concurrency.
MEMCACHE_CONNECTIONS_MAX = 64
# Swift's defaults are 0.3 s to connect and 1 s to wait for a pool slot. On a CPU-starved 2-core
# box the eventlet hub notices replies late, ten such "timeouts" error-limit the only memcached
# for 60 s, and every token check then fails with 401. Raised so that load stays load; on an
# idle machine these are never reached.
MEMCACHE_TIMEOUT_S = 2.0
# 21 Python processes import eventlet and Swift at once on 2 shared cores: ~15 s; leave slack.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0  # SIGTERM grace per process group before SIGKILL
POLL_INTERVAL_S = 0.2
UPDATER_INTERVAL_S = 30  # Swift's default is 300; shorter so account HEADs catch up within a run
RING_BUILD_TIMEOUT_S = 120  # four rings of 1024 partitions: ~1 s of work plus Swift's imports
ROW_MERGE_BATCH = 1000  # rows per REPLICATE request: the container replicator's per_diff
ROW_MERGE_TIMEOUT_S = 120  # 10,000 rows x 3 replicas take a few seconds
LOG_TAIL_BYTES = 4000  # how much of a dead server's log goes into the error message

# Swift's proxy-server.conf-sample pipeline, minus container_sync (logs errors without a realms
# file). The two proxy-logging entries are Swift's: one sees client requests, one subrequests.
PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl "
    "ratelimit tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink "
    "proxy-logging proxy-server"
)

# server name -> "module:function" that the launcher runs (the same as Swift's bin/ scripts)
_SERVER_MAINS = {
    "proxy-server": "swift.proxy.server:main",
    "object-server": "swift.obj.server:main",
    "container-server": "swift.container.server:main",
    "account-server": "swift.account.server:main",
    "object-updater": "swift.obj.updater:main",
    "container-updater": "swift.container.updater:main",
}


class SwiftAIOError(RuntimeError):
    """The Swift all-in-one failed to start: a server died or did not answer in time."""


@dataclass(frozen=True)
class _Node:
    """One storage node: its number (1-based, also its zone) and the port of each server kind."""

    number: int
    ports: dict[str, int]

    @property
    def device(self) -> str:
        return f"d{self.number}"


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free right now (another process may still take
    one before it is bound: acceptable on a test machine, retried by nobody)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"


class SwiftAIO:
    """Start a 4-node Swift on loopback in ``workdir``; stop it on exit (also on failure).

    Args:
        workdir: everything goes here (etc/, srv/, log/); data survives a restart in the same dir.
        workers: proxy worker processes (make it equal to Shoal's proxy workers).
        port: proxy port; 0 picks a free one.
        venv: a venv with Swift; default ``benchmarks.swift_env.ensure_swift_venv()``.
        log_level: Swift's ``log_level`` (INFO logs one access line per request, as deployed).
    Attributes (after ``start``): ``auth_url``, ``user``, ``key``, ``port``, ``proxy_pid``,
    ``log_dir``.
    """

    def __init__(
        self,
        workdir: Path | str,
        workers: int = 1,
        port: int = 0,
        venv: Path | None = None,
        log_level: str = "INFO",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workdir = Path(workdir).resolve()  # Swift chdirs to /: every path must be absolute
        self.workers = workers
        self.port = port
        self.venv = venv
        self.log_level = log_level
        self.user = USER
        self.key = KEY
        self.etc_dir = self.workdir / "etc"
        self.log_dir = self.workdir / "log"
        self._processes: list[tuple[str, subprocess.Popen]] = []
        self._log_names: dict[int, str] = {}  # pid -> log file stem
        self._nodes: list[_Node] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth/v1.0"

    @property
    def proxy_pid(self) -> int:
        for name, process in self._processes:
            if name == "proxy-server":
                return process.pid
        raise SwiftAIOError("the proxy is not running")

    def pids(self) -> list[int]:
        """The leader of every process group started (servers, updaters, memcached); a server's
        forked workers are its children. For CPU accounting of the whole cluster."""
        return [process.pid for _, process in self._processes]

    def __enter__(self) -> SwiftAIO:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write configs and rings, start memcached and every Swift process, wait until login works.

        Raises:
            SwiftAIOError: a process exited or the proxy did not accept a login in time; every
                process started so far is stopped before this is raised.
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if self.venv is None:
            from benchmarks.swift_env import ensure_swift_venv

            self.venv = ensure_swift_venv()
        ports = free_ports(NODE_COUNT * len(SERVER_KINDS) + 2)
        memcached_port = ports.pop()
        if self.port == 0:
            self.port = ports.pop()
        self._nodes = [
            _Node(n, dict(zip(SERVER_KINDS, ports[(n - 1) * 3 : n * 3], strict=True)))
            for n in range(1, NODE_COUNT + 1)
        ]
        for directory in (self.etc_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._write_configs(memcached_port)
        self._build_rings()
        self._start_memcached(memcached_port)
        for node in self._nodes:
            for kind in SERVER_KINDS:
                self._spawn_swift(
                    f"{kind}-server", self._node_conf(node, kind), f"{kind}{node.number}"
                )
        self._spawn_swift("proxy-server", self.etc_dir / "proxy-server.conf", "proxy")
        self._wait_ready(memcached_port)
        for node in self._nodes:  # after the servers, so their start-up is not slowed further
            for kind in ("object", "container"):
                self._spawn_swift(
                    f"{kind}-updater", self._node_conf(node, kind), f"{kind}-updater{node.number}"
                )

    def stop(self) -> None:
        """SIGTERM every process group, wait up to STOP_TIMEOUT_S in all, then SIGKILL the rest."""
        for _, process in self._processes:
            self._signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _, process in self._processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may hold forked workers even after its leader exited.
            self._signal_group(process, signal.SIGKILL)
            process.wait()
        self._processes.clear()

    @staticmethod
    def _signal_group(process: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(process.pid, signum)  # started with start_new_session: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def populate_container(self, account: str, container: str, names: list[str]) -> None:
        """Add zero-byte object rows to an existing container's listing in every replica, fast.

        10,000 object PUTs through this proxy cost ~200 CPU-seconds on 2 cores (fsync x3, three
        container updates each); a listing benchmark only needs the rows. They are written the
        way Swift's container replicator writes rows (REPLICATE ``merge_items`` to each primary
        container server) and hold exactly what an object PUT's container update records: name,
        timestamp, size 0, content type, the MD5 of the empty body, the container's policy. No data
        exists behind them, so GETs of these names answer 404.

        Raises:
            SwiftAIOError: a container server refused the rows (e.g. the container is missing).
        """
        result = subprocess.run(
            [self._python(), str(Path(__file__).resolve()), "--merge-rows", str(self.etc_dir)],
            input=json.dumps({"account": account, "container": container, "names": names}),
            text=True,
            capture_output=True,
            timeout=ROW_MERGE_TIMEOUT_S,
            env=self._env("merge-rows"),
        )
        if result.returncode != 0:
            raise SwiftAIOError(f"populating {account}/{container} failed: {result.stderr}")

    # --- configuration -------------------------------------------------------------------------

    def _node_conf(self, node: _Node, kind: str) -> Path:
        return self.etc_dir / f"node{node.number}" / f"{kind}-server.conf"

    def _common_default(self, log_name: str) -> str:
        return (
            "[DEFAULT]\n"
            f"bind_ip = {HOST}\n"
            f"user = {pwd.getpwuid(os.getuid()).pw_name}\n"  # drop_privileges needs a real user
            f"swift_dir = {self.etc_dir}\n"
            f"log_name = {log_name}\n"
            f"log_level = {self.log_level}\n"
        )

    def _write_configs(self, memcached_port: int) -> None:
        policies = "".join(
            f"[storage-policy:{index}]\nname = {name}\n"
            + ("default = yes\n" if index == 0 else "")
            + "policy_type = replication\n\n"
            for index, name in ((0, "gold"), (1, "silver"))
        )
        (self.etc_dir / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_prefix = shoal-bench\n"
            "swift_hash_path_suffix = shoal-bench\n\n" + policies
        )
        (self.etc_dir / "proxy-server.conf").write_text(self._proxy_conf(memcached_port))
        for node in self._nodes:
            devices = self.workdir / "srv" / f"node{node.number}"
            (devices / node.device).mkdir(parents=True, exist_ok=True)
            self._node_conf(node, "object").parent.mkdir(exist_ok=True)
            for kind in SERVER_KINDS:
                self._node_conf(node, kind).write_text(self._storage_conf(node, kind, devices))

    def _proxy_conf(self, memcached_port: int) -> str:
        return (
            self._common_default("proxy-server")
            + f"bind_port = {self.port}\nworkers = {self.workers}\n\n"
            f"[pipeline:main]\npipeline = {PROXY_PIPELINE}\n\n"
            "[app:proxy-server]\nuse = egg:swift#proxy\n"
            "allow_account_management = true\naccount_autocreate = true\n\n"
            "[filter:tempauth]\nuse = egg:swift#tempauth\n"
            "user_admin_admin = admin .admin .reseller_admin\n"
            "user_test_tester = testing .admin\n"
            "user_test_tester2 = testing2 .admin\n"
            "user_test_tester3 = testing3\n"
            "user_test2_tester2 = testing2 .admin\n\n"
            f"[filter:cache]\nuse = egg:swift#memcache\n"
            f"memcache_servers = {HOST}:{memcached_port}\n"
            f"memcache_max_connections = {MEMCACHE_CONNECTIONS_MAX}\n"
            f"connect_timeout = {MEMCACHE_TIMEOUT_S}\npool_timeout = {MEMCACHE_TIMEOUT_S}\n\n"
            + "".join(
                f"[filter:{name}]\nuse = egg:swift#{name.replace('-', '_')}\n\n"
                for name in dict.fromkeys(PROXY_PIPELINE.split())
                if name not in ("proxy-server", "tempauth", "cache")
            )
        )

    def _storage_conf(self, node: _Node, kind: str, devices: Path) -> str:
        text = (
            self._common_default(f"{kind}-server-{node.number}")
            + f"bind_port = {node.ports[kind]}\nworkers = 1\n"
            f"devices = {devices}\nmount_check = false\ndisable_fallocate = true\n\n"
            f"[pipeline:main]\npipeline = {kind}-server\n\n"
            f"[app:{kind}-server]\nuse = egg:swift#{kind}\n\n"
        )
        if kind in ("object", "container"):
            text += f"[{kind}-updater]\ninterval = {UPDATER_INTERVAL_S}\n\n"
        return text

    def _build_rings(self) -> None:
        """Build account, container, object and object-1 rings in one Swift process (~1 s)."""
        rings = {"account": (3, "account"), "container": (3, "container")}
        for index, replicas in POLICY_REPLICAS.items():
            rings["object" if index == 0 else f"object-{index}"] = (replicas, "object")
        spec = {
            name: {
                "replicas": replicas,
                "devices": [
                    {"zone": node.number, "port": node.ports[kind], "device": node.device}
                    for node in self._nodes
                ],
            }
            for name, (replicas, kind) in rings.items()
        }
        result = subprocess.run(
            [self._python(), str(Path(__file__).resolve()), "--rings", str(self.etc_dir)],
            input=json.dumps(spec),
            text=True,
            capture_output=True,
            timeout=RING_BUILD_TIMEOUT_S,
            env=self._env("rings"),
        )
        if result.returncode != 0:
            raise SwiftAIOError(f"building the rings failed: {result.stderr}")

    # --- processes -----------------------------------------------------------------------------

    def _python(self) -> str:
        assert self.venv is not None
        return str(self.venv / "bin" / "python")

    def _env(self, log_name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["SHOAL_SWIFT_CONF"] = str(self.etc_dir / "swift.conf")
        env["SHOAL_SWIFT_LOG"] = str(self.log_dir / f"{log_name}.log")
        return env

    def _spawn(self, name: str, argv: list[str], log_name: str, env: dict[str, str]) -> None:
        with open(self.log_dir / f"{log_name}.stdout", "ab") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self._processes.append((name, process))
        self._log_names[process.pid] = log_name

    def _spawn_swift(self, server: str, conf: Path, log_name: str) -> None:
        argv = [self._python(), str(Path(__file__).resolve()), "--launch", server, str(conf)]
        self._spawn(server, argv, log_name, self._env(log_name))

    def _start_memcached(self, port: int) -> None:
        binary = shutil.which("memcached") or shutil.which("memcached", path="/usr/bin:/usr/sbin")
        if binary is None:
            raise SwiftAIOError("memcached not found (Debian package memcached)")
        argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(MEMCACHED_MEMORY_MB)]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root unless told to
        self._spawn("memcached", argv, "memcached", dict(os.environ))

    def _check_alive(self) -> None:
        for name, process in self._processes:
            if process.poll() is not None:
                # its own files: <log_name>.log (Swift's logger) and .stdout (before logging)
                logs = sorted(self.log_dir.glob(f"{self._log_names[process.pid]}.*"))
                tails = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in logs)
                raise SwiftAIOError(f"{name} exited with {process.returncode}\n{tails}")

    def _wait_ready(self, memcached_port: int) -> None:
        ports = [memcached_port, self.port] + [p for n in self._nodes for p in n.ports.values()]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            if all(_port_open(port) for port in ports) and self._login_works():
                return
            time.sleep(POLL_INTERVAL_S)
        raise SwiftAIOError(f"Swift did not accept a login within {START_TIMEOUT_S} s")

    def _login_works(self) -> bool:
        request = urllib.request.Request(
            self.auth_url, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200 and bool(response.headers.get("X-Auth-Token"))
        except (urllib.error.URLError, OSError):
            return False


# --- the launcher: runs under the Swift venv's python --------------------------------------------


def _configure_swift() -> None:
    """Point Swift at the workdir's swift.conf and log file; call before importing any server."""
    import swift.common.utils as swift_utils

    swift_utils.SWIFT_CONF_FILE = os.environ["SHOAL_SWIFT_CONF"]
    swift_utils.HASH_PATH_PREFIX = swift_utils.HASH_PATH_SUFFIX = b""
    swift_utils.validate_hash_conf()
    from swift.common import constraints, storage_policy
    from swift.common.utils import logs

    storage_policy.reload_storage_policies()  # already loaded from /etc at import: load ours
    constraints.reload_constraints()
    log_path = os.environ["SHOAL_SWIFT_LOG"]

    class FileLogHandler(logging.FileHandler):
        """Stands in for Swift's ThreadSafeSysLogHandler: same constructor, writes a file."""

        def __init__(self, address: object = None, facility: object = None) -> None:
            super().__init__(log_path)

    logs.ThreadSafeSysLogHandler = FileLogHandler


def _launch(server: str, conf: str) -> None:
    """Run one Swift server or daemon with swift.conf and logging redirected into the workdir."""
    import importlib

    _configure_swift()
    module_name, _, function_name = _SERVER_MAINS[server].partition(":")
    sys.argv = [f"swift-{server}", conf]
    getattr(importlib.import_module(module_name), function_name)()


def _build_rings_main(etc_dir: str) -> None:
    """Save ``<name>.builder`` and ``<name>.ring.gz`` for each ring in the JSON read from stdin."""
    from swift.common.ring import RingBuilder

    for name, ring in json.load(sys.stdin).items():
        builder = RingBuilder(PART_POWER, ring["replicas"], 1)
        for device_id, device in enumerate(ring["devices"]):
            builder.add_dev(
                {
                    "id": device_id,
                    "region": 1,
                    "zone": device["zone"],
                    "ip": HOST,
                    "port": device["port"],
                    "device": device["device"],
                    "weight": 100,
                    "meta": "",
                }
            )
        builder.rebalance(seed=RING_SEED)
        builder.save(os.path.join(etc_dir, f"{name}.builder"))
        builder.get_ring().save(os.path.join(etc_dir, f"{name}.ring.gz"))


def _container_policy_index(node: dict, partition: int, account: str, container: str) -> int:
    """The container's storage policy, asked of one of its container servers: rows recorded under
    another policy would be treated as misplaced and left out of the listing."""
    import http.client
    from urllib.parse import quote

    connection = http.client.HTTPConnection(node["ip"], node["port"], timeout=60)
    connection.request("HEAD", quote(f"/{node['device']}/{partition}/{account}/{container}"))
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status // 100 != 2:
        sys.exit(f"HEAD {account}/{container} on port {node['port']}: {response.status}")
    return int(response.getheader("X-Backend-Storage-Policy-Index", "0"))


def _merge_rows_main(etc_dir: str) -> None:
    """REPLICATE merge_items the rows named in the JSON on stdin to each primary container DB."""
    import hashlib
    import http.client

    _configure_swift()
    from swift.common.ring import Ring
    from swift.common.utils import Timestamp, hash_path

    request = json.load(sys.stdin)
    account, container = request["account"], request["container"]
    partition, nodes = Ring(etc_dir, ring_name="container").get_nodes(account, container)
    db_hash = hash_path(account, container)
    policy_index = _container_policy_index(nodes[0], partition, account, container)
    timestamp = Timestamp.now().internal
    rows = [
        {
            "name": name, "created_at": timestamp, "size": 0,
            "content_type": "application/octet-stream", "etag": hashlib.md5(b"").hexdigest(),
            "deleted": 0, "storage_policy_index": policy_index,
            "ctype_timestamp": timestamp, "meta_timestamp": timestamp,
        }
        for name in request["names"]
    ]  # fmt: skip
    for node in nodes:
        for offset in range(0, len(rows), ROW_MERGE_BATCH):
            # source None: no replication sync point is recorded (there is no peer DB behind it)
            body = json.dumps(["merge_items", rows[offset : offset + ROW_MERGE_BATCH], None])
            connection = http.client.HTTPConnection(node["ip"], node["port"], timeout=60)
            path = f"/{node['device']}/{partition}/{db_hash}"
            connection.request("REPLICATE", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 202:
                sys.exit(f"REPLICATE {node['port']}{path}: {response.status} {response.reason}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--launch"]:
        _launch(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--rings"]:
        _build_rings_main(sys.argv[2])
    elif sys.argv[1:2] == ["--merge-rows"]:
        _merge_rows_main(sys.argv[2])
    else:
        sys.exit("usage: swift_aio.py --launch SERVER CONF | --rings ETC | --merge-rows ETC")
