"""The systemd units of objectd and its background daemons pass ``systemd-analyze verify`` and
carry the hardening the issue asks for (dedicated user, NoNewPrivileges, ProtectSystem, restart
on failure). ExecStart is pointed at the ``shoal`` command of this environment, since
/usr/bin/shoal exists only in a package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = [
    f"shoal-{name}.service"
    for name in ("objectd", "replicator", "db-replicator", "auditor", "updater", "expirer")
]


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened_and_restarts_on_failure(name: str):
    settings = _settings((SYSTEMD / name).read_text())
    assert settings["User"] == "shoal" and settings["Group"] == "shoal"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["ReadWritePaths"] == "/srv/node"
    assert settings["Restart"] == "on-failure"
    command = settings["ExecStart"].split()
    assert command[:2] == ["/usr/bin/shoal", name[len("shoal-") : -len(".service")]]


def test_sysusers_file_creates_the_dedicated_user():
    lines = [
        line for line in (SYSTEMD / "shoal.sysusers").read_text().splitlines() if line[:1] == "u"
    ]
    assert lines and lines[0].split()[1] == "shoal"


def test_units_verify(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze (make system-packages)")
    shoal = Path(sys.executable).parent / "shoal"
    if not shoal.exists():
        pytest.skip("the shoal command is not installed in this environment")
    for name in UNITS:
        (tmp_path / name).write_text(
            (SYSTEMD / name).read_text().replace("/usr/bin/shoal", str(shoal))
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in UNITS:
        assert name not in result.stderr, result.stderr  # no warning about our units
