"""``shoal aio --daemons``: exactly the background daemons asked for, one per node; an unknown
name is one line and exit 2 before anything starts.

Method: a real ``shoal aio``; its children are read from /proc.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.proxy.aio_harness import AioCluster

NODES = 4


def _daemon_children(aio_pid: int) -> Counter[str]:
    """Command names (``shoal <name>``) of the aio's children, counted."""
    names: Counter[str] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            if ppid == aio_pid and "shoal.cli" in argv:
                names[argv[argv.index("shoal.cli") + 1]] += 1
    return names


def test_only_the_daemons_asked_for_run(tmp_path):
    aio = AioCluster(tmp_path / "data", extra_args=["--daemons", "updater,container-updater"])
    aio.start()
    try:
        assert aio.process is not None
        expected = {"objectd": NODES, "proxy": 1, "updater": NODES, "container-updater": NODES}
        deadline = time.monotonic() + 10  # the daemons start just after the proxy answers
        while (children := _daemon_children(aio.process.pid)) != expected:
            assert time.monotonic() < deadline, children
            time.sleep(0.1)
    finally:
        assert aio.stop() == 0


def test_an_unknown_daemon_is_one_line_and_exit_2(tmp_path):
    argv = [sys.executable, "-m", "shoal.cli", "aio", "--data", str(tmp_path / "d")]
    result = subprocess.run(
        [*argv, "--daemons", "updater,bogus"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("shoal aio: --daemons: unknown bogus (have: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # refused before anything was created
