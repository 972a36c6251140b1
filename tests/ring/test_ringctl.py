"""The ringctl command line, run as a real process, as an operator would.

Method: subprocess calls of the installed console script against files in a temp dir; errors
must be one line on stderr, a non-zero status, and never a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

RINGCTL = shutil.which("ringctl") or f"{sys.prefix}/bin/ringctl"


def run(*args, cwd, check=True):
    result = subprocess.run([RINGCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def builder(tmp_path):
    run(
        "create",
        "object.builder",
        "--part-power",
        "8",
        "--replicas",
        "3",
        "--min-part-hours",
        "1",
        cwd=tmp_path,
    )
    for zone in (1, 2, 3, 4):
        run("add", "object.builder", f"r1z{zone}-127.0.0.1:60{zone}0/sdb", "100", cwd=tmp_path)
    return tmp_path


def test_rebalance_writes_the_ring_next_to_the_builder_and_reports_json(builder):
    out = json.loads(run("rebalance", "object.builder", "--json", cwd=builder).stdout)
    assert out["parts_moved"] == 3 * 256
    assert out["balance_pct"] < 1.0
    assert out["dispersion_pct"] == 0.0
    assert (builder / "object.ring").exists()
    show = json.loads(run("show", "object.builder", "--json", cwd=builder).stdout)
    assert [d["parts"] for d in show["devices"]] == [192, 192, 192, 192]
    lookup = json.loads(run("lookup", "object.ring", "AUTH_test/c/o", "--json", cwd=builder).stdout)
    assert len(lookup["primaries"]) == 3
    assert {d["id"] for d in lookup["handoffs"]}.isdisjoint({d["id"] for d in lookup["primaries"]})
    disp = json.loads(run("dispersion", "object.builder", "--json", cwd=builder).stdout)
    assert disp["tiers"]["zone"]["partitions_sharing"] == 0


def test_text_output_names_moved_partitions_balance_and_dispersion(builder):
    out = run("rebalance", "object.builder", cwd=builder).stdout
    assert "Reassigned 768 (100.00%) partition-replicas" in out
    assert "Balance is now" in out and "Dispersion is now" in out


def test_adding_a_device_then_rebalancing_moves_about_its_share(builder):
    run("rebalance", "object.builder", cwd=builder)
    run("pretend-min-part-hours-passed", "object.builder", cwd=builder)
    run(
        "add",
        "object.builder",
        "--region",
        "1",
        "--zone",
        "5",
        "--ip",
        "127.0.0.1",
        "--port",
        "6050",
        "--device",
        "sdb",
        "--weight",
        "100",
        cwd=builder,
    )
    out = json.loads(run("rebalance", "object.builder", "--json", cwd=builder).stdout)
    assert 0.95 * 153.6 <= out["parts_moved"] <= 1.05 * 153.6 + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "object.builder", "r1z1-127.0.0.1:6010/sdb", "100"), "duplicate device"),
        (("add", "object.builder", "nonsense", "100"), "invalid device"),
        (("add", "object.builder", "r1z9-127.0.0.1:6090/sdb", "-1"), "invalid weight"),
        (("set-weight", "object.builder", "d42", "10"), "no device matches"),
        (("remove", "object.builder", "r9"), "no device matches"),
        (("show", "missing.builder"), "does not exist"),
        (("lookup", "missing.ring", "a/c/o"), "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(builder, args, message):
    result = run(*args, cwd=builder, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_too_few_devices_for_the_replicas_is_refused(tmp_path):
    run("create", "o.builder", "--part-power", "4", "--replicas", "3", cwd=tmp_path)
    run("add", "o.builder", "r1z1-127.0.0.1:6010/sdb", "100", cwd=tmp_path)
    result = run("rebalance", "o.builder", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "too few devices" in result.stderr
    assert not (tmp_path / "o.ring").exists()


def test_a_corrupt_builder_is_a_clear_error(tmp_path):
    (tmp_path / "bad.builder").write_bytes(b"SHOALBLD\x00\x00\x00\x01" + b"\x00" * 40)
    result = run("show", "bad.builder", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "corrupt" in result.stderr and "Traceback" not in result.stderr


def test_bad_part_power_is_refused(tmp_path):
    result = run(
        "create", "x.builder", "--part-power", "40", "--replicas", "3", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert "part_power must be an integer 0..24" in result.stderr


def test_every_command_has_help(tmp_path):
    for command in (
        "create",
        "add",
        "remove",
        "set-weight",
        "rebalance",
        "show",
        "dispersion",
        "lookup",
    ):
        assert run(command, "--help", cwd=tmp_path).stdout.startswith("usage: ringctl")
