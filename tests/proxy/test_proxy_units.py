"""The proxy's systemd unit passes ``systemd-analyze verify`` and is hardened; its config loads
with every default and refuses bad values by name. (ExecStart is pointed at this environment's
``shoal`` command, since /usr/bin/shoal exists only in a package.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import load_config
from shoal.config import ConfigError

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "shoal-proxy.service"


def test_unit_is_hardened_and_starts_the_proxy():
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    assert settings["User"] == "shoal" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["Restart"] == "on-failure"
    assert settings["ExecStart"].split()[:2] == ["/usr/bin/shoal", "proxy"]


def test_unit_verifies(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze (make system-packages)")
    shoal = Path(sys.executable).parent / "shoal"
    if not shoal.exists():
        pytest.skip("the shoal command is not installed in this environment")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/bin/shoal", str(shoal)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_config_rejects_bad_values_by_name(tmp_path: Path):
    path = tmp_path / "proxy.toml"
    path.write_text("[proxy]\nauth = 'ldap'\n")
    with pytest.raises(ConfigError, match="auth"):
        load_config(path)
    path.write_text("[proxy]\npolicies = [{index = 0, name = 'a'}]\n")  # no default policy
    with pytest.raises(ConfigError, match="policies"):
        load_config(path)
    path.write_text("[proxy]\ntempauth_users = ['nocolon key']\n")
    with pytest.raises(ConfigError, match="tempauth_users"):
        load_config(path)
    path.write_text("[proxy]\nworkers = 3\n[keystone]\nauth_url = 'http://k:5000'\n")
    config = load_config(path)
    assert config.worker_count == 3 and config.keystone["auth_url"] == "http://k:5000"


def test_printed_defaults_are_a_valid_config(tmp_path: Path):
    shoal = Path(sys.executable).parent / "shoal"
    printed = subprocess.run([str(shoal), "proxy", "--print-defaults"], capture_output=True,
                             text=True, timeout=60, check=True).stdout  # fmt: skip
    path = tmp_path / "proxy.toml"
    path.write_text(printed)
    config = load_config(path)
    assert config.tempauth_users[1] == "test:tester testing .admin"
    assert [p.name for p in config.policy_list] == ["gold", "silver"]
