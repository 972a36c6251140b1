"""The Keystone test fixture's promises, which other suites (proxy, blockd) build on.

Method: the session's real Keystone; each helper is checked through Keystone's own API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.keystone import Keystone, KeystoneProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_provisioned_users_have_their_role_on_their_project(keystone: Keystone):
    for key, project, role in [
        ("demo", "demo", "member"),
        ("other", "other", "member"),
        ("reader", "demo", "reader"),
        ("svc", "service", "service"),
        ("admin", "admin", "admin"),
    ]:
        _, body = keystone.issue_token(key)
        token = body["token"]
        assert token["project"]["name"] == project == keystone.users[key].project_name
        assert token["project"]["id"] == keystone.users[key].project_id
        assert role in {r["name"] for r in token["roles"]}


def test_object_store_endpoint_appears_in_new_tokens_catalog_per_project(keystone: Keystone):
    keystone.set_object_store_endpoint("http://127.0.0.1:8080/v1/AUTH_$(project_id)s")
    keystone.set_object_store_endpoint("http://127.0.0.1:18080/v1/AUTH_$(project_id)s")  # moved
    _, body = keystone.issue_token("demo")
    (service,) = [s for s in body["token"]["catalog"] if s["type"] == "object-store"]
    urls = {e["interface"]: e["url"] for e in service["endpoints"]}
    expected = f"http://127.0.0.1:18080/v1/AUTH_{keystone.demo.project_id}"
    assert urls == {"public": expected, "internal": expected, "admin": expected}


def test_identity_endpoint_in_the_catalog_is_this_instance(keystone: Keystone):
    _, body = keystone.issue_token("demo")
    (identity,) = [s for s in body["token"]["catalog"] if s["type"] == "identity"]
    assert {e["url"].rstrip("/") for e in identity["endpoints"]} == {keystone.auth_url}


def test_replica_tokens_are_valid_on_the_main_instance_until_their_own_expiry(
    keystone: Keystone, short_lived: KeystoneProcess
):
    token, body = keystone.issue_token("demo", auth_url=short_lived.auth_url)
    svc_token, _ = keystone.issue_token("svc")
    status, _, doc = keystone.request(
        "GET", "/auth/tokens", token=svc_token, headers={"X-Subject-Token": token}
    )
    assert status == 200 and doc["token"]["expires_at"] == body["token"]["expires_at"]


def test_keystone_dies_with_the_process_that_started_it(keystone: Keystone):
    """A test process killed with SIGKILL leaves no Keystone behind (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time; sys.path.insert(0, '.');"
        "from tests.support import keystone as k;"
        f"p = k._serve(k.Path({str(keystone.venv)!r}), k.Path({str(keystone.base / 'etc')!r}),"
        f" k.Path({str(keystone.base)!r}), log_name='orphan', token_expiration_s=60);"
        "print(p.pid, flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        gunicorn_pid = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(gunicorn_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(gunicorn_pid, signal.SIGKILL)
        raise AssertionError("gunicorn outlived the process that started it")


def test_without_a_reachable_package_index_the_failure_is_marked_network(tmp_path: Path):
    """What makes the Keystone tests skip (not fail) on a machine without PyPI."""
    script = (
        "from tests.support.keystone import KeystoneEnvError, ensure_keystone_venv\n"
        "try:\n    ensure_keystone_venv()\n"
        "except KeystoneEnvError as exc:\n    print('network' if exc.network else 'broken')\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key != "SHOAL_KEYSTONE_VENV"
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # no mirrors from /etc/pip.conf
        PIP_INDEX_URL="http://127.0.0.1:9/simple",  # the discard port: nothing answers
        PIP_NO_CACHE_DIR="1",
        PIP_RETRIES="0",
        SHOAL_CACHE_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip() == "network", done.stderr[-2000:]
