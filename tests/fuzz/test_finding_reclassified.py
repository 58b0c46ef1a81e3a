"""A finding is recorded as its minimized input fails (issue 17): a reader killed by
SIGKILL on the large input, which aborts with a small failed allocation once the
minimizer has cut it, is recorded with the abort's site and summary, and named so."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
from qcow2harness.fuzz.campaign import CampaignConfig, run_campaign

# Killed (for memory, as the kernel would) on inputs over 2 KiB; under that, a failed
# 4 KiB allocation and an abort: both out-of-memory, at two different sites. The empty
# input libFuzzer runs first is refused.
READER_SCRIPT = """\
import os, signal, sys
data = open(sys.argv[1], 'rb').read()
if not data:
    sys.exit(1)
if len(data) > 2048:
    os.kill(os.getpid(), signal.SIGKILL)
sys.stderr.write('failed to allocate 4096 bytes\\n')
sys.stderr.flush()
os.abort()
"""


def test_minimized_oom_is_reclassified_and_renamed(tmp_path: pathlib.Path,
                                                    seed_files: list[pathlib.Path]) -> None:
    pytest.importorskip("atheris", reason="not run: atheris is not installed")
    script = tmp_path / "reader.py"
    script.write_text(READER_SCRIPT)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    big = next(p for p in seed_files if p.stat().st_size > 4096)
    (seeds / big.name).write_bytes(big.read_bytes())
    config = CampaignConfig(
        target="external", corpus=str(tmp_path / "corpus"),
        artifacts=str(tmp_path / "artifacts"), seconds=60, seeds=[str(seeds)],
        reader=f"{sys.executable} {script} {{}}", reader_timeout=5, runs=5,
        minimize_seconds=10, interval=5, regressions=str(tmp_path / "regressions"))
    result = run_campaign(config)
    assert len(result.findings) == 1, result
    record = result.findings[0]
    assert record.finding.kind == "oom"
    assert record.finding.where.endswith("SIGABRT"), record.finding
    assert record.found_as and "SIGKILL" in record.found_as
    assert record.minimized is not None and record.minimized_size <= 2048
    assert "oom-outofmemory" in pathlib.Path(record.minimized).name
    assert record.regression is not None and "_oom_" in pathlib.Path(record.regression).name
    jsonl = [json.loads(line) for line in
             (tmp_path / "artifacts" / "findings.jsonl").read_text().splitlines()]
    assert jsonl[0]["where"] == record.finding.where and jsonl[0]["found_as"]
