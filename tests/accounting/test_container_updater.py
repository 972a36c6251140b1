"""Account counts come from the container updater, as in Swift.

Method: a real `shoal aio` without background daemons; objects uploaded with python-swiftclient;
then `shoal container-updater --once` run on each node's config, as an operator's cron would,
and the account HEAD must show the objects and bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import swiftclient

from tests.proxy.aio_harness import AioCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    aio = AioCluster(tmp_path_factory.mktemp("aio"), extra_args=["--no-daemons"]).start()
    yield aio
    aio.stop()


def run_updaters(data) -> list[dict]:
    reports = []
    for config in sorted(data.glob("node*/objectd.toml")):
        result = subprocess.run(
            [sys.executable, "-m", "shoal.cli", "container-updater", "--once", "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return reports


def test_account_head_counts_objects_after_the_container_updater_runs(cluster):
    url, token = swiftclient.get_auth(cluster.auth_url, "test:tester", "testing")
    conn = swiftclient.Connection(preauthurl=url, preauthtoken=token)
    conn.put_container("counted")
    for i in range(3):
        conn.put_object("counted", f"o{i}", b"x" * (10 + i))
    reports = run_updaters(cluster.data)
    assert sum(r["reported"] for r in reports) >= 2  # a majority of the 3 container replicas
    headers = conn.head_account()
    assert headers["x-account-object-count"] == "3"
    assert headers["x-account-bytes-used"] == str(10 + 11 + 12)
    assert headers["x-account-container-count"] == "1"
    again = run_updaters(cluster.data)
    assert sum(r["reported"] for r in again) == 0  # nothing changed: nothing re-sent
    conn.delete_object("counted", "o0")
    run_updaters(cluster.data)
    assert conn.head_account()["x-account-object-count"] == "2"
