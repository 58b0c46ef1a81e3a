"""`crash --shard I/N` + `merge`: N shards add up to exactly the unsharded run."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qcow2harness.crash import campaign as campaign_module
from qcow2harness.crash.campaign import CampaignResult, CampaignSpec, run_campaign, run_matrix
from qcow2harness.crash.shard import shard_states
from qcow2harness.crash.states import CrashState
from qcow2harness.errors import UsageError
from qcow2harness.merge import IncompleteError, merge
from qcow2harness.sharding import Shard, id_digest

CLI = [os.path.join(os.path.dirname(sys.executable), "qcow2-harness")]
# What may differ between a merged and an unsharded run: time, reads (warm-ups add
# some), and the shard bookkeeping itself.
NOT_COMPARED = {"seconds", "wall_seconds", "states_per_second", "qemu_reads", "raw_fallbacks",
                "shard"}


def canonical(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in NOT_COMPARED}
    out["violations"] = sorted(out["violations"], key=lambda v: json.dumps(v, sort_keys=True))
    # Findings: when each was first found is time, and their order follows it.
    out["findings"] = sorted(({k: v for k, v in f.items() if k != "first_seconds"}
                              for f in out.get("findings", [])),
                             key=lambda f: (f["property"], f["cause"]))
    return out


def merged_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged = merge([(f"shard-{n}", p) for n, p in enumerate(parts)])
    assert len(merged.report["results"]) == 1
    return merged.report["results"][0]


def test_shard_parse() -> None:
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("3/3", "-1/3", "0/0", "1", "a/b"):
        with pytest.raises(UsageError):
            Shard.parse(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 40])
def test_shard_parts_partition_the_states(count: int) -> None:
    states = [CrashState(e, tuple(range(n))) for e in range(6) for n in range(e + 1)]
    seen: list[str] = []
    digests = []
    for index in range(count):
        replay, warmups, fields = shard_states(states, Shard(index, count))
        judged = [s for s in replay if s.id not in warmups]
        assert [s.epoch for s in replay] == sorted(s.epoch for s in replay)  # replay order
        for state in replay:  # a part entering an epoch starts at its prefix state
            first = next(s for s in replay if s.epoch == state.epoch)
            assert first.applied == () and first.torn is None
        assert warmups.isdisjoint(s.id for s in judged)
        seen += [s.id for s in judged]
        digests.append(fields["states_digest"])
        assert fields["states_total_digest"] == id_digest(s.id for s in states)
    assert sorted(seen) == sorted(s.id for s in states)  # complete
    assert len(seen) == len(set(seen))  # disjoint


@pytest.mark.parametrize("mutants", [(), ("wp-before-data",), ("reset-wp-before-zero",)])
def test_reference_shards_merge_to_the_unsharded_run(mutants: tuple[str, ...]) -> None:
    spec = CampaignSpec("reference", "zones", mutants)
    whole = run_campaign(spec).to_json()
    parts = [run_campaign(spec, shard=Shard(i, 3)).to_json() for i in range(3)]
    assert all(0 < p["states_checked"] < whole["states_checked"] for p in parts)
    assert canonical(merged_of(parts)) == canonical(whole)
    if mutants:  # the equality covers failures, not only passes
        assert whole["violations"]
        assert sum(bool(p["violations"]) for p in parts) >= 2


def test_run_and_base_violations_come_once() -> None:
    # The mutant makes the writer disagree with the model while running ("run").
    spec = CampaignSpec("reference", "zones-small", ("wp-before-data",))
    parts = [run_campaign(spec, shard=Shard(i, 2)).to_json() for i in range(2)]
    for part in parts[1:]:
        assert not [v for v in part["violations"] if v["state"] in ("run", "base")]
    assert canonical(merged_of(parts)) == canonical(run_campaign(spec).to_json())


def test_merge_refuses_shards_that_do_not_belong_together() -> None:
    spec = CampaignSpec("reference", "zones-small")
    parts = [run_campaign(spec, shard=Shard(i, 2)).to_json() for i in range(2)]
    other = copy.deepcopy(parts)
    other[1]["capture_digest"] = "0" * 64
    with pytest.raises(UsageError, match="different write logs"):
        merged_of(other)
    with pytest.raises(UsageError, match="given twice"):
        merged_of([parts[0], parts[0]])
    with pytest.raises(IncompleteError, match="shard 1/2"):
        merged_of([parts[0]])
    partial = merge([("s0", parts[0])], allow_partial=True)
    assert partial.missing and partial.report["results"][0]["exhaustive"] is False
    three = run_campaign(spec, shard=Shard(0, 3)).to_json()
    with pytest.raises(UsageError, match="different counts"):
        merged_of([parts[0], three])


def test_cli_shards_merge_with_the_unsharded_exit_code(tmp_path: Path) -> None:
    base = [*CLI, "crash", "--writer", "reference", "--workload", "zones",
            "--mutant", "wp-before-data"]
    whole = subprocess.run([*base, "--json", str(tmp_path / "whole.json")],
                           capture_output=True, text=True)
    assert whole.returncode == 2, whole.stderr
    files = []
    for index in range(3):
        out = tmp_path / f"shard-{index}.json"
        subprocess.run([*base, "--shard", f"{index}/3", "--json", str(out)],
                       capture_output=True, text=True)
        files.append(str(out))
    merged = subprocess.run([*CLI, "merge", *files, "--json", str(tmp_path / "m.json")],
                            capture_output=True, text=True)
    assert merged.returncode == 2, merged.stdout + merged.stderr
    assert "84 crash states checked" in merged.stdout
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["kind"] == "crash" and report["exit_code"] == 2
    assert canonical(report["results"][0]) == canonical(
        json.loads((tmp_path / "whole.json").read_text()))
    missing = subprocess.run([*CLI, "merge", files[0], files[2]], capture_output=True,
                             text=True)
    assert missing.returncode == 1 and "shard 1/3" in missing.stderr
    partial = subprocess.run([*CLI, "merge", files[0], files[2], "--allow-partial"],
                             capture_output=True, text=True)
    assert partial.returncode == 2 and "missing:" in partial.stdout


def test_matrix_shards_split_by_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def fake_run(spec: CampaignSpec, jobs: int = 0, **_: Any) -> CampaignResult:
        ran.append(spec.label())
        result = CampaignResult(spec, states_checked=1)
        if spec.options.get("cache") == "unsafe":
            result.violations.append(campaign_module.Violation("0:", "data", "lost", "", [],
                                                               ""))
        return result

    monkeypatch.setattr(campaign_module, "run_campaign", fake_run)
    whole = [r.to_json() for r in run_matrix(["allocation", "cow"])]
    ran.clear()
    parts = [[r.to_json() for r in run_matrix(["allocation", "cow"], shard=Shard(i, 4))]
             for i in range(4)]
    assert sorted(ran) == sorted(r["campaign"] for r in whole)  # each campaign once
    merged = merge([(f"s{i}", r) for i, part in enumerate(parts) for r in part])
    assert [r["campaign"] for r in merged.report["results"]] == [r["campaign"] for r in whole]
    assert merged.exit_code == 0  # the cache=unsafe control row does not count
    with pytest.raises(IncompleteError, match="matrix shard 2/4"):
        merge([(f"s{i}", r) for i, part in enumerate(parts) if i != 2 for r in part])


def test_qemu_shards_of_a_shared_capture_merge_to_the_unsharded_run(
        qemu_tools: None, tmp_path: Path) -> None:
    workdir = str(tmp_path / "capture")
    common = ["crash", "--writer", "qemu", "--workload", "allocation", "--workdir", workdir]
    captured = subprocess.run([*CLI, *common, "--capture-only"], capture_output=True,
                              text=True)
    assert captured.returncode == 0, captured.stdout + captured.stderr
    assert os.path.exists(os.path.join(workdir, "capture.json"))
    whole = tmp_path / "whole.json"
    done = subprocess.run([*CLI, *common, "--reuse-capture", "--json", str(whole)],
                          capture_output=True, text=True)
    files = []
    for index in range(3):
        out = tmp_path / f"shard-{index}.json"
        subprocess.run([*CLI, *common, "--reuse-capture", "--shard", f"{index}/3",
                        "--json", str(out)], capture_output=True, text=True, check=False)
        files.append(str(out))
    merged = subprocess.run([*CLI, "merge", *files, "--json", str(tmp_path / "m.json")],
                            capture_output=True, text=True)
    assert merged.returncode == done.returncode, merged.stdout + merged.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    unsharded = json.loads(whole.read_text())
    assert unsharded["states_checked"] > 10 and unsharded["qemu_reads"] > 0
    assert canonical(report["results"][0]) == canonical(unsharded)
