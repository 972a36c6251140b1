"""Real objectd processes for tests: start one on a temp directory, wait until it listens,
talk HTTP to it, kill it (gracefully or with SIGKILL), restart it on the same files.

Public: :class:`ObjectdProcess`, :func:`start_objectd`, :data:`SEED_HEX`, :func:`hash_dir_of`,
:func:`filesystem_type`.
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

import requests

from objectd.layout import Layout

SEED_HEX = "5eed5eed5eed5eed5eed5eed5eed5eed"
READY_TIMEOUT_S = 20.0
_READY_RE = re.compile(r"listening on http://([^:\s]+):(\d+)")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class ObjectdProcess:
    """One objectd process on ``root`` (devices under ``root/devices``)."""

    def __init__(self, root: Path, options: dict[str, object]):
        self.root = root
        self.devices = root / "devices"
        self.config_path = root / "objectd.toml"
        self.log_path = root / "objectd.log"
        self.options = {
            "devices": str(self.devices),
            "bind_ip": "127.0.0.1",
            "bind_port": 0,
            "mount_check": False,
            "hash_path_seed": SEED_HEX,
            "log_level": "INFO",
            **options,
        }
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.session = requests.Session()
        self.layout = Layout(self.devices, bytes.fromhex(SEED_HEX))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ObjectdProcess:
        if self.port:  # restart on the same port, so clients need not learn a new one
            self.options["bind_port"] = self.port
        self.config_path.write_text(
            "".join(f"{key} = {_toml_value(value)}\n" for key, value in self.options.items())
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shoal.cli", "objectd", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=self.root,
        )
        log.close()
        self.port = self._wait_ready()
        return self

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
        raise RuntimeError(f"objectd did not start; log:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipe()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()
        self.session.close()
        self.session = requests.Session()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def add_device(self, name: str) -> Path:
        path = self.devices / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def start_objectd(root: Path, *, devices: tuple[str, ...] = ("sda",), **options) -> ObjectdProcess:
    root.mkdir(parents=True, exist_ok=True)
    process = ObjectdProcess(root, options)
    for name in devices:
        process.add_device(name)
    return process.start()


def hash_dir_of(process: ObjectdProcess, device: str, partition: int, account: str, container: str,
                obj: str, policy: int = 0) -> Path:  # fmt: skip
    name_hash = process.layout.hash_of(account, container, obj)
    return Path(process.layout.object_dir(device, partition, policy, name_hash))


def filesystem_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/self/mounts)."""
    best, best_type = "", "unknown"
    resolved = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount_point = fields[1].replace("\\040", " ")
            within = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if within and len(mount_point) >= len(best):
                best, best_type = mount_point, fields[2]
    return best_type
