"""Each auditor pass removes crash leftovers from every device's ``tmp`` (files older than
``tmp_reclaim_age_s``, read from the ``[objectd]`` table it shares with objectd) and keeps younger
ones, which may belong to a PUT in flight.

Method: ``shoal auditor --once`` as a real subprocess over real files whose mtimes are set with
``os.utime``; its JSON report and the files left are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HOUR_S = 3600.0


def _file(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_auditor_pass_removes_old_temp_files_only(tmp_path: Path):
    devices = tmp_path / "devices"
    stale = [_file(devices / dev / "tmp" / f"{dev}.tmp", 2 * HOUR_S) for dev in ("sda", "sdb")]
    young = _file(devices / "sda" / "tmp" / "young.tmp", HOUR_S - 300)
    config = tmp_path / "node.toml"
    config.write_text(
        "[objectd]\n"
        f'devices = "{devices}"\n'
        "mount_check = false\n"
        'hash_path_seed = "5eed5eed5eed5eed5eed5eed5eed5eed"\n'
        f"tmp_reclaim_age_s = {HOUR_S}\n"
        "[auditor]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "auditor", "--once", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tmp_reclaimed"] == 2 and report["errors"] == 0
    assert not any(path.exists() for path in stale)
    assert young.exists()
    assert "removed stale temp file" in done.stderr
