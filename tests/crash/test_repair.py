"""Repair after a crash (crash/repair.py): QEMU's recovery paths run on a copy of a crash
state, and the repaired image is judged (check, flushed data, a write to every cluster).

The QEMU tests skip with a reason when qemu-img/qemu-io are missing.
"""

from __future__ import annotations

import hashlib
import pathlib
import shlex
import subprocess
import sys

import pytest
from poke import poke_file

from qcow2harness import qemu
from qcow2harness.crash.campaign import CampaignSpec, run_campaign
from qcow2harness.crash.expect import Ranges
from qcow2harness.crash.oracle import Problem, QemuReader, check_problems
from qcow2harness.crash.repair import (
    IMAGE,
    UNALLOCATED_WRITES,
    WRITE_LIMIT,
    RepairJudge,
    parse_modes,
    reproduce_steps,
    write_targets,
)
from qcow2harness.errors import UsageError
from qcow2harness.image import OFFSET_MASK

KiB = 1024
L2_OFFSET_MASK = OFFSET_MASK
COPIED = 1 << 63


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dirty_lazy_image(path: pathlib.Path) -> None:
    """A lazy-refcounts image whose qemu-io was killed after an unflushed write: the dirty
    bit is set and the stored refcounts lag behind the L2 entries."""
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
             "lazy_refcounts=on,cluster_size=4096", str(path), "1M")
    proc = subprocess.run([qemu.require_tool("qemu-io"), "-f", "qcow2", "-c",
                           "write -P 0x01 0 8k", "-c", "write -P 0x02 64k 4k", "-c",
                           "sigraise 9", str(path)], capture_output=True, text=True)
    assert proc.returncode != 0, "qemu-io was meant to die by SIGKILL"


def expectation_of_dirty_image() -> Ranges:
    """Neither write was flushed: each range may read old (zeros) or new bytes."""
    ranges = Ranges(1 << 20)
    ranges.update(0, 8 * KiB, lambda old: old | {0x01})
    ranges.update(64 * KiB, 68 * KiB, lambda old: old | {0x02})
    return ranges


def point_first_l2_entry_at_refcount_table(path: pathlib.Path) -> bool:
    """Damage: the first mapped guest cluster now points at the refcount table."""
    data = path.read_bytes()
    l1_offset = int.from_bytes(data[40:48], "big")
    refcount_table = int.from_bytes(data[48:56], "big")
    l2 = int.from_bytes(data[l1_offset:l1_offset + 8], "big") & L2_OFFSET_MASK
    if not l2:
        return False
    cluster = 1 << int.from_bytes(data[20:24], "big")
    for slot in range(cluster // 8):
        if int.from_bytes(data[l2 + 8 * slot:l2 + 8 * slot + 8], "big") & L2_OFFSET_MASK:
            poke_file(path, l2 + 8 * slot, refcount_table | COPIED, 8)
            return True
    return False


# --- without QEMU ---------------------------------------------------------------------


def test_modes_parse_and_reject_unknown_ones() -> None:
    assert parse_modes("auto") == ("auto",)
    assert parse_modes("auto,check-r-all,auto") == ("auto", "check-r-all")
    assert parse_modes("none") == ()
    with pytest.raises(UsageError, match="check-r-everything"):
        parse_modes("auto,check-r-everything")


def test_write_targets_are_bounded_deterministic_and_spread() -> None:
    cluster = 4096
    size = 4 << 20  # 1024 clusters
    allocated = [(0, 300 * cluster), (600 * cluster, 700 * cluster)]
    targets, sampled = write_targets(allocated, size, cluster)
    assert sampled and len(targets) == WRITE_LIMIT + UNALLOCATED_WRITES
    assert targets == write_targets(allocated, size, cluster)[0]
    starts = [offset // cluster for offset, _ in targets]
    used, free = starts[:WRITE_LIMIT], starts[WRITE_LIMIT:]
    assert len(set(starts)) == len(starts)
    assert all(c < 300 or 600 <= c < 700 for c in used)
    assert any(c >= 600 for c in used), "the sample spreads over every allocated run"
    assert all(300 <= c < 600 or c >= 700 for c in free)
    small, sampled = write_targets([(0, 3 * cluster)], size, cluster)
    assert not sampled and [o for o, _ in small[:3]] == [0, cluster, 2 * cluster]
    assert all(length == cluster for _, length in small)


def test_reproduce_line_runs_the_repair_steps_on_the_rebuilt_state() -> None:
    spec = CampaignSpec("qemu", "allocation", options={"cluster_size": "4096"},
                        repair=("check-r-all",))
    problem = Problem("repair/check-r-all/L2-2", "x",
                      (f"qemu-img check -r all -f qcow2 {IMAGE}", f"qcow2-harness check {IMAGE}"))
    line = spec.reproduce("3:0,2", problem, "my state.qcow2")
    rebuild, repair, check = line.split(" ; ")
    assert shlex.split(rebuild)[-4:] == ["--state", "3:0,2", "--out", "my state.qcow2"]
    assert "--repair check-r-all" in rebuild
    assert shlex.split(repair)[-1] == shlex.split(check)[-1] == "my state.qcow2"
    assert reproduce_steps([f"x {IMAGE}"], "a b") == ["x 'a b'"]
    assert "--repair" not in CampaignSpec("qemu", "allocation").command("0:")


# --- with QEMU ------------------------------------------------------------------------


@pytest.mark.qemu
def test_dirty_lazy_refcounts_image_is_clean_after_each_repair(qemu_tools: None,
                                                               tmp_path: pathlib.Path) -> None:
    image = tmp_path / "dirty.qcow2"
    dirty_lazy_image(image)
    before, report = check_problems(str(image))
    assert before == [] and any(f.clause == "HDR-12" for f in report.findings), \
        "a dirty lazy-refcounts image: allowed after a crash, but dirty"
    original = digest(image)
    with QemuReader() as reader:
        judge = RepairJudge(("auto", "check-r-all"), reader, set(), False)
        problems = judge.judge(str(image), expectation_of_dirty_image(), before)
    assert problems == [], problems
    assert judge.stats.states == 2 and judge.stats.changed == 2
    assert judge.stats.clusters_written >= 2 * (3 + UNALLOCATED_WRITES)
    assert digest(image) == original, "the state image itself is never modified"
    assert not (tmp_path / "dirty.qcow2.repaired").exists()


@pytest.mark.qemu
def test_a_repair_that_damages_the_image_is_reported_with_a_reproducer(
        qemu_tools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake recovery path (QEMU's, then an L2 entry aimed at the refcount table): the
    oracle reports it against the repair, never against the crash state itself."""
    genuine = RepairJudge._repair
    damaged: list[str] = []

    def damaging(self: RepairJudge, mode: str, copy: str, steps: list[str]) -> list[Problem]:
        problems = genuine(self, mode, copy, steps)
        if point_first_l2_entry_at_refcount_table(pathlib.Path(copy)):
            damaged.append(copy)
        return problems

    monkeypatch.setattr(RepairJudge, "_repair", damaging)
    spec = CampaignSpec("qemu", "allocation", options={"cluster_size": "4096"})
    result = run_campaign(spec)
    assert damaged, "some state had a mapped cluster to damage"
    assert all(v.prop.startswith("repair/auto/") for v in result.violations)
    failing = {v.state for v in result.violations}
    assert len(failing) == len(damaged)
    props = {v.prop for v in result.violations}
    assert any(p.startswith("repair/auto/OVL") for p in props), props
    assert "repair/auto/write" in props, "QEMU refuses the write onto its refcount table"
    for violation in result.violations:
        rebuild, *steps = violation.reproduce.split(" ; ")
        assert f"--state {violation.state} --out state.qcow2" in rebuild
        assert steps[0] == "qemu-io -f qcow2 -c flush state.qcow2"
    assert result.repair is not None and result.repair.states == result.states_checked


@pytest.mark.qemu
def test_write_step_catches_a_failing_guest_write(qemu_tools: None,
                                                  tmp_path: pathlib.Path) -> None:
    """A repaired image in which one guest cluster is mapped onto the refcount table:
    our check finds it, and the write step reports QEMU's write error, with a qemu-io
    script that fails the same way when run by hand."""
    image = tmp_path / "state.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
             str(image), "1M")
    qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x07 0 16k", str(image))
    assert point_first_l2_entry_at_refcount_table(image)
    with QemuReader() as reader:
        judge = RepairJudge(("auto",), reader, set(), False)
        problems = judge.judge(str(image), None, [])
    write = [p for p in problems if p.prop == "repair/auto/write"]
    assert write, problems
    assert "failed" in write[0].message
    # The write step's commands reproduce the failure on a copy, by hand.
    copy = tmp_path / "by-hand.qcow2"
    copy.write_bytes(image.read_bytes())
    script = reproduce_steps(write[0].steps, str(copy))[-1]
    assert script.startswith("qemu-io -f qcow2 -c 'write -P 0x21 0 4096'")
    proc = subprocess.run(shlex.split(script), capture_output=True, text=True)
    assert proc.returncode != 0 or "failed" in proc.stdout + proc.stderr


# --- QEMU 7.2 findings (crash/FINDINGS.md, "Repair after crash") ------------------------


def past_eof_crash_state(path: pathlib.Path) -> None:
    """The crash state of finding 3, by hand: a dirty lazy-refcounts image whose L2
    entries for guest [4k, 16k) point past the end of the file (the L2 update reached the
    disk, the data clusters did not)."""
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
             "lazy_refcounts=on,cluster_size=4096", str(path), "1M")
    subprocess.run([qemu.require_tool("qemu-io"), "-f", "qcow2", "-c", "write -P 0x01 0 16k",
                    "-c", "sigraise 9", str(path)], capture_output=True)
    with open(path, "r+b") as stream:
        stream.truncate(6 * 4096)  # header, L1, refcount table/block, L2, first data cluster


@pytest.mark.qemu
def test_oracle_reports_repair_over_l2_entries_past_eof(qemu_tools: None,
                                                        tmp_path: pathlib.Path) -> None:
    image = tmp_path / "state.qcow2"
    past_eof_crash_state(image)
    with QemuReader() as reader:
        judge = RepairJudge(("auto", "check-r-all"), reader, set(), False)
        props = {p.prop for p in judge.judge(str(image), None, [])}
    assert "repair/auto/RC-4" in props and "repair/auto/write" in props, props
    assert "repair/check-r-all/exit" in props, props


@pytest.mark.qemu
@pytest.mark.xfail(strict=True, reason="QEMU 7.2 bug: repairing a dirty image whose L2 "
                   "entries point past the end of the file rebuilds the refcount structures "
                   "on the very clusters those entries name; a guest write there then fails "
                   "('Preventing invalid write on metadata')")
def test_qemu_repair_with_l2_entries_past_eof_leaves_a_writable_image(
        qemu_tools: None, tmp_path: pathlib.Path) -> None:
    image = tmp_path / "state.qcow2"
    past_eof_crash_state(image)
    qemu.run("qemu-io", "-f", "qcow2", "-c", "flush", str(image))  # the repair on open
    problems, _ = check_problems(str(image))
    write = qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x03 8k 4k", str(image),
                     check=False)
    assert problems == [] and write.returncode == 0 and "failed" not in write.stdout


@pytest.mark.qemu
def test_oracle_reports_check_r_leaks_on_a_dirty_image(qemu_tools: None,
                                                       tmp_path: pathlib.Path) -> None:
    image = tmp_path / "dirty.qcow2"
    dirty_lazy_image(image)
    with QemuReader() as reader:
        judge = RepairJudge(("check-r-leaks",), reader, set(), False)
        problems = judge.judge(str(image), expectation_of_dirty_image(), [])
    props = {p.prop for p in problems}
    assert {"repair/check-r-leaks/RC-4", "repair/check-r-leaks/write"} <= props, problems
    assert "repair/check-r-leaks/data" not in props, "the data is intact until a write"


@pytest.mark.qemu
@pytest.mark.xfail(strict=True, reason="QEMU 7.2 bug: `qemu-img check -r leaks` on a dirty "
                   "lazy-refcounts image stops with 'need to rebuild refcount structures' "
                   "but clears the dirty bit, so nothing repairs the stale refcounts and the "
                   "next allocation overwrites guest data")
def test_qemu_check_r_leaks_keeps_a_dirty_image_safe(qemu_tools: None,
                                                     tmp_path: pathlib.Path) -> None:
    image = tmp_path / "dirty.qcow2"
    dirty_lazy_image(image)
    qemu.run("qemu-img", "check", "-r", "leaks", str(image), check=False)
    qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x09 128k 12k", str(image))
    read = qemu.run("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x01 0 8k", "-c",
                    "read -P 0x02 64k 4k", str(image), check=False)
    assert "Pattern verification failed" not in read.stdout + read.stderr


def refcount_past_eof_crash_state(path: pathlib.Path) -> None:
    """A crash state QEMU leaves without lazy refcounts: the refcount of a new cluster at
    the end of the file is on disk, its data and its L2 entry are not."""
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
             str(path), "1M")
    qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x01 0 4k", "-c",
             "write -P 0x02 4k 4k", str(path))
    data = path.read_bytes()
    l1_offset = int.from_bytes(data[40:48], "big")
    l2 = int.from_bytes(data[l1_offset:l1_offset + 8], "big") & L2_OFFSET_MASK
    last = int.from_bytes(data[l2 + 8:l2 + 16], "big") & L2_OFFSET_MASK
    assert last + 4096 == len(data), "the second data cluster ends the file"
    poke_file(path, l2 + 8, 0, 8)
    with open(path, "r+b") as stream:
        stream.truncate(last)


@pytest.mark.qemu
def test_oracle_reports_leaks_past_eof_left_by_check_r_all(qemu_tools: None,
                                                           tmp_path: pathlib.Path) -> None:
    image = tmp_path / "state.qcow2"
    refcount_past_eof_crash_state(image)
    before, _ = check_problems(str(image))
    assert before == [], "a leak is allowed in a crash state (RC-5)"
    with QemuReader() as reader:
        judge = RepairJudge(("auto", "check-r-all"), reader, set(), False)
        props = {p.prop for p in judge.judge(str(image), None, before)}
    assert props == {"repair/check-r-all/RC-5"}, props


@pytest.mark.qemu
@pytest.mark.xfail(strict=True, reason="QEMU 7.2: `qemu-img check -r all` compares refcounts "
                   "only for clusters inside the file, so a refcount left above zero past "
                   "the end of the file stays (a leak it reports as 'No errors')")
def test_qemu_check_r_all_repairs_leaks_past_eof(qemu_tools: None,
                                                 tmp_path: pathlib.Path) -> None:
    image = tmp_path / "state.qcow2"
    refcount_past_eof_crash_state(image)
    qemu.run("qemu-img", "check", "-r", "all", str(image))
    problems, report = check_problems(str(image))
    assert not any(f.clause == "RC-5" for f in report.findings)


@pytest.mark.qemu
def test_cli_repair_flag_and_state_rebuild(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    """`--state ID --out F --repair MODE` leaves F unrepaired and judges a copy."""
    cli = pathlib.Path(sys.executable).with_name("qcow2-harness")
    if not cli.exists():
        pytest.skip("console script not installed")
    out = tmp_path / "s.qcow2"
    bad = subprocess.run([str(cli), "crash", "--repair", "auto,fix-it"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "fix-it" in bad.stderr
    ok = subprocess.run([str(cli), "crash", "--workload", "allocation", "--qemu-opt",
                         "cluster_size=4096", "--repair", "check-r-all", "--state", "3:0",
                         "--out", str(out), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert out.exists() and not pathlib.Path(f"{out}.repaired").exists()
