"""Real OpenStack Swift, installed from PyPI into its own venv, as the reference for benchmarks.

Public: ``ensure_swift_venv() -> Path``, ``swift_ring_builder_cmd() -> list[str]``,
``SWIFT_VERSION``. Swift must never share Shoal's venv: its pins (eventlet, greenlet, PyECLib) would
fight Shoal's, and the comparison must run the unmodified release. The venv is built once and cached
under ``benchmarks/.swift-venv`` (git-ignored); a stamp file records what was installed, so changing
``SWIFT_VERSION`` rebuilds it. A file lock makes concurrent callers (the ring benchmark and the
Swift comparison started at once) wait for one install instead of racing two pip runs into one tree.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

SWIFT_VERSION = "2.38.3"
# python-swiftclient is unpinned: it is only the `swift` CLI used for manual checks, not measured.
REQUIREMENTS = (f"swift=={SWIFT_VERSION}", "python-swiftclient")
# About 7 s on a warm pip cache, all wheels; a cold cache on a slow link still finishes well inside.
INSTALL_TIMEOUT_S = 600

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_VENV_DIR = BENCHMARKS_DIR / ".swift-venv"
_STAMP_NAME = ".shoal-installed"


class SwiftEnvError(RuntimeError):
    """The Swift venv could not be created (no network, pip failure): an outside problem."""


def _venv_dir() -> Path:
    """The cache location; ``SHOAL_SWIFT_VENV`` overrides it (e.g. a shared read-only cache)."""
    override = os.environ.get("SHOAL_SWIFT_VENV")
    return Path(override).resolve() if override else DEFAULT_VENV_DIR


def _stamp_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def _is_current(venv: Path) -> bool:
    stamp = venv / _STAMP_NAME
    return stamp.is_file() and stamp.read_text() == _stamp_text()


def _run(cmd: list[str]) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        raise SwiftEnvError(f"{' '.join(cmd)} failed:\n{exc.stdout}\n{exc.stderr}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SwiftEnvError(f"{' '.join(cmd)} took more than {INSTALL_TIMEOUT_S} s") from exc


def _build(venv: Path) -> None:
    """Create the venv from scratch; the stamp is written last, so a half-built venv is redone."""
    if venv.exists():
        shutil.rmtree(venv)
    # sys.executable may itself be a venv's python; venv then uses the base interpreter.
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = str(venv / "bin" / "pip")
    _run([pip, "install", "-q", "--disable-pip-version-check", *REQUIREMENTS])
    (venv / _STAMP_NAME).write_text(_stamp_text())


def ensure_swift_venv() -> Path:
    """Return a venv holding ``swift==SWIFT_VERSION`` and python-swiftclient, building it if needed.

    Returns:
        The venv directory; its ``bin/`` has ``python``, ``swift-ring-builder``, ``swift`` and the
        Swift server scripts.
    Raises:
        SwiftEnvError: venv creation or pip install failed or timed out.
    """
    venv = _venv_dir()
    if _is_current(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _is_current(venv):  # another process may have built it while we waited
            _build(venv)
    return venv


def swift_ring_builder_cmd() -> list[str]:
    """The argv prefix that runs Swift's ``swift-ring-builder`` from the reference venv.

    Usage: ``subprocess.run([*swift_ring_builder_cmd(), "object.builder", "create", "10", "3", "1"],
    check=True)`` creates a builder with part power 10, 3 replicas, min_part_hours 1.
    Raises SwiftEnvError like ``ensure_swift_venv``.
    """
    venv = ensure_swift_venv()
    return [str(venv / "bin" / "python"), str(venv / "bin" / "swift-ring-builder")]
