"""Real pieces for blockd's host tests: an XFS loop mount, a private tgtd, blockd as a process,
and a real iSCSI initiator (QEMU's libiscsi block driver via qemu-io / qemu-img, libiscsi's
iscsi-readcapacity16).

Public: :func:`reflink_mount`, :class:`Tgtd`, :class:`BlockdProcess`, :class:`BlockdClient`,
:class:`Initiator`, :class:`ImageServer`, :func:`wait_task`, :func:`free_port`, :func:`require`.

Nothing is faked: blockd runs as ``python -m blockd`` with a TOML config, tgtd binds a free port on
127.0.0.1 with a private control port (never the system's 3260 or tgtd), and every byte checked is
moved by an iSCSI initiator. Every process started here is stopped by its pid, also on failure.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0  # blockd starts in ~1 s; tgtd in ~0.1 s; generous for a loaded machine
COMMAND_TIMEOUT_S = 120.0
ISCSI_TIMEOUT_S = 60.0  # one qemu-io run: login + a few MiB over loopback
DEV_TOKEN = "test-dev-token-0123456789"
TASK_WAIT_S = 60.0  # an image import of a few MiB takes ~0.1-1 s; generous for a loaded machine
INITIATOR = "iqn.2024-01.org.example:compute-1"
OTHER_INITIATOR = "iqn.2024-01.org.example:compute-2"


def require(*commands: str) -> None:
    """Skip (with the package to install) unless root and every command is present."""
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, tgtd control socket)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [c for c in commands if shutil.which(c, path=path) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (make system-packages)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


MKFS = {  # file systems with reflink (FICLONE), as blockd's reflink backend needs
    "xfs": ("mkfs.xfs", "-q", "-m", "reflink=1"),
    "btrfs": ("mkfs.btrfs", "-q"),
}


@contextlib.contextmanager
def reflink_mount(size: str = "8G", fs: str = "xfs") -> Iterator[Path]:
    """A fresh XFS (reflink=1) or btrfs on a sparse loop file, mounted on a temp dir; gone after."""
    base = Path(tempfile.mkdtemp(prefix=f"shoal-blockd-{fs}-"))
    image, mountpoint = base / f"{fs}.img", base / "mnt"
    mountpoint.mkdir()
    run("truncate", "-s", size, str(image))
    run(*MKFS[fs], str(image))
    loop = run("losetup", "--find", "--show", str(image)).stdout.strip()
    try:
        run("mount", loop, str(mountpoint))
        try:
            yield mountpoint
        finally:
            run("umount", str(mountpoint), check=False)
    finally:
        run("losetup", "-d", loop, check=False)
        shutil.rmtree(base, ignore_errors=True)


class Tgtd:
    """A private tgtd: portal 127.0.0.1:<free port>, control port -C in 10000..19999 (tgtd's
    accepted range), its own socket files; stopped by pid."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.control_port = self.free_control_port()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def free_control_port() -> int:
        for _ in range(100):
            port = random.randrange(10000, 20000)
            if not Path(f"/var/run/tgtd/socket.{port}").exists():
                return port
        raise RuntimeError("no free tgtd control port")

    @property
    def portal(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tgtadm(self, *args: str, check: bool = True):
        return run("tgtadm", "-C", str(self.control_port), *args, check=check)

    def start(self) -> None:
        log = open(self.workdir / f"tgtd-{self.control_port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(self.control_port), "--iscsi", f"portal={self.portal}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tgtd exited with {self.proc.returncode}")
            if self.tgtadm("--mode", "system", "--op", "show", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("tgtd did not answer on its control port")

    def stop(self) -> None:
        """Delete every target (tgtd refuses to stop otherwise), stop tgtd, remove its sockets."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            shown = self.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target", check=False)
            for line in shown.stdout.splitlines():
                if line.startswith("Target "):
                    tid = line.split()[1].rstrip(":")
                    self.tgtadm(
                        "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", tid,
                        "--force", check=False,
                    )  # fmt: skip
            self.tgtadm("--op", "delete", "--mode", "system", check=False)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for leftover in Path("/var/run/tgtd").glob(f"socket.{self.control_port}*"):
            leftover.unlink(missing_ok=True)


class BlockdProcess:
    """``python -m blockd --config FILE --port 0`` in its own session; waits for its ready line."""

    def __init__(self, workdir: Path, config: dict):
        self.workdir = workdir
        self.config_path = workdir / "blockd.toml"
        self.config_path.write_text(_toml({"blockd": config}))
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log_path = workdir / "blockd.log"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "blockd", "--config", str(self.config_path), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                self.proc.wait()
                raise RuntimeError(f"blockd exited {self.proc.returncode}: {self.log_tail()}")
            if " listening on " in line:
                self.url = line.split(" listening on ")[1].split()[0]
                return
        raise RuntimeError("blockd did not start: " + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


def _toml(tables: dict) -> str:
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class BlockdClient:
    """The HTTP API with a token; returns (status, json or None). Standard library only, so the
    same helper runs inside the test guest."""

    def __init__(self, url: str, token: str | None = DEV_TOKEN):
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body=None, token: str | None = ""):
        data = json.dumps(body).encode() if body is not None else None
        return self.raw(method, path, data, token=token)

    def raw(self, method: str, path: str, data: bytes | None, token: str | None = ""):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        chosen = self.token if token == "" else token
        if chosen is not None:
            headers["X-Auth-Token"] = chosen
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT_S) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body=None, status: int = 200):
        got, data = self.call(method, path, body)
        assert got == status, f"{method} {path} -> {got} {data}"
        return data


class Initiator:
    """A real iSCSI initiator in user space: QEMU's libiscsi driver (qemu-io, qemu-img) and
    libiscsi's iscsi-readcapacity16. Each call is one login, the I/O, one logout."""

    def __init__(self, iqn: str, workdir: Path):
        self.iqn = iqn
        self.workdir = workdir

    def _opts(self, export: dict, password: str | None) -> tuple[list[str], str]:
        host_port = export["target_portal"]
        opts = (
            f"driver=raw,file.driver=iscsi,file.transport=tcp,file.portal={host_port},"
            f"file.target={export['target_iqn']},file.lun={export['target_lun']},"
            f"file.initiator-name={self.iqn}"
        )
        secret: list[str] = []
        if password is not None:
            secret = ["--object", f"secret,id=chap0,data={password}"]
            opts += f",file.user={export['auth_username']},file.password-secret=chap0"
        return secret, opts

    def qemu_io(self, export: dict, *commands: str, password: str | None = "") -> str:
        """Run qemu-io commands on the LUN; raises CalledProcessError when login or I/O fails."""
        secret, opts = self._opts(export, export["auth_password"] if password == "" else password)
        argv = ["qemu-io", *secret, "--image-opts", opts]
        for command in commands:
            argv += ["-c", command]
        result = run(*argv, check=False, timeout=ISCSI_TIMEOUT_S)
        failed = result.returncode != 0 or "failed" in result.stdout + result.stderr
        if failed:
            raise subprocess.CalledProcessError(
                result.returncode or 1, argv, result.stdout, result.stderr
            )
        return result.stdout

    def start_qemu_io(self, export: dict, *commands: str) -> subprocess.Popen:
        """qemu-io in the background (one login for all ``commands``); the caller communicates."""
        secret, opts = self._opts(export, export["auth_password"])
        argv = ["qemu-io", *secret, "--image-opts", opts]
        for command in commands:
            argv += ["-c", command]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def write(self, export: dict, data: bytes, offset: int = 0) -> None:
        """Write ``data`` at ``offset`` through iSCSI (qemu-io's write from a source file)."""
        source = self.workdir / f"write-{os.getpid()}.bin"
        source.write_bytes(data)
        try:
            self.qemu_io(export, f"write -q -s {source} {offset} {len(data)}", "flush")
        finally:
            source.unlink(missing_ok=True)

    def read(self, export: dict, length: int, offset: int = 0) -> bytes:
        """``length`` bytes at ``offset`` of the LUN, read through iSCSI (qemu-img convert)."""
        secret, opts = self._opts(export, export["auth_password"])
        opts = opts.replace("driver=raw,", f"driver=raw,offset={offset},size={length},", 1)
        target = self.workdir / f"read-{os.getpid()}.bin"
        try:
            run("qemu-img", "convert", *secret, "--image-opts", opts, "-O", "raw", str(target),
                timeout=ISCSI_TIMEOUT_S)  # fmt: skip
            return target.read_bytes()
        finally:
            target.unlink(missing_ok=True)

    def capacity_bytes(self, export: dict) -> int:
        """READ CAPACITY(16) through a fresh login."""
        url = (
            f"iscsi://{export['auth_username']}%{export['auth_password']}@"
            f"{export['target_portal']}/{export['target_iqn']}/{export['target_lun']}"
        )
        out = run("iscsi-readcapacity16", "-i", self.iqn, url, timeout=ISCSI_TIMEOUT_S).stdout
        return int(out.split("Total size:")[1].split()[0])


class BlockdNode:
    """What every test node does with its blockd: restart it, create volumes (subclasses set
    ``self.blockd`` and ``self.api``)."""

    blockd: BlockdProcess
    api: BlockdClient

    def restart_blockd(self) -> None:
        self.blockd.stop()
        self.blockd.start()
        self.api = BlockdClient(self.blockd.url)

    def create_volume(self, size_gib: int = 1, **extra) -> dict:
        body = {"id": str(uuid.uuid4()), "size_gib": size_gib, **extra}
        return self.api.ok("POST", "/v1/volumes", body, status=201)["volume"]


class Node(BlockdNode):
    """One block node on the host: XFS (reflink) + a private tgtd + blockd, with an API client
    and an initiator (:data:`INITIATOR`) to test it."""

    def __init__(self, mount: Path, tgtd: Tgtd, workdir: Path):
        self.mount = mount
        self.tgtd = tgtd
        self.workdir = workdir
        self.config = {
            "auth_mode": "dev",
            "dev_token": DEV_TOKEN,
            "backend": "reflink",
            "reflink_dir": str(mount / "volumes"),
            "target": "tgt",
            "target_portals": [tgtd.portal],
            "tgt_conf_dir": str(workdir / "tgt-conf"),
            "tgt_control_port": tgtd.control_port,
            "reconcile_interval_s": 1.0,
        }
        self.blockd = BlockdProcess(workdir, self.config)
        self.blockd.start()
        self.api = BlockdClient(self.blockd.url)
        self.initiator = Initiator(INITIATOR, workdir)

    def export(self, volume_id: str, initiator: str = INITIATOR) -> dict:
        return self.api.ok("PUT", f"/v1/volumes/{volume_id}/exports/{initiator}")["export"]


@contextlib.contextmanager
def host_node(workdir: Path, xfs_size: str = "8G", fs: str = "xfs") -> Iterator[Node]:
    """A :class:`Node` for the duration of the block; everything started is stopped after."""
    require("tgtd", "tgtadm", "qemu-io", "qemu-img", "iscsi-readcapacity16", MKFS[fs][0], "losetup")
    with reflink_mount(xfs_size, fs) as mount:
        tgtd = Tgtd(workdir)
        tgtd.start()
        node = None
        try:
            node = Node(mount, tgtd, workdir)
            yield node
        finally:
            if node is not None:
                node.blockd.stop()
            tgtd.stop()


class ImageServer:
    """A loopback HTTP server of one directory's files (stands in for Glance or Swift: a plain
    GET with a Content-Length)."""

    def __init__(self, directory: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(directory), **k
        )
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_task(api: BlockdClient, task_id: str, timeout_s: float = TASK_WAIT_S) -> dict:
    """The task once it is no longer running (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = api.ok("GET", f"/v1/tasks/{task_id}")["task"]
        if task["state"] != "running":
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
