"""The daemon commands refuse a bad configuration at start-up with one line naming the option
(exit 2), and print every option with its default. Method: ``shoal <daemon>`` subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _shoal(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shoal.cli", *argv], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("daemon", ["replicator", "db-replicator", "auditor", "updater", "expirer"])
def test_unknown_option_is_a_one_line_startup_error(daemon: str, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(f"[{daemon.replace('-', '_')}]\nconcurrency = 0\n")
    done = _shoal(daemon, "--once", "-c", str(config))
    assert done.returncode == 2
    assert "concurrency" in done.stderr and "Traceback" not in done.stderr


def test_print_defaults_lists_every_option():
    done = _shoal("replicator", "--print-defaults")
    assert done.returncode == 0
    for option in ("reclaim_age_s", "io_bytes_per_s_max", "hashes_max_age_s", "concurrency"):
        assert f"{option} = " in done.stdout
