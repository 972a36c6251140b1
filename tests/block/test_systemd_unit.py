"""systemd/shoal-blockd.service passes ``systemd-analyze verify`` (with ExecStart pointed at the
``shoal`` command this environment installed, since /usr/bin/shoal exists only in a package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "shoal-blockd.service"


def test_blockd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze (make system-packages)")
    shoal = Path(sys.executable).parent / "shoal"
    if not shoal.exists():
        pytest.skip("the shoal command is not installed in this environment")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/bin/shoal", str(shoal)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "shoal-blockd.service" not in result.stderr, result.stderr  # no warnings about it
