"""Nightly `--shard I/N`: rounds (and so seeds) split by round number, merged back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qcow2harness.properties import nightly
from qcow2harness.properties.nightly import Plan, round_seed, run

from qcow2harness.merge import IncompleteError, merge
from qcow2harness.sharding import Shard

ROUNDS = 7


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []

    def fake_suite(plan: Plan, suite: str, number: int, known: frozenset[str] = frozenset(),
                   ) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
        calls.append((suite, number))
        return 1, [], {}

    monkeypatch.setattr(nightly, "run_suite", fake_suite)
    return calls


def test_shards_run_disjoint_rounds_with_distinct_seeds(recorded: list[tuple[str, int]]) -> None:
    plan = Plan(["reference"], rounds=ROUNDS, database=None)
    parts = [run(plan, Shard(i, 3)).rounds for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    seeds = [round_seed(plan.base_seed, r) for part in parts for r in part]
    assert sorted(seeds) == [round_seed(0, r) for r in range(ROUNDS)]  # distinct, all
    assert sorted(n for _, n in recorded) == list(range(ROUNDS))


def test_jobs_split_a_shard_into_local_processes(recorded: list[tuple[str, int]]) -> None:
    plan = Plan(["reference"], rounds=20, database=None)
    outcome = run(plan, Shard(1, 3), jobs=2)
    assert outcome.rounds == [1, 4, 7, 10, 13, 16, 19]  # shard 1/3's rounds, once each
    assert outcome.examples == {"reference": 7}


def _nightly(tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    code = nightly.main(["--suite", "reference", "--rounds", str(ROUNDS), "--examples", "4",
                         "--steps", "8", "--no-database", "--no-shrink",
                         "--mutant", "wp-before-data", "--json", str(out), *extra])
    result: dict[str, Any] = json.loads(out.read_text())
    assert code == result["exit_code"]
    return result


def canonical(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what depends on the clock or the sharding."""
    kept = {k: v for k, v in result.items()
            if k not in ("seconds", "wall_seconds", "shard", "jobs", "exit_code", "minutes",
                         "database", "not_run", "kind")}
    kept["failures"] = [{k: v for k, v in f.items() if k != "found_after_seconds"}
                        for f in kept["failures"]]
    return kept


def test_shards_merge_to_the_unsharded_run_failures_included(tmp_path: Path) -> None:
    whole = _nightly(tmp_path, "whole")
    assert whole["failures"] and whole["exit_code"] == 2  # the mutant is caught
    assert all("@reproduce_failure" in f["reproduce"] for f in whole["failures"])
    parts = [_nightly(tmp_path, f"shard-{i}", "--shard", f"{i}/3") for i in range(3)]
    merged = merge([(f"s{i}", p) for i, p in enumerate(parts)])
    assert merged.exit_code == 2
    assert canonical(merged.report["result"]) == canonical(whole)
    with pytest.raises(IncompleteError, match="shard 1/3"):
        merge([("s0", parts[0]), ("s2", parts[2])])
