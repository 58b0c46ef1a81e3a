"""The crash engine against the zoned series (QCOW2_HARNESS_ZONED_QEMU): capture through
blklogwrites, every crash state judged by the persistence model on what the series reads
back, the log held to the persistence order, findings deduplicated with reproducers.
The QEMU tests skip with the reason when the build is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from qcow2harness.reference.persistence import stage_order_problems

from qcow2harness import qemu
from qcow2harness.crash.campaign import CampaignResult, CampaignSpec, rebuild_state, run_campaign
from qcow2harness.crash.capture import capture_qemu
from qcow2harness.crash.workload import get_workload, workload_from_json
from qcow2harness.dmlog import read_log, replay
from qcow2harness.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def zoned_build() -> str:
    reason = qemu.build_unavailable("zoned")
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    return "zoned"


@pytest.fixture(scope="module")
def small_campaign(zoned_build: str, tmp_path_factory: pytest.TempPathFactory,
                   ) -> CampaignResult:
    work = tmp_path_factory.mktemp("zones-small")
    return run_campaign(CampaignSpec("qemu", "zones-small", build=zoned_build,
                                     workdir=str(work), repair=()))


def _causes(result: CampaignResult) -> set[tuple[str, str]]:
    return {(f.prop, f.cause) for f in result.findings}


# ----- no QEMU needed ----------------------------------------------------------------------


def test_stage_order_rule() -> None:
    """PERS-1/PERS-2: data, then metadata, each flushed, before the wp."""
    assert stage_order_problems(["data", "flush", "metadata", "flush", "wp"], 4) == []
    assert stage_order_problems(["wp", "metadata", "data"], 0) == [
        ("PERS-1", "wp issued before its data"), ("PERS-2", "wp issued before its metadata")]
    assert stage_order_problems(["data", "metadata", "flush", "data", "wp"], 4) == [
        ("PERS-1", "wp issued before its data was flushed")]
    assert stage_order_problems(["data", "flush", "metadata", "wp", "flush"], 3) == [
        ("PERS-2", "wp issued before its metadata was flushed")]


def test_zoned_qemu_workloads_need_the_series_build(tmp_path: Path) -> None:
    workload = get_workload("zones-small", "qemu")
    assert workload.zoned is not None and workload.zoned.zone_capacity == workload.zoned.zone_size
    with pytest.raises(UsageError, match="--build zoned"):
        capture_qemu(workload, {}, str(tmp_path))
    with pytest.raises(UsageError, match="--build zoned"):
        capture_qemu(workload, {}, str(tmp_path), build="stock")
    with pytest.raises(UsageError, match="zone geometry"):
        capture_qemu(get_workload("allocation", "qemu"), {"zone.size": "1M"}, str(tmp_path))


def test_zoned_qemu_workload_json() -> None:
    zoned = {"size": "128k", "zone_size": "16k", "zone_capacity": "16k",
             "conventional_zones": 1}
    workload = workload_from_json({"writer": "qemu", "zoned": zoned, "ops": [
        {"op": "append", "zone": 2, "length": "1k"}, {"op": "close", "zone": 2},
        {"op": "reopen"}, {"op": "reset_all"}]})
    assert [op.qemu_command(workload.zoned) for op in workload.ops if op.kind != "reopen"] == [
        "zap -p 32768 1024", "zc 32768 16384", "zrs 0 131072"]
    assert not workload.ops[1].is_flush and workload.ops[2].is_flush
    for bad, why in [({"op": "append", "zone": 8, "length": 512}, "zone in 0..7"),
                     ({"op": "compress"}, "not a qemu zoned workload op")]:
        with pytest.raises(UsageError, match=why):
            workload_from_json({"writer": "qemu", "zoned": zoned, "ops": [bad]})
    with pytest.raises(UsageError, match="'zoned'"):
        workload_from_json({"writer": "qemu", "zoned": {**zoned, "zone_size": "3k"}})


# ----- against the series ---------------------------------------------------------------


def test_capture_runs_zone_commands_beside_the_model(zoned_build: str, tmp_path: Path) -> None:
    workload = get_workload("zones-append", "qemu")
    capture = capture_qemu(workload, {}, str(tmp_path), build=zoned_build)
    assert capture.build == "zoned" and "10.2" in capture.version
    assert capture.append_fill == 0xCD
    appends = [op for op in capture.ops if op.kind == "append"]
    assert appends and all(op.fill == 0xCD for op in appends)
    entries = list(read_log(capture.log))
    assert capture.boundaries[-1] == len(entries) and capture.ops[-1].kind == "close"
    # A reopen starts a session that appends to the log: the ops after it are logged,
    # and the whole log replayed onto the base gives the final image byte for byte.
    reopen = next(n for n, op in enumerate(capture.ops) if op.kind == "reopen")
    assert capture.boundaries[reopen + 1] > capture.boundaries[reopen]
    rebuilt = tmp_path / "rebuilt.qcow2"
    rebuilt.write_bytes(Path(capture.base).read_bytes())
    with open(rebuilt, "r+b") as stream:
        replay(entries, stream, 512)
    assert rebuilt.read_bytes() == (tmp_path / "image.qcow2").read_bytes()
    # The last op appends into a zone that holds data; the v9 code writes it at the zone
    # start, the live read-back says so, and the model stops judging from that op on.
    assert capture.diverged_at == len(workload.ops) - 2
    assert any("reads [0x4400, 0x4600) otherwise" in text for text in capture.disagreements)


def test_series_crash_states_judged_per_clause_and_deduplicated(
        small_campaign: CampaignResult) -> None:
    result = small_campaign
    assert result.exhaustive and result.states_checked == 25
    assert result.qemu_reads == result.states_checked, "every state read back by the series"
    assert result.deviations == ["WP-2"]
    assert not any(v.prop == "WP-2" for v in result.violations), "reported once, looked past"
    causes = _causes(result)
    assert ("PERS-1", "wp issued before its data (write)") in causes
    assert ("PERS-2", "wp issued before its metadata (write)") in causes
    assert ("PERS-4", "wp ahead of data after write") in causes
    assert ("PERS-4", "data above the recovered wp not zeros after reset") in causes
    # Flushed writes survive on the series (PERS-5), and wps come back from the window.
    assert not any(v.prop in ("PERS-3", "PERS-5", "open", "data") for v in result.violations)
    assert len(result.findings) == len(causes) < len(result.violations)
    wp_ahead = next(f for f in result.findings if f.cause == "wp ahead of data after write")
    assert wp_ahead.states > 1 and wp_ahead.example.state == "0:0"
    assert result.model_until is None


def test_reproducer_rebuilds_the_state_with_qemu_alone(small_campaign: CampaignResult,
                                                       tmp_path: Path) -> None:
    finding = next(f for f in small_campaign.findings
                   if f.cause == "wp ahead of data after write")
    lines = finding.reproducer
    assert lines[0].split()[1] == "create" and any(line.startswith("dd ") for line in lines)
    # Every line must succeed but the last, the read that shows the finding.
    script = "\n".join(["set -e", *lines[:-1], f"{lines[-1]} || echo exit=$?"])
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and "exit=1" in proc.stdout, proc.stderr
    # The wp of zone 1 is past its start, and the bytes below it are not the write's.
    assert "start: 0x20, len 0x20, cap 0x20, wptr 0x28" in proc.stdout
    assert "Pattern verification failed at offset 16384" in proc.stdout


def test_rebuilt_state_is_judged_the_same(zoned_build: str, small_campaign: CampaignResult,
                                          tmp_path: Path) -> None:
    spec = small_campaign.spec
    violations, where = rebuild_state(spec, "0:0", str(tmp_path / "state.qcow2"))
    assert "before FLUSH entry #2" in where
    assert [(v.prop, v.cause) for v in violations] == [
        ("PERS-4", "wp ahead of data after write")]


def test_cli_runs_the_zoned_campaign(zoned_build: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("qcow2-harness")
    if not cli.exists():
        pytest.skip("not run: console script not installed")
    out = tmp_path / "crash.json"
    proc = subprocess.run([str(cli), "crash", "--build", "zoned", "--workload", "zones-small",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "distinct finding(s)" in proc.stdout and "with qemu-img/qemu-io alone:" in proc.stdout
    report = json.loads(out.read_text())
    assert report["build"] == "zoned" and report["expected_deviations"] == ["WP-2"]
    assert {f["property"] for f in report["findings"]} == {"PERS-1", "PERS-2", "PERS-4"}
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "docs" / "schema" / "crash.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(report)
    bad = subprocess.run([str(cli), "crash", "--build", "zoned", "--expect", "WP-99"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "WP-99" in bad.stderr and "Traceback" not in bad.stderr
    env = {k: v for k, v in os.environ.items() if k != qemu.ZONED_ENV}
    missing = subprocess.run([str(cli), "crash", "--build", "zoned"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert missing.returncode == 1 and qemu.ZONED_ENV in missing.stderr
