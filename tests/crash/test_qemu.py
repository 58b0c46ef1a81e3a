"""Capture from the real QEMU and a small QEMU crash campaign (skipped without QEMU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qcow2harness.crash.campaign import CampaignSpec, rebuild_state, run_campaign
from qcow2harness.crash.capture import capture_qemu
from qcow2harness.crash.workload import get_workload
from qcow2harness.dmlog import read_log

pytestmark = pytest.mark.qemu


def test_capture_logs_writes_flushes_and_op_boundaries(qemu_tools: None, tmp_path: Path) -> None:
    workload = get_workload("allocation", "qemu")
    capture = capture_qemu(workload, {"cluster_size": "4096"}, str(tmp_path))
    assert "7." in capture.version or "version" in capture.version
    entries = list(read_log(capture.log))
    assert any(e.is_flush for e in entries) and any(e.is_write for e in entries)
    assert capture.boundaries == sorted(capture.boundaries)
    assert capture.boundaries[-1] == len(entries)
    assert capture.ops[-1].kind == "close"
    # The first op's data (fill 0x01, 8 KiB at guest 0) is in the log before its boundary.
    first = [e for e in entries[: capture.boundaries[0]] if e.is_write]
    assert any(e.data == b"\x01" * len(e.data) and len(e.data) >= 4096 for e in first)
    # Every `flush` op ends with a FLUSH entry.
    for number, op in enumerate(capture.ops):
        if op.kind == "flush":
            assert entries[capture.boundaries[number] - 1].is_flush
    # The log replayed onto the base gives the final image byte for byte.
    from qcow2harness.dmlog import replay

    rebuilt = tmp_path / "rebuilt.qcow2"
    rebuilt.write_bytes(Path(capture.base).read_bytes())
    with open(rebuilt, "r+b") as stream:
        replay(entries, stream, 512)
    image = Path(capture.base).with_name("image.qcow2")
    assert rebuilt.read_bytes() == image.read_bytes()


def test_small_qemu_campaign_is_clean(qemu_tools: None) -> None:
    result = run_campaign(CampaignSpec("qemu", "allocation", options={"cluster_size": "4096"}))
    assert result.exhaustive and result.states_checked > 30
    assert result.qemu_reads > result.states_checked, "guest data was read through QEMU"
    assert result.violations == [], [v.to_json() for v in result.violations[:3]]


def test_oracle_has_teeth_under_cache_unsafe(qemu_tools: None) -> None:
    """cache=unsafe drops guest flushes by design: acknowledged data may be lost."""
    result = run_campaign(CampaignSpec("qemu", "allocation", max_states=30,
                                       options={"cache": "unsafe"}))
    assert result.epochs == 1
    assert any(v.prop == "data" for v in result.violations)


def test_discard_then_reuse_is_reported_and_reproduced(qemu_tools: None,
                                                       tmp_path: Path) -> None:
    """QEMU 7.2 reuses a discarded cluster before the discard's L2 update is durable."""
    spec = CampaignSpec("qemu", "discard", workdir=str(tmp_path / "work"))
    result = run_campaign(spec)
    data = [v for v in result.violations if v.prop == "data"]
    assert data, "the discard/reuse crash state was expected"
    again, _ = rebuild_state(spec, data[0].state, str(tmp_path / "state.qcow2"))
    assert any(v.prop == "data" for v in again)


def test_cli_exit_codes_and_json(qemu_tools: None, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "qcow2harness.cli"]
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "qcow2-harness")):
        pytest.skip("console script not installed")
    cli = [os.path.join(os.path.dirname(sys.executable), "qcow2-harness")]
    ok = subprocess.run([*cli, "crash", "--writer", "reference", "--workload", "zones-small",
                         "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["violations"] == []
    bad = subprocess.run([*cli, "crash", "--writer", "reference", "--workload", "zones-small",
                          "--mutant", "wp-before-data"], capture_output=True, text=True)
    assert bad.returncode == 2 and "reproduce: qcow2-harness crash" in bad.stdout
    state = subprocess.run([*cli, "crash", "--writer", "reference", "--workload",
                            "zones-small", "--mutant", "wp-before-data", "--state", "0:0",
                            "--out", str(tmp_path / "s.qcow2")], capture_output=True, text=True)
    assert state.returncode == 2 and (tmp_path / "s.qcow2").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["allocation", "cow", "refcount-growth", "l1-growth"])
@pytest.mark.parametrize("options", [{}, {"cluster_size": "512"}, {"cluster_size": "4096"},
                                     {"cache": "none"}, {"cache": "writethrough"},
                                     {"extended_l2": "on", "cluster_size": "16384"}])
def test_qemu_workloads_clean(qemu_tools: None, workload: str, options: dict[str, str]) -> None:
    result = run_campaign(CampaignSpec("qemu", workload, max_states=1500, options=options))
    assert result.violations == [], [v.to_json() for v in result.violations[:3]]


# QEMU 7.2 behaviours the campaign found (crash/FINDINGS.md): each stays reproducible.
KNOWN_FINDINGS = [
    ("discard", {}, "data"),
    ("compressed", {"cache": "writethrough"}, "data"),
    ("cow", {"lazy_refcounts": "on", "cluster_size": "512"}, "data"),
    ("l1-growth", {"lazy_refcounts": "on", "cluster_size": "4096"}, "L2-2"),
    ("snapshots", {}, "L1-3"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("workload", "options", "prop"), KNOWN_FINDINGS)
def test_known_qemu_findings_reproduce(qemu_tools: None, workload: str,
                                       options: dict[str, str], prop: str) -> None:
    result = run_campaign(CampaignSpec("qemu", workload, max_states=1500, options=options))
    assert any(v.prop == prop for v in result.violations), result.summary()


def test_delta_reads_find_what_full_reads_find(qemu_tools: None, tmp_path: Path) -> None:
    """On one capture, reading only what each state can change finds the same problems
    as reading every guest byte of every state."""

    from qcow2harness.crash.campaign import _judge_states
    from qcow2harness.crash.states import enumerate_states, epochs_of

    workload = get_workload("discard", "qemu")
    capture = capture_qemu(workload, {"cluster_size": "4096"}, str(tmp_path / "c"))
    epochs = epochs_of(capture.entries)
    states, _ = enumerate_states(epochs, capture.entries, max_states=500)
    found = {}
    reads = {}
    for delta in (True, False):
        spec = CampaignSpec("qemu", "discard", delta=delta, repair=())
        violations, reads[delta], _, _ = _judge_states(spec, workload, capture, epochs,
                                                       states, str(tmp_path / f"s{delta}.qcow2"))
        found[delta] = {(v.state, v.prop, v.message) for v in violations}
    assert found[True] == found[False]
    assert reads[True] < reads[False]
