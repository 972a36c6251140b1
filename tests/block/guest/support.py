"""Pieces of the in-guest tests (they run inside the UML guest only): the guest's blockd node
(lvm-thin + LIO on the guest's first data disk), open-iscsi's initiator, and a real ``shoal aio``
as the object store for backups.

Public: :class:`GuestNode`, :func:`guest_node`, :class:`Iscsiadm`, :class:`GuestAio`, :func:`sh`,
:func:`write`, :func:`read`, :func:`own_initiator`, :data:`VG`, :data:`PORTAL`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.units import MiB
from tests.block.support import DEV_TOKEN, BlockdClient, BlockdNode, BlockdProcess

VG = "shoal-volumes"
PORTAL = "127.0.0.1:3260"
MODULES = ("dm_thin_pool", "target_core_mod", "target_core_iblock", "iscsi_target_mod",
           "iscsi_tcp", "sd_mod")  # fmt: skip
LOGIN_TIMEOUT_S = 90  # a login takes ~1-3 s in UML; generous for a loaded host
DEVICE_WAIT_S = 60.0  # by-path links appear ~2 s after login under UML; x30 for a loaded host
CLEAR_LIO = "import rtslib_fb; rtslib_fb.RTSRoot().clear_existing(confirm=True)"


DISKS = os.environ.get("TEST_DISKS", "").split()  # the guest's scratch disks, from its init
GUEST_ONLY = [
    pytest.mark.guest,
    pytest.mark.skipif(
        os.environ.get("SHOAL_IN_GUEST") != "1" or not DISKS or os.geteuid() != 0,
        reason="runs inside the test guest only (tests/block/test_guest.py boots it)",
    ),
]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)


def own_initiator() -> str:
    text = Path("/etc/iscsi/initiatorname.iscsi").read_text()
    return next(line.split("=", 1)[1].strip() for line in text.splitlines()
                if line.startswith("InitiatorName="))  # fmt: skip


class Iscsiadm:
    """open-iscsi's kernel initiator, configured per node record; ``iface`` picks the IQN."""

    def __init__(self, iface: str = "default"):
        self.iface = iface

    def _node(self, export: dict) -> list[str]:
        target = export["target_iqn"]
        return ["iscsiadm", "-m", "node", "-T", target, "-p", PORTAL, "-I", self.iface]

    def login(self, export: dict, password: str | None = None, **extra: str) -> None:
        node = self._node(export)
        sh(*node, "-o", "new")
        settings = {
            "node.session.auth.authmethod": "CHAP",
            "node.session.auth.username": export["auth_username"],
            "node.session.auth.password": password or export["auth_password"],
            **{name.replace("__", "."): value for name, value in extra.items()},
        }
        for name, value in settings.items():
            sh(*node, "-o", "update", "-n", name, "-v", value)
        result = subprocess.run([*node, "--login"], capture_output=True, text=True,
                                timeout=LOGIN_TIMEOUT_S)  # fmt: skip
        if result.returncode != 0:
            sh(*node, "-o", "delete", check=False)
            acls = Path("/sys/kernel/config/target/iscsi", export["target_iqn"], "tpgt_1", "acls")
            seen = {p.name: (p / "auth" / "userid").read_text().strip() for p in acls.glob("*")}
            raise PermissionError(
                f"login refused (as {export['auth_username']}; LIO ACLs {seen}): "
                f"{result.stderr.strip()[-300:]}"
            )

    def logout(self, export: dict) -> None:
        sh(*self._node(export), "--logout", check=False)
        sh(*self._node(export), "-o", "delete", check=False)

    @staticmethod
    def device(export: dict) -> str:
        link = Path(f"/dev/disk/by-path/ip-{PORTAL}-iscsi-{export['target_iqn']}-lun-"
                    f"{export['target_lun']}")  # fmt: skip
        deadline = time.monotonic() + DEVICE_WAIT_S
        while not link.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{link} did not appear")
            sh("udevadm", "settle", "-t", "5", check=False)
            time.sleep(0.2)
        return os.path.realpath(link)

    @staticmethod
    def rescan(export: dict) -> None:
        sh("iscsiadm", "-m", "node", "-T", export["target_iqn"], "-p", PORTAL, "--rescan")


def write(device: str, data: bytes, offset: int = 0) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(device: str, length: int, offset: int = 0) -> bytes:
    """O_DIRECT read (dd): what the target returns, not the initiator's page cache."""
    out = subprocess.run(
        ["dd", f"if={device}", "bs=1M", f"count={length // MiB}", f"skip={offset // MiB}",
         "iflag=direct", "status=none"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return out


class GuestNode(BlockdNode):
    def __init__(self, workdir: Path):
        self.config = {
            "auth_mode": "dev",
            "dev_token": DEV_TOKEN,
            "backend": "lvm-thin",
            "lvm_vg": VG,
            "target": "lio",
            "target_portals": [PORTAL],
            "lio_save_file": str(workdir / "saveconfig.json"),
            "log_level": os.environ.get("BLOCKD_LOG_LEVEL", "INFO"),
        }
        self.blockd = BlockdProcess(workdir, self.config)
        self.blockd.start()
        self.api = BlockdClient(self.blockd.url)
        self.iscsi = Iscsiadm()

    def export(self, volume_id: str, initiator: str | None = None) -> dict:
        path = f"/v1/volumes/{volume_id}/exports/{initiator or own_initiator()}"
        return self.api.ok("PUT", path)["export"]

    def attach(self, volume_id: str) -> tuple[dict, str]:
        export = self.export(volume_id)
        self.iscsi.login(export)
        return export, self.iscsi.device(export)


@contextlib.contextmanager
def guest_node(workdir: Path, disk: str) -> Iterator[GuestNode]:
    """A VG on ``disk`` and blockd (lvm-thin + LIO) on it; everything is undone afterwards."""
    for module in MODULES:
        sh("modprobe", module)
    sh("pvcreate", "-qy", disk)
    sh("vgcreate", "-q", VG, disk)  # the pool is blockd's to create (as Cinder's driver does)
    sh("iscsid", check=False)  # a second run in one boot finds it running
    guest = None
    try:
        guest = GuestNode(workdir)
        yield guest
    finally:
        sh("iscsiadm", "-m", "node", "--logoutall=all", check=False)
        sh("iscsiadm", "-m", "node", "-o", "delete", check=False)
        if guest is not None:
            guest.blockd.stop()
            print(guest.blockd.log_tail(400))
        sh("python3", "-c", CLEAR_LIO, check=False)
        sh("vgremove", "-qffy", VG, check=False)
        sh("pvremove", "-qffy", disk, check=False)


AIO_READY_TIMEOUT_S = 120.0  # ~14 s measured under UML (4 objectd + the proxy start)
AIO_STOP_TIMEOUT_S = 30.0
AIO_USER, AIO_KEY = "test:tester", "testing"  # shoal aio's tempauth user


class GuestAio:
    """``shoal aio`` (4 objectd + the proxy, tempauth, no background daemons) in the guest: the
    object store that backups go to. Its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, data: Path):
        self.data = data
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.auth_url = f"http://127.0.0.1:{self.port}/auth/v1.0"
        self.log_path = data.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def start(self) -> GuestAio:
        argv = [sys.executable, "-m", "shoal.cli", "aio", "--data", str(self.data),
                "--port", str(self.port), "--workers", "1", "--no-daemons"]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.data.parent, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + AIO_READY_TIMEOUT_S
        while self.login() is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_path.read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"shoal aio did not start: {log_text}")
            time.sleep(0.5)
        return self

    def login(self) -> tuple[str, str] | None:
        """(storage URL, token) of the tempauth user, or None while the proxy is not up."""
        request = urllib.request.Request(
            self.auth_url, headers={"X-Auth-User": AIO_USER, "X-Auth-Key": AIO_KEY}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.headers["X-Storage-Url"], answer.headers["X-Auth-Token"]
        except (urllib.error.URLError, OSError):
            return None

    def object_store(self) -> dict:
        """The ``object_store`` of a backup request: this account, a fresh container."""
        login = self.login()
        assert login is not None, "shoal aio is down"
        return {"storage_url": login[0], "token": login[1],
                "container": f"backups-{uuid.uuid4().hex[:8]}"}  # fmt: skip

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=AIO_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
