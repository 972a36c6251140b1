"""A real multi-host Shoal cluster in network namespaces: N hosts, one objectd each, the proxy
in a namespace of its own, rings over the hosts' addresses, background daemons run on demand.

Public: :class:`NetnsCluster`, :class:`StorageHost`, :data:`OBJECTD_PORT`, :data:`PROXY_PORT`.

Processes run with ``ip netns exec <namespace>``; the filesystem is shared, so the test reads
and damages the hosts' files directly. The test process reaches the proxy and the hosts through
a thread pool whose threads entered the proxy's namespace (:mod:`tests.cluster.client`).
Teardown (:meth:`NetnsCluster.stop`) kills every process, unmounts, removes the namespaces and
links; the fixture calls it also on failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from objectd.layout import Layout
from ring.builder import RingBuilder
from ring.ring import Ring
from ring.ringfile import write_ring
from tests.cluster.netns import Host, Network

OBJECTD_PORT = 6200
PROXY_PORT = 8080
PART_POWER = 6  # 64 partitions: every host holds many, a replication pass stays short
REPLICAS = 3
SEED = bytes.fromhex("c0ffee00c0ffee00c0ffee00c0ffee00")
READY_TIMEOUT_S = 30.0
_READY_RE = re.compile(rb"listening on http://")

DAEMON_OPTIONS = {
    "concurrency": 4,
    "io_bytes_per_s_max": 200 * 1024 * 1024,
    "audit_bytes_per_s_max": 200 * 1024 * 1024,
    "audit_files_per_s_max": 10_000.0,
    "conn_timeout_s": 0.5,
    "node_timeout_s": 5.0,
    "interval_s": 1.0,
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _start(namespace: str, argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start ``argv`` in ``namespace`` and wait for its "listening on" line."""
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, *argv], stdout=subprocess.PIPE, stderr=log
    )
    log.close()
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if _READY_RE.search(line):
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"{argv[3:5]} in {namespace} did not start:\n{log_path.read_text()}")


class StorageHost:
    """One storage host: its namespace, its device directory, its objectd."""

    def __init__(self, root: Path, host: Host, ring_dir: Path):
        self.host = host
        self.index = host.index
        self.root = root
        self.device = f"d{host.index}"
        self.devices = root / "devices"
        self.device_path = self.devices / self.device
        self.device_path.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "node.toml"
        self.ring_dir = ring_dir
        self.process: subprocess.Popen | None = None
        self.mounted = False
        self._write_config()

    @property
    def ip(self) -> str:
        return self.host.ip

    def _write_config(self) -> None:
        lines = ["[objectd]"]
        options = {
            "devices": str(self.devices),
            "bind_ip": self.ip,
            "bind_port": OBJECTD_PORT,
            "mount_check": False,
            "ring_dir": str(self.ring_dir),
            "container_update_timeout_s": 0.5,
            "conn_timeout_s": 0.5,
            "node_timeout_s": 3.0,
            "log_level": "WARNING",
        }
        lines += [f"{k} = {_toml(v)}" for k, v in options.items()]
        for table in ("replicator", "db_replicator", "auditor", "updater", "expirer"):
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml(v)}" for k, v in DAEMON_OPTIONS.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        argv = [sys.executable, "-m", "shoal.cli", "objectd", "-c", str(self.config_path)]
        self.process = _start(self.host.name, argv, self.root / "objectd.log")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL, and reap: the host's objectd is gone until :meth:`start`."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a stopped process dies too
                self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def run_daemon(self, name: str, timeout_s: float = 120.0) -> str:
        """``shoal <name> --once`` in this host's namespace; its JSON report line."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.host.name, sys.executable, "-m", "shoal.cli", name,
             "--once", "-c", str(self.config_path)],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{name} on host {self.index} failed:\n{done.stderr[-3000:]}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


class NetnsCluster:
    """``host_count`` storage hosts in the ring, ``spare_count`` more started but not in it."""

    def __init__(self, root: Path, host_count: int = 4, spare_count: int = 1,
                 small_device_bytes: int = 0):  # fmt: skip
        self.root = root
        self.ring_dir = root / "rings"
        self.ring_dir.mkdir(parents=True, exist_ok=True)
        self.network = Network()
        self.storage: list[StorageHost] = []
        self.proxy_process: subprocess.Popen | None = None
        self.proxy_host: Host | None = None
        self.builders: dict[str, RingBuilder] = {}
        self.host_count = host_count
        self.spare_count = spare_count
        self.small_device_bytes = small_device_bytes

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> NetnsCluster:
        for i in range(self.host_count + self.spare_count):
            host = self.network.add_host(f"h{i}", 10 + i)
            self.storage.append(StorageHost(self.root / f"host{i}", host, self.ring_dir))
        if self.small_device_bytes:
            self._mount_small_device(self.storage[0])
        self.proxy_host = self.network.add_host("gw", 2)
        self._build_rings(self.storage[: self.host_count])
        for host in self.storage:
            host.start()
        self._start_proxy()
        return self

    def _mount_small_device(self, host: StorageHost) -> None:
        """The host's device becomes a small ext4 filesystem on a loop device (it can fill)."""
        image = self.root / f"host{host.index}-device.img"
        with open(image, "wb") as f:
            f.truncate(self.small_device_bytes)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(host.device_path)], check=True)
        host.mounted = True

    def _build_rings(self, hosts: list[StorageHost]) -> None:
        for kind in ("object", "container", "account"):
            builder = RingBuilder(PART_POWER, REPLICAS, 0)
            builder.hash_seed = SEED
            for host in hosts:
                builder.add_dev(self._dev(host))
            builder.rebalance(seed=7)
            write_ring(builder, self.ring_dir / f"{kind}.ring")
            self.builders[kind] = builder

    def _dev(self, host: StorageHost) -> dict[str, Any]:
        return {"region": 1, "zone": host.index, "ip": host.ip, "port": OBJECTD_PORT,
                "device": host.device, "weight": 100.0}  # fmt: skip

    def add_host_to_rings(self, host: StorageHost) -> None:
        """``ringctl add`` + ``rebalance`` for every ring, then the new files go in place."""
        for kind, builder in self.builders.items():
            builder.add_dev(self._dev(host))
            builder.rebalance(seed=11)
            write_ring(builder, self.ring_dir / f"{kind}.ring")

    def _start_proxy(self) -> None:
        assert self.proxy_host is not None
        config = self.root / "proxy.toml"
        config.write_text(
            "[proxy]\n"
            f"bind_ip = {_toml(self.proxy_host.ip)}\nbind_port = {PROXY_PORT}\nworkers = 1\n"
            f"ring_dir = {_toml(str(self.ring_dir))}\ntoken_secret = {_toml('ab' * 32)}\n"
            'conn_timeout_s = 0.5\nnode_timeout_s = 3.0\nlog_level = "WARNING"\n'
            'policies = [{index = 0, name = "gold", default = true}]\n'
        )
        argv = [sys.executable, "-m", "shoal.cli", "proxy", "-c", str(config)]
        self.proxy_process = _start(self.proxy_host.name, argv, self.root / "proxy.log")

    def stop(self) -> None:
        """Everything goes, whatever state the test left it in."""
        if self.proxy_process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proxy_process.kill()
            self.proxy_process.wait()
            if self.proxy_process.stdout is not None:
                self.proxy_process.stdout.close()
        for host in self.storage:
            with contextlib.suppress(Exception):
                host.kill()
            if host.mounted:
                subprocess.run(["umount", "-l", str(host.device_path)], check=False)
                host.mounted = False
        self.network.teardown()

    # --- what the test inspects ---------------------------------------------------------------
    @property
    def proxy_url(self) -> str:
        assert self.proxy_host is not None
        return f"http://{self.proxy_host.ip}:{PROXY_PORT}"

    def ring(self, kind: str = "object") -> Ring:
        return Ring(self.ring_dir / f"{kind}.ring")

    def host_of(self, dev: dict[str, Any]) -> StorageHost:
        return next(h for h in self.storage if h.ip == dev["ip"])

    def in_ring(self) -> list[StorageHost]:
        ips = {d["ip"] for d in self.ring().devs if d is not None}
        return [h for h in self.storage if h.ip in ips]

    def layout(self, host: StorageHost) -> Layout:
        return Layout(host.devices, SEED)

    def object_dir(self, host: StorageHost, account: str, container: str, obj: str) -> Path:
        part = self.ring().get_part(account, container, obj)
        layout = self.layout(host)
        return Path(
            layout.object_dir(host.device, part, 0, layout.hash_of(account, container, obj))
        )

    def run_everywhere(self, daemon: str) -> list[str]:
        """One pass of ``daemon`` on every running host, all at once (as in production)."""
        hosts = [host for host in self.storage if host.process is not None]
        with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
            return list(pool.map(lambda host: host.run_daemon(daemon), hosts))
