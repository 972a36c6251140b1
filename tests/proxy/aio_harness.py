"""A real ``shoal aio`` for tests: started on a temp directory and a free port, ready once a
tempauth login works, stopped with SIGTERM (SIGKILL after a grace period), also on failure.

Public: :class:`AioCluster`, :func:`free_port`, :func:`hang_up_mid_body`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AioCluster:
    """``shoal aio --data <dir> --port <port>`` as a child process group."""

    def __init__(self, data: Path, *, port: int | None = None, extra_args: list[str] | None = None):
        self.data = data
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None
        self.log_path = data.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth/v1.0"

    def start(self) -> AioCluster:
        argv = [sys.executable, "-m", "shoal.cli", "aio", "--data", str(self.data),
                "--port", str(self.port), "--workers", "2", *self.extra_args]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.data.parent, start_new_session=True,
        )  # fmt: skip
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"shoal aio exited: {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(
                    self.auth_url,
                    headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"shoal aio not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    def node_pids(self) -> list[int]:
        """The objectd processes' pids (children of the aio process)."""
        return self._children_running(b"objectd")

    def proxy_pids(self) -> list[int]:
        """The proxy's processes: its master (a child of the aio process) and its workers."""
        masters = self._children_running(b"proxy")
        workers = [w for m in masters for w in self._children_running(b"proxy", parent=m)]
        return sorted(masters + workers)

    def _children_running(self, command: bytes, parent: int | None = None) -> list[int]:
        assert self.process is not None
        parent = self.process.pid if parent is None else parent
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if ppid == parent and command in cmdline:
                    pids.append(int(entry.name))
        return sorted(pids)

    def node_ports(self) -> dict[int, int]:
        """pid → port of each objectd, from the log's ready lines."""
        found = re.findall(r"objectd listening on http://[^:]+:(\d+) \(pid (\d+)\)",
                           self.log_path.read_text())  # fmt: skip
        return {int(pid): int(port) for port, pid in found}


class ProxyProcess:
    """One ``shoal proxy --config <file>`` (e.g. in keystone mode beside an aio's proxy)."""

    def __init__(self, root: Path, options: dict[str, object], keystone: dict[str, object]):
        self.root = root
        self.port = free_port()
        self.config_path = root / "proxy.toml"
        self.log_path = root / "proxy.log"
        self.options = {"bind_ip": "127.0.0.1", "bind_port": self.port, "workers": 1, **options}
        self.keystone = keystone
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProxyProcess:
        def toml(values: dict[str, object]) -> str:
            def value(v: object) -> str:
                if isinstance(v, bool):
                    return "true" if v else "false"
                if isinstance(v, int | float):
                    return repr(v)
                if isinstance(v, list):
                    return "[" + ", ".join(value(x) for x in v) + "]"
                return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

            return "".join(f"{k} = {value(v)}\n" for k, v in values.items())

        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "[proxy]\n" + toml(self.options) + "\n[keystone]\n" + toml(self.keystone)
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shoal.cli", "proxy", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=self.root,
        )  # fmt: skip
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError(f"proxy exited: {self.log_path.read_text()[-3000:]}")
            if b"listening on" in line:
                return self
        self.stop()
        raise RuntimeError("proxy did not listen in time")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def hang_up_mid_body(aio: AioCluster, url: str, token: str, times: int = 10) -> str:
    """GET ``url`` ``times`` times, reset each connection once the status line is in, and
    return what the proxy logged meanwhile (after a second for it to notice)."""
    parts = urlsplit(url)
    log_offset = aio.log_path.stat().st_size
    for _ in range(times):
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            request = f"GET {parts.path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\r\n"
            sock.sendall(request.encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(1.0)
    with open(aio.log_path, "rb") as log:
        log.seek(log_offset)
        return log.read().decode(errors="replace")
