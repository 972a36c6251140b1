"""Fixtures of the Keystone tests: the session's real Keystone and a short-token replica."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.keystone import Keystone, KeystoneProcess, keystone_fixture

SHORT_TOKEN_EXPIRATION_S = 6  # long enough to validate once on a loaded machine, short to wait

keystone = keystone_fixture()


@pytest.fixture(scope="session")
def short_lived(keystone: Keystone) -> Iterator[KeystoneProcess]:
    """A second Keystone process on the same database and keys whose tokens live 6 s."""
    replica = keystone.spawn_replica(token_expiration_s=SHORT_TOKEN_EXPIRATION_S)
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture
def doomed(keystone: Keystone) -> Iterator[KeystoneProcess]:
    """A Keystone process a test may pause or stop (an outage that spares the session's one)."""
    replica = keystone.spawn_replica()
    try:
        keystone.issue_token("svc", auth_url=replica.auth_url)  # warm up: first request is slow
        yield replica
    finally:
        replica.stop()
