"""Real Cinder around Shoal's driver: the Cinder venv, and Cinder's VolumeManager as a process.

Public: :func:`ensure_cinder_venv`, :func:`install_project`, :class:`CinderEnv`, :class:`CinderHost`,
:class:`CinderCallError`, :class:`CinderEnvError`, :func:`write_cinder_conf`, and the Nova side
of an attach: :func:`connector`, :func:`attach`, :func:`blockd_exports`.

Why a separate venv: Cinder is an outside service with its own ~125 pinned packages (eventlet,
SQLAlchemy 2.1, oslo.*); Shoal must not depend on it, and its driver must work in Cinder's
environment, not in Shoal's. The venv is built once per machine under ``/var/cache/shoal`` (root)
or ``~/.cache/shoal`` (``SHOAL_CACHE_DIR`` overrides), named by a hash of what is installed,
guarded by a file lock and marked complete by a stamp written last. The project itself is
installed with ``--no-deps`` at every session (~5 s) into a directory of that session, put on
the Cinder processes' ``PYTHONPATH``: no stale driver code, and no session swaps another's. Measured on the 2-core CI kind: venv build 60-150 s cold, nothing warm.

:class:`CinderHost` runs ``tests/cinder/cinder_host.py`` with the venv's python and speaks its
one-JSON-line-per-request protocol; see that file for what is real and what is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.block.support import INITIATOR

CINDER_VERSION = "29.0.0"
# python-swiftclient: optional for Cinder, needed by its Swift backup driver (tested on Shoal);
# gunicorn serves cinder-api in the level-3 stack (make test-stack)
REQUIREMENTS = (
    f"cinder=={CINDER_VERSION}",
    "python-swiftclient",
    "gunicorn",
    "setuptools",
    "wheel",
)
HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
CONSTRAINTS_FILE = HERE / "cinder-constraints.txt"  # pip freeze of a working Cinder 29 venv
HOST_SCRIPT = HERE / "cinder_host.py"
BACKEND = "shoal1"

INSTALL_TIMEOUT_S = 540  # 60-150 s on the loaded CI kind; under pytest-timeout's 600 s
PROJECT_INSTALL_TIMEOUT_S = 180  # ~5 s: one wheel build of Shoal, no dependencies
HOST_START_TIMEOUT_S = 180  # importing Cinder + db_sync + init_host: 5-20 s, slower when loaded
CALL_TIMEOUT_S = 180  # one manager call (a create is < 1 s; an attach runs tgtadm)
PYPI_PROBE_TIMEOUT_S = 10.0
SERVER_START_TIMEOUT_S = 30.0  # an in-process blockd: backend and target checks, ~1 s
_STAMP = ".shoal-ready"


def connector(initiator: str = INITIATOR, host: str = "compute-1") -> dict:
    """What os-brick's ISCSIConnector.get_connector_properties gives Nova on a compute host."""
    return {
        "initiator": initiator,
        "ip": "127.0.0.1",
        "host": host,
        "multipath": False,
        "platform": "x86_64",
        "os_type": "linux",
        "mountpoint": "/dev/vdb",
    }


def attach(cinder, volume_id: str, initiator: str = INITIATOR) -> tuple[str, dict]:
    result = cinder.call(
        "attach",
        volume_id=volume_id,
        connector=connector(initiator),
        instance_uuid=str(uuid.uuid4()),
    )
    return result["attachment_id"], result["connection_info"]


def blockd_exports(node, volume_id: str) -> list[str]:
    return node.api.ok("GET", f"/v1/volumes/{volume_id}/exports")["initiators"]


class CinderEnvError(RuntimeError):
    """The Cinder venv could not be built. ``network`` is True when the index was unreachable."""

    def __init__(self, message: str, *, network: bool = False):
        super().__init__(message)
        self.network = network


class CinderCallError(RuntimeError):
    """A manager call raised inside Cinder: ``type`` is the exception class, ``result`` the row."""

    def __init__(self, error: dict, result: Any):
        super().__init__(f"{error['type']}: {error['message']}")
        self.type = error["type"]
        self.message = error["message"]
        self.result = result


def _cache_root() -> Path:
    override = os.environ.get("SHOAL_CACHE_DIR")
    if override:
        return Path(override)
    return Path("/var/cache/shoal") if os.geteuid() == 0 else Path.home() / ".cache" / "shoal"


def _venv_dir() -> Path:
    digest = hashlib.sha256()
    digest.update("\n".join(REQUIREMENTS).encode())
    digest.update(CONSTRAINTS_FILE.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return _cache_root() / f"cinder-venv-{digest.hexdigest()[:12]}"


def _index_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/cinder/", timeout=PYPI_PROBE_TIMEOUT_S):
            return True
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _run(cmd: list[str], *, timeout_s: float, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            cmd, check=True, capture_output=True, text=True, timeout=timeout_s, cwd=cwd
        )
    except subprocess.CalledProcessError as exc:
        output = "\n".join(
            line
            for line in f"{exc.stdout}\n{exc.stderr}".splitlines()
            if "is ignored: it is neither" not in line  # this machine's pip.conf noise
        )
        raise CinderEnvError(
            f"{' '.join(cmd)} exited {exc.returncode}:\n{output[-3000:]}",
            network=not _index_reachable(),
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CinderEnvError(f"{' '.join(cmd)} took more than {timeout_s} s") from exc
    return done.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Concurrent sessions wait for one build (and one project install) instead of racing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_cinder_venv() -> Path:
    """A venv with ``cinder==CINDER_VERSION`` pinned by the constraints file (built once)."""
    override = os.environ.get("SHOAL_CINDER_VENV")
    if override:  # someone else's venv: used as is, never rebuilt or deleted
        return Path(override)
    venv = _venv_dir()
    if (venv / _STAMP).is_file():
        return venv
    with _locked(venv.with_name(venv.name + ".lock")):
        if (venv / _STAMP).is_file():
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        _run([sys.executable, "-m", "venv", str(venv)], timeout_s=INSTALL_TIMEOUT_S)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        _run([*pip, "-c", str(CONSTRAINTS_FILE), *REQUIREMENTS], timeout_s=INSTALL_TIMEOUT_S)
        (venv / _STAMP).write_text("\n".join(REQUIREMENTS) + "\n")
    return venv


@dataclasses.dataclass(frozen=True)
class CinderEnv:
    """The Cinder venv (shared, cached) and this session's Shoal install (``site``)."""

    venv: Path
    site: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment of a Cinder process: Shoal from ``site``, never from the checkout."""
        return dict(
            os.environ, PYTHONPATH=str(self.site), PYTHONWARNINGS="ignore::DeprecationWarning"
        )


def install_project(venv: Path, site: Path) -> CinderEnv:
    """Install this checkout of Shoal with ``--no-deps`` into ``site``, a directory of this
    session (not the shared venv, so concurrent sessions of other checkouts cannot swap the
    driver under each other); Cinder's processes get it on ``PYTHONPATH`` and load
    ``blockd.cinder_driver`` from there, as cinder-volume would from site-packages.
    """
    _run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(PROJECT_ROOT),
        ],
        timeout_s=PROJECT_INSTALL_TIMEOUT_S,
    )
    return CinderEnv(venv, site)


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port> from a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    url: list[str] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url.append(f"http://127.0.0.1:{runner.addresses[0][1]}")

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="blockd-backup", daemon=True)
    thread.start()
    started.wait(SERVER_START_TIMEOUT_S)
    try:
        assert url, "the in-process blockd did not start"
        yield url[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)


@contextlib.contextmanager
def blockd_with_backup_routes(node, workdir: Path) -> Iterator[str]:
    """A blockd serving the backup/upload routes (``add_backup_routes``, not yet registered in
    ``make_app``) in this process, on ``node``'s storage and target (no reconciling); its URL."""
    from blockd.api.app import SERVICE, TASKS
    from blockd.api.backup_routes import add_backup_routes
    from blockd.config import load_config
    from blockd.main import build_app
    from tests.block.support import BlockdProcess

    config = {**node.config, "reconcile_interval_s": 0.0}
    app = build_app(load_config(BlockdProcess(workdir, config).config_path))
    add_backup_routes(app, app[SERVICE], app[TASKS])
    with serve_in_thread(app) as url:
        yield url


def write_cinder_conf(workdir: Path, backend_options: dict[str, str]) -> Path:
    """cinder.conf for the level-2 host: SQLite, fake:// transport, one Shoal backend."""
    backend = "\n".join(f"{k} = {v}" for k, v in backend_options.items())
    path = workdir / "cinder.conf"
    path.write_text(
        f"""[DEFAULT]
host = testhost
state_path = {workdir}
enabled_backends = {BACKEND}
transport_url = fake://
auth_strategy = noauth
default_volume_type = __DEFAULT__
log_file = {workdir}/cinder.log
debug = true
[database]
connection = sqlite:///{workdir}/cinder.sqlite
[oslo_concurrency]
lock_path = {workdir}/locks
[coordination]
backend_url = file://{workdir}/coord
[key_manager]
backend = cinder.keymgr.conf_key_mgr.ConfKeyManager
[{BACKEND}]
volume_driver = blockd.cinder_driver.ShoalISCSIDriver
volume_backend_name = {BACKEND}
{backend}
"""
    )
    return path


class CinderHost:
    """``cinder_host.py`` under the Cinder venv's python; ``call(op, **args)`` → its result."""

    def __init__(self, cinder: CinderEnv, workdir: Path, conf: Path):
        self.workdir = workdir
        self.stderr_path = workdir / "cinder-host.stderr"
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 (closed in stop)
        env = cinder.env
        self.proc = subprocess.Popen(
            [str(cinder.venv / "bin" / "python"), str(HOST_SCRIPT), str(conf), BACKEND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=workdir,  # not the checkout: nothing may import Shoal from the source tree
            env=env,
            start_new_session=True,
            text=True,
        )
        self.ready = self._read(HOST_START_TIMEOUT_S)

    def _read(self, timeout_s: float) -> dict:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise TimeoutError(f"cinder host silent for {timeout_s} s: {self.tail()}")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"cinder host exited {self.proc.returncode}: {self.tail()}")
        return json.loads(line)

    def tail(self, lines: int = 40) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def call(self, op: str, **args) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._read(CALL_TIMEOUT_S)
        if "error" in answer:
            raise CinderCallError(answer["error"], answer.get("result"))
        return answer["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of requests: the host stops its coordinator and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
