"""Fixtures: real objectd processes on temp directories."""

from __future__ import annotations

import itertools

import pytest
from objectd_harness import ObjectdProcess, start_objectd

_names = itertools.count()


@pytest.fixture(scope="module")
def objectd(tmp_path_factory) -> ObjectdProcess:
    """One objectd shared by a test module (tests use distinct names)."""
    process = start_objectd(tmp_path_factory.mktemp("objectd"), devices=("sda", "sdb"))
    yield process
    process.stop()


@pytest.fixture
def fresh_objectd(tmp_path) -> ObjectdProcess:
    """An objectd of its own, for tests that change its files or kill it."""
    process = start_objectd(tmp_path / "node", devices=("sda",))
    yield process
    process.stop()


@pytest.fixture
def unique() -> str:
    """A name no other test uses."""
    return f"n{next(_names)}"
