"""A small cluster on loopback for the daemon tests: N real objectd processes (one device each),
real ring files naming them, and a daemon config per node.

Public: :class:`Node`, :class:`LocalCluster`, :data:`SEED_HEX`, :func:`ts`.

Each node is one ``shoal objectd`` process on 127.0.0.1 with its own devices root; the rings
(object, container, account) are built with :class:`ring.builder.RingBuilder` once every node
listens (the ports are chosen by the kernel). The daemons under test run in the test process
(``run_once`` on a config of the node they work for) and talk to the other nodes over HTTP,
as they would in production.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from objectd.daemon_config import DaemonConfig, load_daemon_config
from objectd.layout import Layout
from ring.builder import RingBuilder
from ring.ring import Ring
from ring.ringfile import write_ring

SEED_HEX = "5eed5eed5eed5eed5eed5eed5eed5eed"
READY_TIMEOUT_S = 20.0
_READY_RE = re.compile(r"listening on http://([^:\s]+):(\d+)")
_clock_offset = [0]


def ts(offset_s: float = 0.0) -> str:
    """A fresh X-Timestamp (strictly increasing within the test process)."""
    _clock_offset[0] += 1
    return f"{time.time() + offset_s + _clock_offset[0] * 1e-5:.5f}"


class Node:
    """One objectd process with one device (``d<index>``) under ``root/devices``."""

    def __init__(self, root: Path, index: int, ip: str = "127.0.0.1", port: int = 0):
        self.root = root
        self.index = index
        self.ip = ip
        self.device = f"d{index}"
        self.devices = root / "devices"
        self.device_path = self.devices / self.device
        self.device_path.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    def objectd_options(self, ring_dir: Path) -> dict[str, Any]:
        return {
            "devices": str(self.devices),
            "bind_ip": self.ip,
            "bind_port": self.port,
            "mount_check": False,
            "hash_path_seed": SEED_HEX,
            "ring_dir": str(ring_dir),
            "container_update_timeout_s": 0.5,
            "conn_timeout_s": 0.3,
            "node_timeout_s": 2.0,
        }

    def write_config(self, ring_dir: Path, daemon_options: dict[str, Any]) -> Path:
        path = self.root / "node.toml"
        lines = ["[objectd]"]
        lines += [f"{k} = {_toml(v)}" for k, v in self.objectd_options(ring_dir).items()]
        for table in ("replicator", "db_replicator", "auditor", "updater", "expirer"):
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml(v)}" for k, v in daemon_options.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, ring_dir: Path, argv_prefix: list[str] | None = None) -> None:
        self.spawn(ring_dir, argv_prefix)
        self.port = self._wait_ready()

    def spawn(self, ring_dir: Path, argv_prefix: list[str] | None = None) -> None:
        """Start the process without waiting (several nodes start at once)."""
        config = self.write_config(ring_dir, {})
        log = open(self.root / "objectd.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [*(argv_prefix or []), sys.executable, "-m", "shoal.cli", "objectd", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=self.root,
        )
        log.close()

    def _wait_ready(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            match = _READY_RE.search(line)
            if match:
                return int(match.group(2))
            if self.process.poll() is not None:
                break
        log = (self.root / "objectd.log").read_text(errors="replace")
        raise RuntimeError(f"objectd {self.index} did not start; log:\n{log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 20)
        return self.session.request(method, self.url + path, **kwargs)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class LocalCluster:
    """``count`` nodes and rings of ``replicas`` over their devices (part power ``part_power``)."""

    def __init__(self, root: Path, count: int, *, replicas: int = 3, part_power: int = 3):
        self.root = root
        self.ring_dir = root / "rings"
        self.ring_dir.mkdir(parents=True, exist_ok=True)
        self.replicas = replicas
        self.part_power = part_power
        self.nodes = [Node(root / f"node{i}", i) for i in range(count)]
        self.layout_seed = bytes.fromhex(SEED_HEX)

    def start(self) -> LocalCluster:
        # objectd needs a seed before the rings exist: hash_path_seed is set for every node
        for node in self.nodes:
            node.spawn(self.ring_dir)
        for node in self.nodes:
            node.port = node._wait_ready()
        self.build_rings(self.nodes)
        return self

    def build_rings(self, nodes: list[Node], *, seed: int = 1) -> None:
        for kind in ("object", "container", "account"):
            builder = RingBuilder(self.part_power, self.replicas, 0)
            builder.hash_seed = self.layout_seed
            for node in nodes:
                builder.add_dev(
                    {"region": 1, "zone": node.index, "ip": node.ip, "port": node.port,
                     "device": node.device, "weight": 100.0}
                )  # fmt: skip
            builder.rebalance(seed=seed)
            write_ring(builder, self.ring_dir / f"{kind}.ring")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def ring(self, kind: str = "object") -> Ring:
        return Ring(self.ring_dir / f"{kind}.ring")

    def node_of(self, dev: dict[str, Any]) -> Node:
        return next(n for n in self.nodes if n.port == dev["port"] and n.ip == dev["ip"])

    def daemon_config(self, node: Node, table: str = "replicator", **options: Any) -> DaemonConfig:
        defaults = {"concurrency": 2, "io_bytes_per_s_max": 100 * 1024 * 1024, "interval_s": 1.0}
        path = node.write_config(self.ring_dir, {**defaults, **options})
        return load_daemon_config(path, table)

    def layout(self, node: Node) -> Layout:
        return Layout(node.devices, self.layout_seed)

    def hash_dir(self, node: Node, account: str, container: str, obj: str) -> Path:
        part = self.ring().get_part(account, container, obj)
        layout = self.layout(node)
        return Path(
            layout.object_dir(node.device, part, 0, layout.hash_of(account, container, obj))
        )

    # --- object writes straight to the backend (as a proxy would) --------------------------
    def put_object(self, nodes: list[Any], account: str, container: str, obj: str, body: bytes,
                   timestamp: str, **headers: str) -> list[int]:  # fmt: skip
        """PUT to each of ``nodes`` (ring devs or Nodes); the statuses."""
        part = self.ring().get_part(account, container, obj)
        statuses = []
        for target in nodes:
            node = target if isinstance(target, Node) else self.node_of(target)
            response = node.request(
                "PUT",
                f"/{node.device}/{part}/{account}/{container}/{obj}",
                data=body,
                headers={"X-Timestamp": timestamp, "Content-Type": "application/octet-stream",
                         **headers},
            )  # fmt: skip
            statuses.append(response.status_code)
        return statuses

    def get_object(self, node: Node, account: str, container: str, obj: str) -> requests.Response:
        part = self.ring().get_part(account, container, obj)
        return node.request("GET", f"/{node.device}/{part}/{account}/{container}/{obj}")

    def primaries(self, account: str, container: str, obj: str) -> list[Node]:
        part = self.ring().get_part(account, container, obj)
        return [self.node_of(dev) for dev in self.ring().get_part_nodes(part)]

    def files_under(self, node: Node, *suffixes: str) -> list[str]:
        found = []
        for directory, _, names in os.walk(node.device_path):
            found += [os.path.join(directory, n) for n in names if n.endswith(suffixes)]
        return found
