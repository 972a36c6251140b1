"""The `shoal` command: help, unknown commands, and a real daemon started through it."""

from __future__ import annotations

import subprocess
import sys

SHOAL = [sys.executable, "-m", "shoal.cli"]


def test_help_lists_every_command():
    out = subprocess.run([*SHOAL, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("aio", "proxy", "objectd", "blockd"):
        assert command in out


def test_unknown_command_is_one_line_and_exit_2():
    result = subprocess.run([*SHOAL, "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "shoal: unknown command 'frobnicate' (try 'shoal --help')"
