"""A real OpenStack Keystone for tests: PyPI ``keystone`` in its own venv, SQLite, fernet, gunicorn.

Public: :func:`keystone_fixture` (factory of a session-scoped pytest fixture), :class:`Keystone`
(what the fixture yields), :class:`TestUser`, :class:`KeystoneProcess`, :func:`start_keystone`,
:func:`ensure_keystone_venv`, :class:`KeystoneEnvError`. ``python -m tests.support.keystone``
starts one, prints its ids and start-up timings, and stops it on Enter (or ``--once``).

Why a separate venv: Keystone is an outside service with its own pins (eventlet, SQLAlchemy 2.1,
oslo.*); mixing them with Shoal's would test neither. The venv is built once per machine under
``/var/cache/shoal`` (root) or ``~/.cache/shoal``, named by a hash of what is installed, guarded by
a file lock, and marked complete by a stamp written last (a half-built venv is rebuilt).

Why a *seed*: the four ``keystone-manage`` steps and provisioning cost ~10-50 s of Python imports.
The first start does them, then snapshots the database and the fernet/credential keys next to the
venv; later starts copy the snapshot and only fix the identity endpoint URL (the port changes).

Layout of a running instance (a temp dir): ``etc/keystone.conf``, ``keystone.db``, ``fernet-keys/``,
``credential-keys/``, ``log/``. gunicorn runs in its own session, 1 worker x 4 threads, because
Keystone's in-process cache is per process: with two workers a revocation seen by one would not be
seen by the other. Stopping sends SIGINT (gunicorn's fast stop), then SIGKILL to the group after
STOP_TIMEOUT_S; only processes started here are signalled, by their recorded ids.

Identities provisioned (domain Default): project ``demo`` + user ``demo`` (role member), project
``other`` + user ``other`` (member), user ``reader`` (role reader on demo), project ``service`` +
user ``svc`` (role service), and the bootstrap ``admin`` (role admin on project admin).

Use (in any conftest or test module; all declarations share one Keystone per session)::

    from tests.support.keystone import keystone_fixture
    keystone = keystone_fixture()

    def test_x(keystone):
        token, body = keystone.issue_token("demo")          # or "other", "reader", "svc", "admin"
        config = keystone.keystone_config(cache_ttl_s=1)    # shoal.keystone.KeystoneConfig (svc)
        keystone.set_object_store_endpoint("http://127.0.0.1:8080/v1/AUTH_$(project_id)s")

Environment: ``SHOAL_CACHE_DIR`` (where the venv and seed live), ``SHOAL_KEYSTONE_VENV`` (a venv to
use as is), ``SHOAL_REQUIRE_KEYSTONE=1`` (fail instead of skipping when PyPI is unreachable).
Measured on the 2-core CI kind: cold (venv build + keystone-manage + provisioning) 43-58 s,
warm (venv and seed cached) 2.4-7 s, depending on load.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

KEYSTONE_VERSION = "30.0.0"
REQUIREMENTS = (f"keystone=={KEYSTONE_VERSION}", "gunicorn")
SUPPORT_DIR = Path(__file__).resolve().parent / "keystone"
CONSTRAINTS_FILE = SUPPORT_DIR / "keystone-constraints.txt"  # pip freeze of a working venv
SHIM_MODULE = "keystone_wsgi_shim"  # SUPPORT_DIR/keystone_wsgi_shim.py
PROVISION_VERSION = 1  # bump when _provision changes, so cached seeds are rebuilt

INSTALL_TIMEOUT_S = 480  # 15-30 s quiet, 90 s loaded; under pytest-timeout's 600 s per test
MANAGE_TIMEOUT_S = 300  # one keystone-manage step: ~2 s quiet, ~15 s loaded
START_TIMEOUT_S = 180  # first GET /v3 answered: 2 s quiet, 20 s loaded
STOP_TIMEOUT_S = 10.0  # SIGINT is gunicorn's fast stop; after this, SIGKILL
HTTP_TIMEOUT_S = 30.0  # one admin REST call (token issue with bcrypt is the slowest)
TOKEN_EXPIRATION_S = 3600  # Keystone's default; a whole test session fits in it
PASSWORD_HASH_ROUNDS = 4  # bcrypt's minimum: test speed-up (Keystone's default 12 ~ 0.25 s/check)
WORKER_THREADS = 4

_STAMP = ".shoal-ready"
_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec
_SEED_FILES = ("keystone.db", "fernet-keys", "credential-keys", "ids.json")

PYPI_PROBE_TIMEOUT_S = 10.0  # one GET of the index page for keystone, only after pip failed


class KeystoneEnvError(RuntimeError):
    """Keystone could not be installed or started. ``network`` is True when PyPI was unreachable."""

    def __init__(self, message: str, *, network: bool = False):
        super().__init__(message)
        self.network = network


# ------------------------------------------------------------------------------- the venv


def _cache_root() -> Path:
    override = os.environ.get("SHOAL_CACHE_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/shoal")
    return Path.home() / ".cache" / "shoal"


def _requirements_hash() -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(REQUIREMENTS).encode())
    digest.update(CONSTRAINTS_FILE.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:12]


def _venv_dir() -> Path:
    return _cache_root() / f"keystone-venv-{_requirements_hash()}"


def _run(cmd: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            cmd, check=True, capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.CalledProcessError as exc:
        output = f"{exc.stdout}\n{exc.stderr}"
        raise KeystoneEnvError(
            f"{' '.join(cmd)} exited {exc.returncode}:\n{output[-3000:]}",
            network=not _index_reachable(),
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise KeystoneEnvError(f"{' '.join(cmd)} took more than {timeout_s} s") from exc
    return done.stdout


def _index_reachable() -> bool:
    """Whether pip's index answers at all: tells "no network" (skip) from "broken" (fail)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/keystone/", timeout=PYPI_PROBE_TIMEOUT_S):
            return True
    except (OSError, urllib.error.URLError, ValueError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock: concurrent test sessions wait for one build instead of racing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_keystone_venv() -> Path:
    """A venv with ``keystone==KEYSTONE_VERSION`` and gunicorn (pinned by the constraints file).

    Raises:
        KeystoneEnvError: venv creation or pip failed (``network`` set if PyPI was unreachable).
    """
    override = os.environ.get("SHOAL_KEYSTONE_VENV")
    if override:  # someone else's venv: used as is, never rebuilt or deleted
        venv = Path(override)
        if not all((venv / "bin" / tool).is_file() for tool in ("keystone-manage", "gunicorn")):
            raise KeystoneEnvError(f"SHOAL_KEYSTONE_VENV={override} lacks keystone or gunicorn")
        return venv
    venv = _venv_dir()
    stamp = venv / _STAMP
    if stamp.is_file():
        return venv
    with _locked(venv.with_name(venv.name + ".lock")):
        if stamp.is_file():  # built by another session while we waited
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        # sys.executable may be a venv's python; venv then uses the base interpreter.
        _run([sys.executable, "-m", "venv", str(venv)], timeout_s=INSTALL_TIMEOUT_S)
        _run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                str(CONSTRAINTS_FILE),
                *REQUIREMENTS,
            ],
            timeout_s=INSTALL_TIMEOUT_S,
        )
        stamp.write_text("\n".join(REQUIREMENTS) + "\n")
    return venv


# ---------------------------------------------------------------------------- REST calls


def _call(
    url: str,
    method: str = "GET",
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One JSON request; returns (status, headers, document or None). Never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            raw = response.read()
            status, response_headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status, response_headers = exc.code, dict(exc.headers)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = {"raw": raw[:500].decode("utf-8", "replace")}
    return status, response_headers, doc


def _expect(result: tuple[int, dict[str, str], Any], *ok: int) -> tuple[int, dict[str, str], Any]:
    if result[0] not in ok:
        raise KeystoneEnvError(f"Keystone answered {result[0]}: {str(result[2])[:500]}")
    return result


def _password_auth(user: str, password: str, project: str | None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return {"auth": auth}


# ---------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_config(etc: Path, data: Path, *, expiration_s: int, log_name: str) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    (data / "log").mkdir(exist_ok=True)
    (etc / "keystone.conf").write_text(
        f"""[DEFAULT]
log_file = {data}/log/{log_name}
[database]
connection = sqlite:///{data}/keystone.db
[token]
provider = fernet
expiration = {expiration_s}
[fernet_tokens]
key_repository = {data}/fernet-keys
[fernet_receipts]
key_repository = {data}/fernet-keys
[credential]
key_repository = {data}/credential-keys
[identity]
password_hash_rounds = {PASSWORD_HASH_ROUNDS}
[cache]
enabled = true
backend = oslo_cache.dict
"""
    )


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGINT (gunicorn's fast stop) when the test
    process dies, even by SIGKILL, so no Keystone outlives its session. (Strictly: when the
    *thread* that started it ends, so start Keystone from the main thread, as pytest does.)"""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def _keystone_env(etc: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OS_KEYSTONE_CONFIG_DIR"] = str(etc)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # eventlet deprecation noise
    env.pop("PYTHONPATH", None)  # Shoal's paths must not leak into Keystone's interpreter
    return env


@dataclasses.dataclass
class KeystoneProcess:
    """One gunicorn serving Keystone; ``stop()`` is idempotent."""

    auth_url: str  # http://127.0.0.1:<port>/v3
    port: int
    process: subprocess.Popen[bytes]
    log_dir: Path
    token_expiration_s: int  # lifetime of the tokens it issues

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children, read from /proc."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except (OSError, ValueError):
            return []

    def pause(self) -> None:
        """SIGSTOP master and workers: connections are accepted by the kernel, never answered."""
        for pid in [self.pid, *self.worker_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in [self.pid, *self.worker_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        workers = self.worker_pids()
        self.resume()  # a stopped process would not act on SIGINT
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # its own session: only what it started
            self.process.wait(timeout=STOP_TIMEOUT_S)
        for pid in workers:  # orphaned workers, if any, by the ids recorded above
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts)


def _serve(
    venv: Path, etc: Path, data: Path, *, log_name: str, token_expiration_s: int
) -> KeystoneProcess:
    """Start gunicorn on a free loopback port and wait until ``GET /v3`` answers 200."""
    last_error = ""
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = _free_port()
        log_dir = data / "log"
        with open(log_dir / f"{log_name}.out", "ab") as out:
            process = subprocess.Popen(
                [
                    str(venv / "bin" / "gunicorn"),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "1",
                    "--threads",
                    str(WORKER_THREADS),
                    "--worker-class",
                    "gthread",
                    "--timeout",
                    "120",
                    "--no-control-socket",
                    "--pythonpath",
                    str(SUPPORT_DIR),
                    "--error-logfile",
                    str(log_dir / f"gunicorn-{log_name}"),
                    f"{SHIM_MODULE}:application",
                ],
                cwd=data,
                env=_keystone_env(etc),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        url = f"http://127.0.0.1:{port}/v3"
        server = KeystoneProcess(url, port, process, log_dir, token_expiration_s)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(server.auth_url, timeout=5) as response:
                    if response.status == 200:
                        return server
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        last_error = server.log_tail()
        server.stop()
    raise KeystoneEnvError(f"Keystone did not come up:\n{last_error}")


def _manage(venv: Path, etc: Path, *args: str) -> None:
    _run(
        [str(venv / "bin" / "keystone-manage"), "--config-file", str(etc / "keystone.conf"), *args],
        timeout_s=MANAGE_TIMEOUT_S,
        env=_keystone_env(etc),
    )


# ------------------------------------------------------------------------------ identities


@dataclasses.dataclass(frozen=True)
class TestUser:
    """A provisioned user with its one role assignment (domain Default)."""

    __test__ = False  # not a pytest test class despite the name

    name: str
    password: str
    user_id: str
    project_name: str
    project_id: str
    role: str


# key, user, project, role on that project
_PROVISIONED = (
    ("demo", "demo", "demo", "member"),
    ("other", "other", "other", "member"),
    ("reader", "reader", "demo", "reader"),
    ("svc", "svc", "service", "service"),
)


def _find(url: str, token: str, kind: str, name: str) -> str | None:
    _, _, doc = _expect(_call(f"{url}/{kind}?name={name}", token=token), 200)
    items = doc[kind]
    return items[0]["id"] if items else None


def _ensure(url: str, token: str, kind: str, name: str, body: dict[str, Any]) -> str:
    found = _find(url, token, kind, name)
    if found:
        return found
    singular = kind[:-1]
    _, _, doc = _expect(_call(f"{url}/{kind}", "POST", token=token, body={singular: body}), 201)
    return doc[singular]["id"]


def _provision(url: str, admin_password: str) -> dict[str, Any]:
    """Create roles, projects, users and assignments (idempotent); return the ids document."""
    _, headers, doc = _expect(
        _call(f"{url}/auth/tokens", "POST", body=_password_auth("admin", admin_password, "admin")),
        201,
    )
    admin_token = headers["X-Subject-Token"]
    roles = {
        name: _ensure(url, admin_token, "roles", name, {"name": name})
        for name in ("admin", "member", "reader", "service")
    }
    users: dict[str, dict[str, str]] = {
        "admin": {
            "name": "admin",
            "password": admin_password,
            "user_id": doc["token"]["user"]["id"],
            "project_name": "admin",
            "project_id": doc["token"]["project"]["id"],
            "role": "admin",
        }
    }
    for key, user, project, role in _PROVISIONED:
        project_id = _ensure(
            url,
            admin_token,
            "projects",
            project,
            {"name": project, "domain_id": "default", "description": f"{project} (Shoal tests)"},
        )
        password = secrets.token_urlsafe(12)
        user_id = _ensure(
            url,
            admin_token,
            "users",
            user,
            {"name": user, "domain_id": "default", "password": password},
        )
        _expect(
            _call(
                f"{url}/projects/{project_id}/users/{user_id}/roles/{roles[role]}",
                "PUT",
                token=admin_token,
            ),
            204,
        )
        users[key] = {
            "name": user,
            "password": password,
            "user_id": user_id,
            "project_name": project,
            "project_id": project_id,
            "role": role,
        }
    return {"roles": roles, "users": users}


def _point_identity_endpoints(url: str, admin_token: str) -> None:
    """Make the catalog's identity endpoints name this instance's URL (the port changes)."""
    _, _, doc = _expect(_call(f"{url}/services?type=identity", token=admin_token), 200)
    for service in doc["services"]:
        _, _, endpoints = _expect(
            _call(f"{url}/endpoints?service_id={service['id']}", token=admin_token), 200
        )
        for endpoint in endpoints["endpoints"]:
            _expect(
                _call(
                    f"{url}/endpoints/{endpoint['id']}",
                    "PATCH",
                    token=admin_token,
                    body={"endpoint": {"url": url + "/"}},
                ),
                200,
            )


# ------------------------------------------------------------------------------- Keystone


class Keystone:
    """A running Keystone with provisioned users, and helpers that talk to it.

    Attributes: ``auth_url`` (``http://127.0.0.1:<port>/v3``), ``users`` (key → TestUser: admin,
    demo, other, reader, svc, plus any made by :meth:`create_user`), ``roles`` (name → id),
    ``timings`` (seconds per start-up phase), ``base`` (its temp dir).
    """

    def __init__(self, venv: Path, base: Path, server: KeystoneProcess, ids: dict[str, Any]):
        self.venv = venv
        self.base = base
        self.server = server
        self.auth_url = server.auth_url
        self.roles: dict[str, str] = dict(ids["roles"])
        self.users: dict[str, TestUser] = {k: TestUser(**v) for k, v in ids["users"].items()}
        self.timings: dict[str, float] = {}
        self._replicas: list[KeystoneProcess] = []
        self._admin_token: str | None = None
        self._lock = threading.Lock()

    # identities
    @property
    def admin(self) -> TestUser:
        return self.users["admin"]

    @property
    def demo(self) -> TestUser:
        return self.users["demo"]

    @property
    def other(self) -> TestUser:
        return self.users["other"]

    @property
    def reader(self) -> TestUser:
        return self.users["reader"]

    @property
    def svc(self) -> TestUser:
        return self.users["svc"]

    def keystone_config(self, **overrides: Any):
        """A ``shoal.keystone.KeystoneConfig`` for the svc user against this Keystone."""
        from shoal.keystone import KeystoneConfig

        fields = {
            "auth_url": self.auth_url,
            "username": self.svc.name,
            "password": self.svc.password,
            "project_name": self.svc.project_name,
        }
        fields.update(overrides)
        return KeystoneConfig(**fields)

    # tokens
    def issue_token(
        self,
        user: TestUser | str,
        *,
        project: str | None = "",
        scope: dict[str, Any] | None = None,
        auth_url: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Password-auth token for ``user`` (key or TestUser) → (token, body).

        ``project`` defaults to the user's own project; None gives an unscoped token. ``scope``
        (a v3 scope document, e.g. ``{"system": {"all": True}}``) overrides ``project``.
        ``auth_url`` issues from another instance (a replica) sharing this one's keys.
        """
        who = self.users[user] if isinstance(user, str) else user
        body = _password_auth(
            who.name, who.password, who.project_name if project == "" else project
        )
        if scope is not None:
            body["auth"]["scope"] = scope
        _, headers, doc = _expect(
            _call(f"{auth_url or self.auth_url}/auth/tokens", "POST", body=body), 201
        )
        return headers["X-Subject-Token"], doc

    def revoke_token(self, token: str, *, as_token: str | None = None) -> None:
        """DELETE /v3/auth/tokens. By default the token revokes itself (allowed to anyone);
        ``as_token`` revokes with another token (admin may revoke any)."""
        _expect(
            _call(
                f"{self.auth_url}/auth/tokens",
                "DELETE",
                token=as_token or token,
                headers={"X-Subject-Token": token},
            ),
            204,
        )

    def admin_token(self) -> str:
        with self._lock:
            if self._admin_token is None:
                self._admin_token, _ = self.issue_token("admin")
            return self._admin_token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """An identity API call (``path`` under /v3), as admin unless ``token`` is given."""
        url = f"{self.auth_url}{path}"
        return _call(url, method, token=token or self.admin_token(), body=body, headers=headers)

    # identities made by tests
    def create_user(self, name: str, project: str, role: str) -> TestUser:
        """A new user with ``role`` on the existing ``project`` (names must be unique)."""
        admin = self.admin_token()
        project_id = _find(self.auth_url, admin, "projects", project)
        if project_id is None:
            raise KeystoneEnvError(f"no project {project!r}")
        password = secrets.token_urlsafe(12)
        user_id = _find(self.auth_url, admin, "users", name)
        if user_id is None:
            body = {"user": {"name": name, "domain_id": "default", "password": password}}
            _, _, doc = _expect(self.request("POST", "/users", body), 201)
            user_id = doc["user"]["id"]
        else:
            # made by an earlier call in this session: make the password ours. Keystone then
            # revokes the user's tokens, including any issued within the same second.
            body = {"user": {"password": password, "enabled": True}}
            _expect(self.request("PATCH", f"/users/{user_id}", body), 200)
            time.sleep(1.0)
        _expect(
            self.request("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.roles[role]}"),
            204,
        )
        user = TestUser(name, password, user_id, project, project_id, role)
        self.users[name] = user
        return user

    def set_user_enabled(self, user: TestUser, enabled: bool) -> None:
        """Disabling a user makes Keystone revoke every token it holds."""
        body = {"user": {"enabled": enabled}}
        _expect(self.request("PATCH", f"/users/{user.user_id}", body), 200)

    def set_object_store_endpoint(self, url_template: str) -> None:
        """Register (or move) the ``object-store`` service's endpoints, e.g.
        ``http://127.0.0.1:8080/v1/AUTH_$(project_id)s``, so swiftclient finds the proxy."""
        admin = self.admin_token()
        _, _, doc = _expect(self.request("GET", "/services?type=object-store"), 200)
        if doc["services"]:
            service_id = doc["services"][0]["id"]
        else:
            body = {"service": {"name": "swift", "type": "object-store"}}
            _, _, created = _expect(self.request("POST", "/services", body), 201)
            service_id = created["service"]["id"]
        _, _, endpoints = _expect(self.request("GET", f"/endpoints?service_id={service_id}"), 200)
        for endpoint in endpoints["endpoints"]:
            _expect(self.request("DELETE", f"/endpoints/{endpoint['id']}", token=admin), 204)
        for interface in ("public", "internal", "admin"):
            endpoint = {
                "service_id": service_id,
                "interface": interface,
                "region_id": "RegionOne",
                "url": url_template,
            }
            _expect(self.request("POST", "/endpoints", {"endpoint": endpoint}), 201)

    # more processes
    def spawn_replica(self, *, token_expiration_s: int = TOKEN_EXPIRATION_S) -> KeystoneProcess:
        """Another Keystone process on the same database and keys, with its own token lifetime.

        Tokens it issues are valid on the main instance until *their* expiry (fernet tokens
        carry it), which is how tests get tokens that expire in seconds without shortening the
        main instance's. Stopping or pausing a replica simulates an outage without disturbing
        the session's Keystone. Replicas are stopped with the fixture; ``stop()`` is idempotent.
        """
        index = len(self._replicas) + 1
        etc = self.base / f"etc-replica-{index}"
        _write_config(
            etc, self.base, expiration_s=token_expiration_s, log_name=f"replica-{index}.log"
        )
        replica = _serve(
            self.venv,
            etc,
            self.base,
            log_name=f"replica-{index}",
            token_expiration_s=token_expiration_s,
        )
        self._replicas.append(replica)
        return replica

    def stop(self) -> None:
        """Stop the replicas and the main process (idempotent)."""
        for replica in self._replicas:
            replica.stop()
        self.server.stop()


def _seed_dir() -> Path:
    return _cache_root() / f"keystone-seed-{_requirements_hash()}-p{PROVISION_VERSION}"


def _snapshot_seed(base: Path, ids: dict[str, Any], seed: Path) -> None:
    """Copy a freshly provisioned instance's state as the seed for later starts."""
    staging = seed.with_name(seed.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700)  # it holds keys and (test) passwords
    source = sqlite3.connect(base / "keystone.db")
    target = sqlite3.connect(staging / "keystone.db")
    with target:
        source.backup(target)  # consistent even though Keystone has the file open
    source.close()
    target.close()
    shutil.copytree(base / "fernet-keys", staging / "fernet-keys")
    shutil.copytree(base / "credential-keys", staging / "credential-keys")
    (staging / "ids.json").write_text(json.dumps(ids, indent=1))
    (staging / _STAMP).write_text("ok\n")
    shutil.rmtree(seed, ignore_errors=True)
    staging.rename(seed)


def start_keystone(base: Path | None = None) -> Keystone:
    """Install if needed, set up (from the seed when there is one), serve and provision.

    Raises:
        KeystoneEnvError: it could not be installed (``network``) or started.
    """
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    venv = ensure_keystone_venv()
    timings["venv_s"] = time.monotonic() - t0
    base = Path(base or tempfile.mkdtemp(prefix="shoal-keystone-"))
    etc = base / "etc"
    _write_config(etc, base, expiration_s=TOKEN_EXPIRATION_S, log_name="keystone.log")
    seed = _seed_dir()
    t1 = time.monotonic()
    if (seed / _STAMP).is_file():
        for name in _SEED_FILES:
            copy = shutil.copytree if (seed / name).is_dir() else shutil.copy2
            copy(seed / name, base / name)
        ids = json.loads((base / "ids.json").read_text())
        timings["setup_s"] = time.monotonic() - t1
        server = _serve(venv, etc, base, log_name="main", token_expiration_s=TOKEN_EXPIRATION_S)
        timings["serve_s"] = time.monotonic() - t1 - timings["setup_s"]
        keystone = Keystone(venv, base, server, ids)
        try:
            _point_identity_endpoints(keystone.auth_url, keystone.admin_token())
        except BaseException:
            keystone.stop()
            raise
    else:
        admin_password = secrets.token_urlsafe(12)
        for keys in ("fernet-keys", "credential-keys"):
            (base / keys).mkdir(mode=0o700, exist_ok=True)
        user, group = _user_and_group()
        _manage(venv, etc, "db_sync")
        _manage(venv, etc, "fernet_setup", "--keystone-user", user, "--keystone-group", group)
        _manage(venv, etc, "credential_setup", "--keystone-user", user, "--keystone-group", group)
        timings["setup_s"] = time.monotonic() - t1
        # endpoints get this instance's URL once the port is known
        server = _serve(venv, etc, base, log_name="main", token_expiration_s=TOKEN_EXPIRATION_S)
        timings["serve_s"] = time.monotonic() - t1 - timings["setup_s"]
        try:
            t2 = time.monotonic()
            _manage(
                venv,
                etc,
                "bootstrap",
                "--bootstrap-password",
                admin_password,
                "--bootstrap-username",
                "admin",
                "--bootstrap-project-name",
                "admin",
                "--bootstrap-role-name",
                "admin",
                "--bootstrap-region-id",
                "RegionOne",
                *(f"--bootstrap-{kind}-url={server.auth_url}/" for kind in _INTERFACES),
            )
            ids = _provision(server.auth_url, admin_password)
            timings["provision_s"] = time.monotonic() - t2
            with _locked(seed.with_name(seed.name + ".lock")):
                if not (seed / _STAMP).is_file():
                    _snapshot_seed(base, ids, seed)
        except BaseException:
            server.stop()
            raise
        keystone = Keystone(venv, base, server, ids)
    timings["total_s"] = time.monotonic() - t0
    keystone.timings = timings
    return keystone


_INTERFACES = ("admin", "internal", "public")


def _user_and_group() -> tuple[str, str]:
    import grp
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


# ------------------------------------------------------------------------- pytest fixture


class _Shared:
    """One Keystone per test session, however many conftests declare the fixture."""

    keystone: Keystone | None = None
    skip_reason: str | None = None
    error: BaseException | None = None
    users = 0
    lock = threading.Lock()


def _acquire() -> Keystone:
    with _Shared.lock:
        if _Shared.skip_reason is not None:
            pytest.skip(_Shared.skip_reason)
        if _Shared.error is not None:
            raise KeystoneEnvError(f"Keystone failed earlier: {_Shared.error}")
        if _Shared.keystone is None:
            try:
                _Shared.keystone = start_keystone()
            except KeystoneEnvError as exc:
                if exc.network and os.environ.get("SHOAL_REQUIRE_KEYSTONE") != "1":
                    _Shared.skip_reason = f"Keystone cannot be installed (no PyPI?): {exc}"[:2000]
                    pytest.skip(_Shared.skip_reason)
                _Shared.error = exc
                raise
            atexit.register(_Shared.keystone.stop)  # in case teardown never runs
        _Shared.users += 1
        return _Shared.keystone


def _release() -> None:
    with _Shared.lock:
        _Shared.users -= 1
        if _Shared.users == 0 and _Shared.keystone is not None:
            keystone, _Shared.keystone = _Shared.keystone, None
            keystone.stop()
            shutil.rmtree(keystone.base, ignore_errors=True)


def keystone_fixture(name: str = "keystone") -> Callable[..., Iterator[Keystone]]:
    """A session-scoped pytest fixture yielding a running, provisioned :class:`Keystone`.

    Use in a conftest or test module: ``keystone = keystone_fixture()``. All such fixtures in
    one session share one Keystone; it stops (and its temp dir goes) when the last is torn down.
    It skips with the reason when PyPI is unreachable, unless ``SHOAL_REQUIRE_KEYSTONE=1``.
    """

    @pytest.fixture(scope="session", name=name)
    def _keystone() -> Iterator[Keystone]:
        keystone = _acquire()
        try:
            yield keystone
        finally:
            _release()

    return _keystone


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.keystone [--once]``: start, print ids and timings, stop."""
    args = sys.argv[1:] if argv is None else argv
    t0 = time.monotonic()
    keystone = start_keystone()
    try:
        print(json.dumps({"auth_url": keystone.auth_url, "base": str(keystone.base)}))
        for key, user in keystone.users.items():
            print(f"{key}: {dataclasses.asdict(user)}")
        shown = " ".join(f"{k}={v:.1f}" for k, v in keystone.timings.items())
        print(f"timings: {shown} wall={time.monotonic() - t0:.1f}")
        if "--once" not in args:
            input("Keystone is running; press Enter to stop it. ")
    finally:
        keystone.stop()
        shutil.rmtree(keystone.base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
