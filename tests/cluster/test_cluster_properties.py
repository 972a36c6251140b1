"""Durability on a real multi-host cluster with injected faults: the six properties of issue 5.

Method: 4 storage hosts (+1 spare) in network namespaces joined by veth pairs to a bridge, one
objectd per host, the proxy in its own namespace (``conftest``); clients speak the Swift API to
the proxy from inside its namespace. Faults are real: a host's link goes down, objectd gets
SIGKILL, bytes of object files are flipped, a device (loop-mounted ext4) fills up, a host joins
the ring. The background daemons run as ``shoal <daemon> --once`` inside each host's namespace.
Every write goes into a module-wide ledger that the last test checks in full. Tests run in file
order and share the cluster; each leaves it healthy.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time

import pytest

from objectd.diskio import DiskIO
from objectd.metadata import choose_files, read_file
from tests.cluster.netns_cluster import OBJECTD_PORT, NetnsCluster, StorageHost
from tests.cluster.swift_load import ACCOUNT, CONTAINER, Ledger, SwiftClient, run_mixed_load

pytestmark = pytest.mark.root

_IO = DiskIO()


# --- checks on the hosts' files ------------------------------------------------------------------
def _data_files(hash_dir) -> list[str]:
    try:
        names = os.listdir(hash_dir)
    except FileNotFoundError:
        return []
    chosen = choose_files(names)
    return [os.path.join(hash_dir, chosen.data)] if chosen.data else []


def _etag_on_disk(path: str, *, verify_body: bool) -> str | None:
    """The ETag recorded in a .data file, or None if the file is not whole and sound."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = read_file(_IO, fd, os.fstat(fd).st_size)
        if not verify_body:
            return data.metadata.get("ETag")
        digest = hashlib.md5(os.pread(fd, data.body_bytes, 0)).hexdigest()
        return digest if digest == data.metadata.get("ETag") else None
    except Exception:
        return None
    finally:
        os.close(fd)


def _assert_replicas_on_primaries(
    cluster: NetnsCluster, ledger: Ledger, reports: list[str] | None = None
) -> None:
    ring = cluster.ring()
    missing = []
    for name, entry in list(ledger.entries.items()):
        if not (entry.acknowledged and entry.etag):
            continue
        etag = entry.etag
        part = ring.get_part(ACCOUNT, CONTAINER, name)
        for dev in ring.get_part_nodes(part):
            host = cluster.host_of(dev)
            files = _data_files(cluster.object_dir(host, ACCOUNT, CONTAINER, name))
            found_etag = _etag_on_disk(files[0], verify_body=True) if files else None
            if found_etag not in entry.attempts | {etag}:
                everywhere = {}
                for other in cluster.storage:
                    hash_dir = cluster.object_dir(other, ACCOUNT, CONTAINER, name)
                    if hash_dir.exists():
                        everywhere[other.index] = [
                            (f, _etag_on_disk(str(hash_dir / f), verify_body=False)[:6])
                            for f in sorted(os.listdir(hash_dir))
                            if f.endswith(".data")
                        ]
                missing.append((name, host.index, etag[:6], everywhere))
    assert not missing, (
        f"{len(missing)} replicas missing or wrong on primaries: {missing[:5]}; "
        f"replicator reports: {reports}"
    )


def _assert_no_handoff_partitions(cluster: NetnsCluster) -> None:
    ring = cluster.ring()
    leftovers = []
    for host in cluster.storage:
        objects = host.device_path / "objects"
        if not objects.exists():
            continue
        for part_dir in objects.iterdir():
            if not part_dir.name.isdigit() or not any(len(p.name) == 3 for p in part_dir.iterdir()):
                continue
            primaries = {d["ip"] for d in ring.get_part_nodes(int(part_dir.name))}
            if host.ip not in primaries:
                leftovers.append(f"host {host.index} partition {part_dir.name}")
    assert not leftovers, f"handoff copies left: {leftovers}"


def _converge(cluster: NetnsCluster, passes: int = 2) -> list[str]:
    """What the daemons do over time: updates replayed, objects and DBs replicated. The
    replicator reports are returned (failure messages show them)."""
    cluster.run_everywhere("updater")
    reports = []
    for _ in range(passes):
        reports += cluster.run_everywhere("replicator")
    cluster.run_everywhere("db-replicator")
    return reports


def _wait_reachable(client: SwiftClient, host: StorageHost, timeout_s: float = 20.0) -> None:
    """A host that comes back is reachable from the other namespaces before the test goes on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            url = f"http://{host.ip}:{OBJECTD_PORT}/healthcheck"
            if client.backend("GET", url, timeout=1).status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"host {host.index} is not reachable after {timeout_s} s")


def _put(client: SwiftClient, ledger: Ledger, name: str, body: bytes) -> None:
    etag = hashlib.md5(body).hexdigest()
    ledger.attempted_put(name, etag)
    response = client.request("PUT", f"/{CONTAINER}/{name}", data=body)
    assert response.status_code == 201, response.text
    ledger.acknowledged_put(name, etag)


def _primaries(cluster: NetnsCluster, name: str) -> list[StorageHost]:
    ring = cluster.ring()
    return [
        cluster.host_of(d) for d in ring.get_part_nodes(ring.get_part(ACCOUNT, CONTAINER, name))
    ]


# --- the properties --------------------------------------------------------------------------------
def test_1_host_link_down_under_load_fails_no_request_and_replicas_converge(
    cluster, client, ledger
):
    victim = cluster.storage[2]

    def cut_then_restore():
        time.sleep(1.0)
        cluster.network.set_link(victim.host, up=False)
        time.sleep(6.0)

    try:
        result = run_mixed_load(
            client, ledger, workers=4, operations=400, seed=1, during=cut_then_restore
        )
    finally:
        cluster.network.set_link(victim.host, up=True)
    assert result.requests > 50 and result.failures == [], result.failures[:10]
    _wait_reachable(client, victim)
    reports = _converge(cluster)
    _assert_replicas_on_primaries(cluster, ledger, reports)
    _assert_no_handoff_partitions(cluster)


def _flip_one_replica(cluster: NetnsCluster, name: str, offset: int, index: int = 0) -> StorageHost:
    """Flip the byte at ``offset`` of one primary's copy of ``name``; the damaged host."""
    holders = [
        h for h in _primaries(cluster, name)
        if _data_files(cluster.object_dir(h, ACCOUNT, CONTAINER, name))
    ]  # fmt: skip
    host = holders[index % len(holders)]
    (path,) = _data_files(cluster.object_dir(host, ACCOUNT, CONTAINER, name))
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))
    return host


def test_2_corrupt_object_is_never_served_and_is_repaired(cluster, client, ledger):
    # objects of at most 64 KiB are MD5-checked by objectd before a byte is sent
    bodies = {f"corrupt-{i}": os.urandom(size) for i, size in enumerate((50, 3000, 60_000))}
    for name, body in bodies.items():
        _put(client, ledger, name, body)
    damaged = {_flip_one_replica(cluster, name, len(body) // 2, i)
               for i, (name, body) in enumerate(bodies.items())}  # fmt: skip
    for _ in range(3):
        for name, body in bodies.items():
            response = client.request("GET", f"/{CONTAINER}/{name}")
            assert response.status_code == 200
            assert hashlib.md5(response.content).hexdigest() == hashlib.md5(body).hexdigest(), name
    # a large object too: the auditor finds it before any reader does
    large = os.urandom(900_000)
    _put(client, ledger, "corrupt-large", large)
    damaged.add(_flip_one_replica(cluster, "corrupt-large", 450_000))
    # the small ones were quarantined by the reads above; the large one by the auditor
    audits = [json.loads(host.run_daemon("auditor")) for host in damaged]
    assert sum(a["quarantined"] for a in audits) >= 1 and not any(a["errors"] for a in audits)
    reports = _converge(cluster, passes=1)
    _assert_replicas_on_primaries(cluster, ledger, reports)


def test_2b_corrupt_large_object_is_never_served_complete(cluster, client, ledger):
    body = os.urandom(900_000)
    _put(client, ledger, "corrupt-read-large", body)
    time.sleep(0.6)  # the third replica lands after the quorum answer
    holders = [h for h in _primaries(cluster, "corrupt-read-large")
               if _data_files(cluster.object_dir(h, ACCOUNT, CONTAINER, "corrupt-read-large"))]  # fmt: skip
    for index in range(len(holders) - 1):  # every replica but one is corrupt
        _flip_one_replica(cluster, "corrupt-read-large", 450_000, index)
    try:
        for _ in range(len(holders)):
            try:
                response = client.request("GET", f"/{CONTAINER}/corrupt-read-large")
            except Exception:
                continue  # a cut stream is an acceptable answer; corrupt bytes are not
            if response.status_code == 200 and len(response.content) == len(body):
                assert response.content == body
    finally:
        cluster.run_everywhere("auditor")
        _converge(cluster, passes=1)


def test_3_sigstop_then_kill_9_during_puts_loses_no_acknowledged_write(cluster, client, ledger):
    rng = random.Random(3)
    victim = cluster.storage[1]

    def kill_repeatedly():
        time.sleep(0.5)
        victim.signal(signal.SIGSTOP)  # first a hung host: the proxy times out and moves on
        time.sleep(2.0)
        victim.signal(signal.SIGCONT)
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 1.5))
            victim.kill()
            time.sleep(rng.uniform(0.2, 0.8))
            victim.start()
        time.sleep(0.5)
        _wait_reachable(client, victim)

    result = run_mixed_load(
        client, ledger, workers=4, operations=400, seed=3, during=kill_repeatedly
    )
    assert result.requests > 20
    # nothing half-written on the killed host's disk
    for directory, _, files in os.walk(victim.device_path / "objects"):
        for name in files:
            if name.endswith(".data"):
                assert _etag_on_disk(os.path.join(directory, name), verify_body=True), name
    reports = _converge(cluster)
    _assert_ledger_readable(client, ledger)
    _assert_replicas_on_primaries(cluster, ledger, reports)


def _assert_ledger_readable(client: SwiftClient, ledger: Ledger) -> None:
    """Every acknowledged write reads back whole with its ETag (or with a later write's, which
    may have landed unacknowledged); an unacknowledged write is absent or whole."""
    entries = list(ledger.entries.items())
    futures = [client.pool.submit(client.swift, "GET", f"/{CONTAINER}/{n}") for n, _ in entries]
    for (name, entry), future in zip(entries, futures, strict=True):
        response = future.result()
        got = hashlib.md5(response.content).hexdigest() if response.status_code == 200 else None
        if entry.acknowledged and entry.etag:
            assert response.status_code == 200, name
            assert got in entry.attempts | {entry.etag}, name
        elif entry.acknowledged:  # deleted, unless a later unacknowledged PUT landed
            assert got is None or got in entry.attempts, name
        else:  # an unacknowledged PUT may land, but only whole
            assert got is None or got in entry.attempts, name


def test_4_full_device_answers_507_and_the_write_lands_on_a_handoff(cluster, client, ledger):
    full = cluster.storage[0]
    filler = full.device_path / "filler"
    stats = os.statvfs(full.device_path)
    with open(filler, "wb") as f:  # leave ~512 KiB: any 1 MiB object is refused (507)
        os.posix_fallocate(f.fileno(), 0, stats.f_bavail * stats.f_frsize - 512 * 1024)
        os.fsync(f.fileno())
    try:
        names = [n for n in (f"full-{i}" for i in range(200)) if full in _primaries(cluster, n)][:3]
        assert names
        part = cluster.ring().get_part(ACCOUNT, CONTAINER, names[0])
        direct = client.backend(
            "PUT",
            f"http://{full.ip}:{OBJECTD_PORT}/{full.device}/{part}/{ACCOUNT}/{CONTAINER}/{names[0]}",
            data=os.urandom(1024 * 1024),
            headers={
                "X-Timestamp": f"{time.time():.5f}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert direct.status_code == 507
        for name in names:
            _put(client, ledger, name, os.urandom(1024 * 1024))
            holders = [
                h
                for h in cluster.storage
                if _data_files(cluster.object_dir(h, ACCOUNT, CONTAINER, name))
            ]
            assert full not in holders and len(holders) >= 3, (name, [h.index for h in holders])
            assert [h for h in holders if h not in _primaries(cluster, name)], "no handoff copy"
    finally:
        filler.unlink()
    _converge(cluster)
    _assert_replicas_on_primaries(cluster, ledger)
    _assert_no_handoff_partitions(cluster)


def test_5_adding_a_host_under_load_fails_no_request_and_moves_data(cluster, client, ledger):
    spare = cluster.storage[cluster.host_count]

    def grow():
        time.sleep(1.0)
        cluster.add_host_to_rings(spare)
        time.sleep(16.0)  # the proxy rereads its rings every 15 s
        cluster.run_everywhere("replicator")
        cluster.run_everywhere("db-replicator")

    result = run_mixed_load(client, ledger, workers=3, operations=2000, seed=5, during=grow)
    assert result.requests > 50 and result.failures == [], result.failures[:10]
    _converge(cluster)
    assert spare in cluster.in_ring()
    assert any((spare.device_path / "objects").glob("*/*/*/*.data"))
    _assert_replicas_on_primaries(cluster, ledger)
    _assert_no_handoff_partitions(cluster)


def test_6_every_write_of_the_ledger_is_readable_at_the_end(cluster, client, ledger):
    reports = _converge(cluster, passes=1)
    assert len(ledger.entries) > 100
    _assert_ledger_readable(client, ledger)
    listing = client.request("GET", f"/{CONTAINER}", params={"format": "json"}).json()
    listed = {row["name"] for row in listing}
    assert set(ledger.live()) <= listed and listed <= set(ledger.entries)
    _assert_replicas_on_primaries(cluster, ledger, reports)
