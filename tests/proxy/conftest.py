"""Fixtures of the proxy tests: one real ``shoal aio`` per session (4 objectd + the proxy)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import swiftclient

from tests.proxy.aio_harness import AioCluster


@pytest.fixture(scope="session")
def aio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AioCluster]:
    cluster = AioCluster(tmp_path_factory.mktemp("aio") / "data").start()
    try:
        yield cluster
    finally:
        cluster.stop()


def connect(
    aio: AioCluster, user: str = "test:tester", key: str = "testing"
) -> swiftclient.Connection:
    return swiftclient.Connection(aio.auth_url, user, key, retries=0)


@pytest.fixture
def swift(aio: AioCluster) -> swiftclient.Connection:
    return connect(aio)


@pytest.fixture
def container(swift: swiftclient.Connection) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    swift.put_container(name)
    return name
