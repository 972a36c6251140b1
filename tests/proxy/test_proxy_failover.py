"""Availability: a storage node stopped with SIGSTOP (alive to TCP, silent to HTTP, the worst
kind of failure) must not fail any request: writes go to a handoff, reads fail over to another
replica, also in the middle of a body. Method: a dedicated ``shoal aio`` with a short node timeout,
real signals to a real objectd, byte comparisons of what comes back."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import swiftclient

from objectd.layout import Layout
from ring import Ring
from tests.proxy.aio_harness import AioCluster
from tests.proxy.conftest import connect

NODE_TIMEOUT_S = 2.5  # above objectd's 1 s container-update wait, which a stopped container
# replica adds to the answers of healthy object nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AioCluster]:
    aio = AioCluster(
        tmp_path_factory.mktemp("failover") / "data",
        extra_args=["--node-timeout-s", str(NODE_TIMEOUT_S)],
    ).start()
    try:
        yield aio
    finally:
        aio.stop()


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def primary_pid(aio: AioCluster, container: str, obj: str, replica: int = 0) -> int:
    ring = Ring(aio.data / "rings" / "object.ring")
    _, nodes = ring.get_nodes("AUTH_test", container, obj)
    port = nodes[replica]["port"]
    return next(pid for pid, p in aio.node_ports().items() if p == port)


def test_a_stopped_node_fails_no_put_and_no_get_of_a_batch(cluster: AioCluster):
    conn = connect(cluster)
    conn.put_container("batch")
    before = {f"old-{i}": os.urandom(2048 + i) for i in range(20)}
    for name, data in before.items():
        conn.put_object("batch", name, data)
    victim = primary_pid(cluster, "batch", "old-0")
    # three PUT paths: whole and small (no footer), whole with a digest footer, streamed
    after = {f"new-{i}": os.urandom(2048 + i) for i in range(8)}
    after |= {f"mid-{i}": os.urandom(70_000 + i) for i in range(8)}
    after |= {f"big-{i}": os.urandom(3 * 2**20 + i) for i in range(4)}
    local = threading.local()

    def session() -> swiftclient.Connection:
        if not hasattr(local, "conn"):
            local.conn = connect(cluster)
        return local.conn

    def put(item: tuple[str, bytes]) -> str:
        return session().put_object("batch", item[0], item[1])

    def get(name: str) -> bytes:
        return session().get_object("batch", name)[1]

    with stopped(victim), concurrent.futures.ThreadPoolExecutor(6) as pool:
        etags = list(pool.map(put, after.items()))
        bodies = dict(zip(before, pool.map(get, before), strict=True))
        new_bodies = dict(zip(after, pool.map(get, after), strict=True))
    assert etags == [hashlib.md5(d).hexdigest() for d in after.values()]
    assert bodies == before
    assert new_bodies == after


def test_a_get_fails_over_in_the_middle_of_the_body(cluster: AioCluster):
    conn = connect(cluster)
    conn.put_container("mid")
    data = os.urandom(48 * 2**20)
    # The proxy reads from the first primary unless that node is error-limited; the batch test
    # above leaves its victim error-limited for a while, so the object must not start there.
    victim = primary_pid(cluster, "batch", "old-0")
    name = next(
        n for n in (f"big-{i}" for i in range(64)) if primary_pid(cluster, "mid", n) != victim
    )
    conn.put_object("mid", name, data)
    first = primary_pid(cluster, "mid", name)
    url = f"{conn.url}/mid/{name}"
    with requests.get(url, headers={"X-Auth-Token": conn.token}, stream=True, timeout=60) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_content(256 * 1024)
        received = [next(chunks)]
        with stopped(first):
            received.extend(chunks)
    body = b"".join(received)
    assert len(body) == len(data)
    assert hashlib.md5(body).hexdigest() == hashlib.md5(data).hexdigest()
    assert "resuming elsewhere" in cluster.log_path.read_text()  # it did fail over


def test_a_read_needs_only_one_live_replica_of_its_primaries(cluster: AioCluster):
    conn = connect(cluster)
    conn.put_container("one")
    data = os.urandom(3 * 2**20)
    conn.put_object("one", "big", data)
    with (
        stopped(primary_pid(cluster, "one", "big", 1)),
        stopped(primary_pid(cluster, "one", "big", 2)),
    ):
        _, body = conn.get_object("one", "big")
    assert body == data


def _copies(aio: AioCluster, ring: Ring, container: str, obj: str) -> list[str]:
    """The devices that hold a .data file of ``obj`` (looked up on disk, as objectd files it)."""
    part, _ = ring.get_nodes("AUTH_test", container, obj)
    found = []
    for dev in (d for d in ring.devs if d is not None):
        node = next(aio.data.glob(f"node*/devices/{dev['device']}"))
        layout = Layout(node.parent, ring.seed)
        directory = Path(
            layout.object_dir(dev["device"], part, 0, layout.hash_of("AUTH_test", container, obj))
        )
        if directory.is_dir() and any(p.suffix == ".data" for p in directory.iterdir()):
            found.append(dev["device"])
    return found


def test_writes_go_to_a_handoff_once_a_stopped_node_is_error_limited(cluster: AioCluster):
    """A stopped primary is cut after the quorum, which counts as its error; once it is
    error-limited, each write goes to the next handoff at once: three copies again."""
    conn = connect(cluster)
    conn.put_container("handoff")
    ring = Ring(cluster.data / "rings" / "object.ring")
    victim = primary_pid(cluster, "handoff", "probe")
    victim_port = cluster.node_ports()[victim]
    names = [
        name for name in (f"h-{i}" for i in range(400))
        if victim_port in [d["port"] for d in ring.get_nodes("AUTH_test", "handoff", name)[1]]
    ][:16]  # one connection: one worker, which error-limits the node after 10 errors  # fmt: skip
    with stopped(victim):
        for name in names:
            conn.put_object("handoff", name, name.encode())
        copies = _copies(cluster, ring, "handoff", names[-1])
    victim_device = next(d["device"] for d in ring.devs if d and d["port"] == victim_port)
    assert len(copies) == 3 and victim_device not in copies
