"""The Swift reference harness: a real Swift 2.38.3 all-in-one, and compare_swift end to end.

Method: real processes only. SwiftAIO is started in a temporary directory and used with plain
HTTP; compare_swift runs as its CLI with tiny workloads, against its own Swift and against a
second real Swift standing in for Shoal (FAKE Shoal: `shoal aio` does not exist yet), so the
Shoal, ratio and chart paths run too. About 60 s in all on a busy 2-core machine (one test slow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from benchmarks.plot import PANELS, plot_comparison, speedup
from benchmarks.swift_aio import SwiftAIO

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) or os.path.exists(f"/usr/bin/{tool}") for tool in
            ("memcached", "wrk", "curl")),
    reason="needs Debian memcached, wrk and curl (tests/system/packages.txt; install as root)",
)  # fmt: skip


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``text`` (a test's unique temporary path)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def request(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    with urllib.request.urlopen(
        urllib.request.Request(url, data=body, method=method, headers=headers or {}), timeout=30
    ) as response:
        return response.status, response.headers, response.read()


def test_speedup_above_one_means_shoal_is_better_for_rates_and_for_times() -> None:
    panels = {panel.key: panel for panel in PANELS}
    figures = {"swift_put_4k_ops_s": 100.0, "shoal_put_4k_ops_s": 300.0}
    figures |= {"swift_list_10k_s": 0.4, "shoal_list_10k_s": 0.1}
    assert speedup(figures, panels["put_4k_ops_s"]) == pytest.approx(3.0)
    assert speedup(figures, panels["list_10k_s"]) == pytest.approx(4.0)
    assert speedup(figures, panels["get_4k_ops_s"]) is None  # neither system measured it


def test_chart_has_one_panel_per_measured_quantity(tmp_path: Path) -> None:
    figures = {"swift_put_4k_ops_s": 80.0, "shoal_put_4k_ops_s": 250.0, "swift_list_10k_s": 0.3}
    figures["swift_list_objects"] = 10_000
    path = plot_comparison(figures, tmp_path / "chart.png", "test chart")
    assert path.read_bytes().startswith(PNG_MAGIC)


@needs_tools
def test_swift_aio_serves_both_policies_with_tempauth_and_stops_everything_on_error(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "saio"
    error = pytest.raises(RuntimeError, match="leave the with block")
    with error, SwiftAIO(workdir, workers=1) as swift:
        pids = swift.pids()
        status, headers, _ = request(
            swift.auth_url, headers={"X-Auth-User": swift.user, "X-Auth-Key": swift.key}
        )
        assert status == 200
        token, storage_url = headers["X-Auth-Token"], headers["X-Storage-Url"]
        info = json.loads(request(swift.url + "/info")[2])
        assert [p["name"] for p in info["swift"]["policies"]] == ["gold", "silver"]
        auth = {"X-Auth-Token": token}
        request(f"{storage_url}/c2", "PUT", auth | {"X-Storage-Policy": "silver"})
        request(f"{storage_url}/c2/o", "PUT", auth, b"hello swift")
        assert request(f"{storage_url}/c2/o", headers=auth)[2] == b"hello swift"
        swift.populate_container(storage_url.rsplit("/", 1)[1], "c2", ["a", "b"])
        listing = json.loads(request(f"{storage_url}/c2?format=json", headers=auth)[2])
        assert [row["name"] for row in listing] == ["a", "b", "o"]
        raise RuntimeError("leave the with block with an error")
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not processes_mentioning(str(workdir))
    assert (workdir / "log" / "proxy.log").stat().st_size > 0  # logs went to files, not syslog


@needs_tools
@pytest.mark.slow
def test_compare_swift_prints_both_systems_ratios_and_a_chart(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    results_dir = tmp_path / "results"
    with SwiftAIO(tmp_path / "standin", workers=1) as standin:  # FAKE Shoal: a second real Swift
        argv = [sys.executable, "-m", "benchmarks.compare_swift", "--workers", "1"]
        argv += ["--duration-s", "1", "--big-mib", "2", "--stream-mib", "8"]
        argv += ["--list-objects", "50", "--workdir", str(run_dir)]
        argv += ["--results-dir", str(results_dir), "--shoal-auth-url", standin.auth_url]
        argv += ["--shoal-proxy-pid", str(standin.proxy_pid)]
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    for system in ("swift", "shoal"):
        assert float(lines[f"{system}_put_4k_ops_s"]) > 0
        assert float(lines[f"{system}_get_1m_mb_s"]) > 0
        assert int(lines[f"{system}_list_objects"]) == 50
        assert float(lines[f"{system}_rss_idle_mb"]) > 10
    assert float(lines["swift_put_4k_cpu_ms_per_op"]) > 0
    assert float(lines["ratio_put_4k"]) > 0
    assert "ratio_rss_growth" not in "".join(lines)
    assert not processes_mentioning(str(run_dir))
    saved = json.loads((results_dir / "compare_swift.json").read_text())
    assert saved["figures"]["ratio_get_4k"] == pytest.approx(float(lines["ratio_get_4k"]), 1e-3)
    assert (results_dir / "compare_swift.png").read_bytes().startswith(PNG_MAGIC)


def test_backend_client_cost_prints_both_clients_and_their_ratio() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.backend_client_cost", "--requests", "200"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    figures = dict(line.split("=", 1) for line in run.stdout.split())
    assert set(figures) == {
        "aiohttp_client_us_per_exchange", "lean_client_us_per_exchange", "ratio_aiohttp_over_lean"
    }  # fmt: skip
    assert all(float(value) > 0 for value in figures.values())
