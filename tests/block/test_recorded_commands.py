"""Unit tests of blockd's command lines and of the parsing of their outputs, against outputs
recorded from the real tools (tests/block/recordings/README.md says where each came from).

Goal: pin the exact argv blockd runs (Cinder's LVM driver's command lines; tgtadm's) and the
parsing of real lvm2 2.03.16 / tgt 1.0.85 output, without root or a guest. Method:
``ReplayRunner`` answers each command with a recorded output and records every argv.
The same code paths run for real in test_reflink_tgt.py (tgt) and in the guest suite (LVM).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from blockd.backends.lvm_thin import LvmThinBackend, parse_lvs
from blockd.commands import CommandResult
from blockd.errors import NotFound
from blockd.model import Chap, Volume
from blockd.targets.tgt import TgtConf, TgtTarget, parse_conf, parse_show, render_conf
from shoal.units import GiB

RECORDINGS = Path(__file__).parent / "recordings"
LVS = (RECORDINGS / "lvs_volumes.json").read_text()
TGT_SHOW = (RECORDINGS / "tgtadm_show_target.txt").read_text()
VOLUME_1 = "11111111-1111-1111-1111-111111111111"
SNAPSHOT_2 = "22222222-2222-2222-2222-222222222222"
VOLUME_3 = "33333333-3333-3333-3333-333333333333"
NEW = "44444444-4444-4444-4444-444444444444"


class ReplayRunner:
    """Replays recorded outputs (not a fake of the tools: their real answers, played back).
    ``answers`` maps the first words of an argv to (rc, stdout, stderr); default rc 0, ''."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]):
        self.answers = answers
        self.argvs: list[tuple[str, ...]] = []

    async def run(self, *argv: str, check: bool = True) -> CommandResult:
        self.argvs.append(argv)
        rc, out, err = 0, "", ""
        for prefix, answer in self.answers.items():
            if argv[: len(prefix)] == prefix:
                rc, out, err = answer
                break
        assert not (check and rc), f"unexpected failure replayed for {argv}"
        return CommandResult(argv, rc, out, err)


def lvm(answers=None) -> tuple[LvmThinBackend, ReplayRunner]:
    runner = ReplayRunner(answers or {("lvs",): (0, LVS, "")})
    return LvmThinBackend(runner, "vgs1", "vgs1-pool", 20.0), runner


def test_lvs_json_report_is_parsed_into_sizes_and_tags():
    rows = {row["lv_name"]: row for row in parse_lvs(LVS)}
    assert rows["vgs1-pool"]["lv_size"] == 8136949760
    assert rows[f"_snapshot-{SNAPSHOT_2}"]["lv_tags"] == [f"shoal_vol.{VOLUME_1}"]
    assert rows[f"volume-{VOLUME_3}"]["lv_tags"] == []
    assert rows[f"volume-{VOLUME_3}"]["origin"] == f"_snapshot-{SNAPSHOT_2}"


def test_volumes_snapshots_and_capacity_come_from_the_lvs_report():
    backend, runner = lvm()
    volumes = asyncio.run(backend.list_volumes())
    snapshots = asyncio.run(backend.list_snapshots())
    capacity = asyncio.run(backend.capacity())
    assert volumes == [Volume(VOLUME_1, GiB), Volume(VOLUME_3, GiB)]
    assert [(s.id, s.volume_id) for s in snapshots] == [(SNAPSHOT_2, VOLUME_1)]
    assert (capacity.total_bytes, capacity.free_bytes) == (8136949760, 8136949760)
    assert (capacity.provisioned_bytes, capacity.volume_count) == (2 * GiB, 2)
    report = ("--reportformat", "json", "--units", "b", "--nosuffix")
    assert runner.argvs[0] == ("lvs", *report, "-o",
                               "lv_name,lv_size,lv_attr,origin,pool_lv,lv_tags,data_percent",
                               "vgs1")  # fmt: skip


def test_a_missing_lv_is_not_found():
    missing = (5, '  {"report": [{"lv": []}]}', '  Failed to find logical volume "vgs1/x"')
    backend, _ = lvm({("lvs",): missing})
    with pytest.raises(NotFound):
        asyncio.run(backend.get_volume(NEW))


def test_create_snapshot_and_clone_use_cinders_lvm_command_lines():
    backend, runner = lvm()
    asyncio.run(backend.create_volume(NEW, 2 * GiB))
    asyncio.run(backend.create_snapshot(SNAPSHOT_2, Volume(VOLUME_1, GiB)))
    assert runner.argvs == [
        ("lvcreate", "-y", "-T", "-V", f"{2 * GiB}b", "-n", f"volume-{NEW}", "vgs1/vgs1-pool"),
        ("lvcreate", "-y", "-s", "-n", f"_snapshot-{SNAPSHOT_2}",
         "--addtag", f"shoal_vol.{VOLUME_1}", f"vgs1/volume-{VOLUME_1}"),
    ]  # fmt: skip


def test_chap_pair_is_kept_in_lv_tags():
    backend, runner = lvm()
    assert asyncio.run(backend.get_chap(Volume(VOLUME_1, GiB))) is None  # only a user tag
    asyncio.run(backend.set_chap(Volume(VOLUME_1, GiB), "u" * 20, "p" * 16))
    assert runner.argvs[-1] == ("lvchange", "--addtag", "shoal_chapu." + "u" * 20,
                                "--addtag", "shoal_chapp." + "p" * 16,
                                f"vgs1/volume-{VOLUME_1}")  # fmt: skip


def test_tgtadm_show_is_parsed_into_targets_accounts_and_acls():
    targets = parse_show(TGT_SHOW)
    first = targets[f"iqn.2010-10.org.openstack:volume-{VOLUME_1}"]
    third = targets[f"iqn.2010-10.org.openstack:volume-{VOLUME_3}"]
    assert (first.tid, first.backing_store, first.accounts) == (
        1, "/tmp/rec/a.img", ["userA1234567890123456"]
    )  # fmt: skip
    assert first.initiators == [
        "iqn.2024-01.org.example:compute-1",
        "iqn.2024-01.org.example:compute-2",
    ]
    assert (third.tid, third.accounts, third.initiators) == (3, [], [])


def test_tgt_config_file_round_trips():
    conf = TgtConf("iqn.x:volume-a", "/v/volume-a", Chap("user", "pass"), ("iqn.y:1", "iqn.y:2"))
    text = render_conf(conf)
    assert "    incominguser user pass\n" in text and "    initiator-name iqn.y:2\n" in text
    assert parse_conf(text) == conf


def test_new_tgt_export_takes_the_next_tid_and_binds_account_and_initiator(tmp_path):
    runner = ReplayRunner({("tgtadm", "-C", "12000", "--lld", "iscsi", "--op", "show"):
                           (0, TGT_SHOW, "")})  # fmt: skip
    target = TgtTarget(runner, tmp_path, "iqn.2010-10.org.openstack:", 12000)
    iqn = asyncio.run(target.export(f"volume-{NEW}", "/v/x", "iqn.y:1", Chap("u", "p")))
    assert iqn == f"iqn.2010-10.org.openstack:volume-{NEW}"
    changes = [argv[6:] for argv in runner.argvs if argv[6] != "show"]
    assert changes == [
        ("new", "--mode", "target", "--tid", "4", "-T", iqn),
        ("new", "--mode", "logicalunit", "--tid", "4", "--lun", "1", "-b", "/v/x"),
        ("new", "--mode", "account", "--user", "u", "--password", "p"),
        ("bind", "--mode", "account", "--tid", "4", "--user", "u"),
        ("bind", "--mode", "target", "--tid", "4", "--initiator-name", "iqn.y:1"),
    ]
    assert parse_conf((tmp_path / f"volume-{NEW}.conf").read_text()).initiators == ("iqn.y:1",)
    assert (tmp_path / f"volume-{NEW}.conf").stat().st_mode & 0o077 == 0  # holds a secret


def test_tgtadm_show_lists_logged_in_sessions_and_unexport_closes_them(tmp_path):
    shown = (RECORDINGS / "tgtadm_show_session.txt").read_text()
    iqn = "iqn.2010-10.org.openstack:volume-55555555-5555-5555-5555-555555555555"
    state = parse_show(shown)[iqn]
    assert state.sessions == [(1, "iqn.2024-01.org.example:compute-1", [0])]
    assert state.initiators == ["iqn.2024-01.org.example:compute-1"]
    assert parse_show(TGT_SHOW)[f"iqn.2010-10.org.openstack:volume-{VOLUME_1}"].sessions == []

    runner = ReplayRunner({("tgtadm", "--lld", "iscsi", "--op", "show"): (0, shown, "")})
    target = TgtTarget(runner, tmp_path, "iqn.2010-10.org.openstack:")
    conf = TgtConf(iqn, "/v/x", Chap("u", "p"), ("iqn.2024-01.org.example:compute-1", "iqn.z:2"))
    (tmp_path / "volume-55555555-5555-5555-5555-555555555555.conf").write_text(render_conf(conf))
    asyncio.run(target.unexport("volume-55555555-5555-5555-5555-555555555555",
                                "iqn.2024-01.org.example:compute-1"))  # fmt: skip
    changes = [argv[4:] for argv in runner.argvs if argv[4] != "show"]
    assert changes == [
        ("bind", "--mode", "target", "--tid", "1", "--initiator-name", "iqn.z:2"),
        ("unbind", "--mode", "target", "--tid", "1", "--initiator-name",
         "iqn.2024-01.org.example:compute-1"),
        ("delete", "--mode", "conn", "--tid", "1", "--sid", "1", "--cid", "0"),
    ]  # fmt: skip
