"""The client side of the cluster tests: Swift API calls from inside the proxy's namespace, a
bounded mixed load, and the ledger of every write.

Public: :class:`SwiftClient`, :class:`Ledger`, :class:`LoadResult`, :func:`run_mixed_load`.

Threads of :class:`SwiftClient`'s pool entered the proxy's namespace when they started
(``setns`` is per thread), and each keeps its own ``requests`` session, so every socket they
open lives in that namespace. Each load worker owns its own object names, so the ledger knows
exactly what each read must return even while workers run concurrently.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from tests.cluster.netns import enter_namespace

ACCOUNT = "AUTH_test"
CONTAINER = "ledger"


class SwiftClient:
    """Authenticated Swift calls through the proxy, run on threads inside its namespace."""

    def __init__(self, namespace: str, proxy_url: str, threads: int = 8):
        self.proxy_url = proxy_url
        self._local = threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            threads, initializer=enter_namespace, initargs=(namespace,)
        )
        login = self.call(
            self._request, "GET", "/auth/v1.0",
            headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"},
        )  # fmt: skip
        assert login.status_code == 200, login.text
        self.token = login.headers["X-Auth-Token"]
        self.storage_path = "/v1/" + ACCOUNT

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` on a pool thread (inside the namespace) and wait for it."""
        return self.pool.submit(function, *args, **kwargs).result()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """On a pool thread: one request to the proxy (or an absolute URL)."""
        kwargs.setdefault("timeout", 30)
        url = path if path.startswith("http") else self.proxy_url + path
        return self._session().request(method, url, **kwargs)

    def swift(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        """On a pool thread: an authenticated request under the test account."""
        headers = {"X-Auth-Token": self.token, **kwargs.pop("headers", {})}
        return self._request(method, self.storage_path + path, headers=headers, **kwargs)

    def request(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        """From the test thread: :meth:`swift` on a pool thread."""
        return self.call(self.swift, method, path, **kwargs)

    def backend(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """From the test thread: a request straight to an objectd (inside the namespaces)."""
        return self.call(self._request, method, url, **kwargs)


@dataclasses.dataclass(slots=True)
class Entry:
    etag: str | None  # None: deleted (acknowledged)
    acknowledged: bool
    attempts: set[str] = dataclasses.field(default_factory=set)  # ETags of unacknowledged PUTs


class Ledger:
    """Every write of the test: the acknowledged state of each object, and what was tried."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def acknowledged_put(self, name: str, etag: str) -> None:
        with self._lock:
            self.entries[name] = Entry(etag, True)

    def attempted_put(self, name: str, etag: str) -> None:
        with self._lock:
            entry = self.entries.setdefault(name, Entry(None, False))
            entry.attempts.add(etag)

    def acknowledged_delete(self, name: str) -> None:
        with self._lock:
            self.entries[name] = Entry(None, True)

    def live(self) -> dict[str, str]:
        with self._lock:
            return {n: e.etag for n, e in self.entries.items() if e.acknowledged and e.etag}


@dataclasses.dataclass(slots=True)
class LoadResult:
    requests: int = 0
    stale_reads: int = 0  # an older version read back (a replica missed the newest write)
    failures: list[str] = dataclasses.field(default_factory=list)


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def _worker(client: SwiftClient, ledger: Ledger, prefix: str, operations: int,
            seed: int, result: LoadResult, lock: threading.Lock,
            stop: threading.Event) -> None:  # fmt: skip
    """On a pool thread: ``operations`` mixed requests on names owned by this worker."""
    rng = random.Random(seed)
    mine: dict[str, str | None] = {}  # name -> etag (None: deleted)
    history: dict[str, set[str]] = {}  # name -> every ETag ever sent under it
    stale = 0
    for step in range(operations):
        if stop.is_set():
            break
        names = list(mine)
        choice = rng.random()
        try:
            if not names or choice < 0.45:
                name = f"{prefix}-{step}" if not names or rng.random() < 0.7 else rng.choice(names)
                body = os.urandom(rng.choice((0, 100, 4000, 70_000, 300_000)))
                ledger.attempted_put(name, _md5(body))
                response = client.swift("PUT", f"/{CONTAINER}/{name}", data=body)
                ok = response.status_code == 201 and response.headers.get("ETag", "").strip(
                    '"'
                ) == _md5(body)
                history.setdefault(name, set()).add(_md5(body))
                if ok:
                    ledger.acknowledged_put(name, _md5(body))
                    mine[name] = _md5(body)
            elif choice < 0.80:
                name = rng.choice(names)
                response = client.swift("GET", f"/{CONTAINER}/{name}")
                expected = mine[name]
                ok = response.status_code == (404 if expected is None else 200)
                got = _md5(response.content) if response.status_code == 200 else None
                if got != expected and (got in history.get(name, ()) or expected is None):
                    ok = True  # an older version from a replica that missed the newest write:
                    stale += 1  # eventual consistency (Swift's too), not a failed request
                elif response.status_code == 200 and got != expected:
                    ok = False  # bytes that were never written under this name
            elif choice < 0.90:
                name = rng.choice(names)
                response = client.swift("DELETE", f"/{CONTAINER}/{name}")
                ok = (
                    response.status_code in (204, 404)
                    if mine[name] is None
                    else response.status_code == 204
                )
                if response.status_code in (204, 404):
                    ledger.acknowledged_delete(name)
                    mine[name] = None
            else:
                response = client.swift("GET", f"/{CONTAINER}", params={"prefix": prefix})
                ok = response.status_code in (200, 204)
            status = response.status_code
        except requests.RequestException as exc:
            ok, status = False, repr(exc)
        with lock:
            result.requests += 1
            if not ok:
                result.failures.append(f"{prefix} step {step}: {choice:.2f} -> {status}")
    with lock:
        result.stale_reads += stale


def run_mixed_load(client: SwiftClient, ledger: Ledger, *, workers: int, operations: int,
                   seed: int, during: Callable[[], None] | None = None,
                   tag: str = "w") -> LoadResult:  # fmt: skip
    """``workers`` workers × at most ``operations`` requests; ``during`` runs meanwhile in the
    test thread (the fault injection), and the load stops when it returns."""
    result = LoadResult()
    lock = threading.Lock()
    stop = threading.Event()
    futures = [
        client.pool.submit(_worker, client, ledger, f"{tag}{seed}-{i}", operations, seed * 100 + i,
                           result, lock, stop)
        for i in range(workers)
    ]  # fmt: skip
    try:
        if during is not None:
            during()
            stop.set()
        for future in futures:
            future.result(timeout=600)
    finally:
        stop.set()
        concurrent.futures.wait(futures, timeout=60)
    return result


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
