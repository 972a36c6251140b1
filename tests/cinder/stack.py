"""Level 3: a real Cinder control plane around Shoal's driver, for ``make test-stack``.

Public: :class:`CinderStack`, :func:`rabbitmq_server_path`.

RabbitMQ (Debian ``rabbitmq-server``, run as a foreground child in its own session, loopback
only, its data under the stack's temp dir) + ``cinder-api`` (gunicorn, a shim that gives Cinder
its own argv) + ``cinder-scheduler`` + ``cinder-volume`` (ShoalISCSIDriver → the test's blockd),
all from the Cinder venv, SQLite, Keystone auth (``[keystone_authtoken]`` = the svc user,
``service_token_roles_required``). Every process is started in its own session and stopped by
its recorded pid (SIGTERM to its group, SIGKILL after ``STOP_TIMEOUT_S``); Erlang's ``epmd``,
which daemonizes out of the broker's group, is found by the stack directory in its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import requests

from tests.cinder.support import BACKEND, CinderEnv

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's layout
READY_TIMEOUT_S = 240.0  # broker 5-10 s, services 12-25 s quiet; much slower when loaded
STOP_TIMEOUT_S = 20.0
API_VERSION = "volume 3.54"  # attachments API + os-complete, what Nova uses


def rabbitmq_server_path() -> Path | None:
    return RABBITMQ_SERVER if RABBITMQ_SERVER.is_file() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CinderStack:
    def __init__(self, cinder: CinderEnv, base: Path, keystone, blockd_url: str, blockd_token: str):
        self.cinder = cinder
        self.venv = cinder.venv
        self.base = base
        self.keystone = keystone
        self.rabbit_port = _free_port()
        self.api_port = _free_port()
        self.url = f"http://127.0.0.1:{self.api_port}/v3"
        self.procs: dict[str, subprocess.Popen] = {}
        for sub in ("log", "run", "locks", "rabbit/mnesia", "rabbit/log", "rabbit/home"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.conf = base / "cinder.conf"
        self.conf.write_text(self._conf(blockd_url, blockd_token))

    def _conf(self, blockd_url: str, blockd_token: str) -> str:
        svc, base = self.keystone.svc, self.base
        return f"""[DEFAULT]
host = testhost
my_ip = 127.0.0.1
state_path = {base}
enabled_backends = {BACKEND}
transport_url = rabbit://guest:guest@127.0.0.1:{self.rabbit_port}/
auth_strategy = keystone
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {self.api_port}
api_paste_config = {self.venv}/etc/cinder/api-paste.ini
log_dir = {base}/log
scheduler_driver_init_wait_time = 2
report_interval = 5
periodic_interval = 10
backend_stats_polling_interval = 10
default_volume_type = __DEFAULT__
[database]
connection = sqlite:///{base}/cinder.sqlite
[oslo_concurrency]
lock_path = {base}/locks
[coordination]
backend_url = file://{base}/coord
[key_manager]
backend = cinder.keymgr.conf_key_mgr.ConfKeyManager
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
[keystone_authtoken]
auth_type = password
auth_url = {self.keystone.auth_url}
www_authenticate_uri = {self.keystone.auth_url}
username = {svc.name}
password = {svc.password}
project_name = {svc.project_name}
user_domain_id = default
project_domain_id = default
service_token_roles_required = true
[service_user]
send_service_user_token = false
[{BACKEND}]
volume_driver = blockd.cinder_driver.ShoalISCSIDriver
volume_backend_name = {BACKEND}
shoal_blockd_url = {blockd_url}
shoal_blockd_token = {blockd_token}
"""

    # --- processes ----------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.base / "log" / f"{name}.out", "ab")  # noqa: SIM115 (the child keeps it)
        self.procs[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.cinder.env, **(env or {})},
            cwd=self.base,
            start_new_session=True,
        )
        log.close()

    def start(self) -> CinderStack:
        try:
            self._start_rabbit()
            bin_ = self.venv / "bin"
            subprocess.run(
                [str(bin_ / "cinder-manage"), "--config-file", str(self.conf), "db", "sync"],
                check=True, capture_output=True, timeout=READY_TIMEOUT_S,
            )  # fmt: skip
            shim = self.base / "run" / "cinder_wsgi_shim.py"
            shim.write_text(
                "import sys\n"
                f"sys.argv = ['cinder-api', '--config-file', {str(self.conf)!r}]\n"
                "from cinder.wsgi.api import application  # noqa: E402,F401\n"
            )
            config = ["--config-file", str(self.conf)]
            self._start("scheduler", [str(bin_ / "cinder-scheduler"), *config])
            self._start("volume", [str(bin_ / "cinder-volume"), *config])
            self._start(
                "api",
                [str(bin_ / "gunicorn"), "--bind", f"127.0.0.1:{self.api_port}",
                 "--workers", "1", "--threads", "4", "--worker-class", "gthread",
                 "--timeout", "120", "--no-control-socket",
                 "--pythonpath", str(shim.parent), "cinder_wsgi_shim:application"],
            )  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_rabbit(self) -> None:
        rabbit = self.base / "rabbit"
        (rabbit / "enabled_plugins").write_text("[].\n")
        (rabbit / "rabbitmq.conf").write_text("")
        env = {
            "HOME": str(rabbit / "home"),
            "RABBITMQ_NODENAME": f"shoal{self.rabbit_port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.rabbit_port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(_free_port()),  # a private epmd, never the machine's
            "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"),
            "RABBITMQ_LOG_BASE": str(rabbit / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(rabbit / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(rabbit / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "run" / "rabbit.pid"),
        }
        self._start("rabbit", [str(RABBITMQ_SERVER)], env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            self._check_alive()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.rabbit_port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("rabbitmq did not listen: " + self.log_tail("rabbit"))
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.base / "log" / f"{name}.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        """The API answers and both services have reported to the database."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(requests.RequestException, sqlite3.Error):
                if requests.get(self.url.removesuffix("/v3") + "/", timeout=2).status_code in (
                    200,
                    300,
                ):
                    with contextlib.closing(sqlite3.connect(self.base / "cinder.sqlite")) as db:
                        (up,) = db.execute(
                            "select count(*) from services where report_count > 0 and "
                            "binary in ('cinder-volume', 'cinder-scheduler')"
                        ).fetchone()
                    if up >= 2:
                        return
            time.sleep(0.5)
        raise RuntimeError("cinder stack not ready: " + self.log_tail("volume"))

    def stop(self) -> None:
        for name in ("api", "volume", "scheduler", "rabbit"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # workers left in the group
        marker = f"RABBITMQ_MNESIA_BASE={self.base / 'rabbit' / 'mnesia'}"
        for proc in psutil.process_iter(["name"]):  # epmd daemonized out of the group
            with contextlib.suppress(psutil.Error):
                if proc.info["name"] == "epmd" and marker in "\n".join(
                    f"{k}={v}" for k, v in proc.environ().items()
                ):
                    proc.kill()


class CinderAPI:
    """Block Storage v3 REST calls as Nova and the CLI make them (microversion 3.54)."""

    def __init__(self, url: str, token: str, project_id: str):
        self.base = f"{url}/{project_id}"
        self.session = requests.Session()
        self.session.headers.update({"OpenStack-API-Version": API_VERSION, "X-Auth-Token": token})

    def call(self, method: str, path: str, body=None, headers=None, expect=(200, 202, 204)):
        answer = self.session.request(
            method, self.base + path, json=body, headers=headers, timeout=60
        )
        if answer.status_code not in expect:
            raise AssertionError(f"{method} {path} -> {answer.status_code} {answer.text[:400]}")
        return answer.json() if answer.content else None

    def wait(self, kind: str, object_id: str, want: str = "available", timeout_s: float = 120):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.session.get(f"{self.base}/{kind}/{object_id}", timeout=30)
            if want == "gone" and answer.status_code == 404:
                return None
            if answer.status_code == 200:
                obj = answer.json()[kind[:-1]]
                if obj["status"] == want:
                    return obj
                assert not obj["status"].startswith("error"), obj
            time.sleep(0.25)
        raise AssertionError(f"{kind} {object_id} never became {want}")
