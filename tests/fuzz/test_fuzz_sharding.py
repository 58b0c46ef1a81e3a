"""`fuzz --shard I/N`: distinct seeds, seed-corpus slices that partition, a merge that
adds up. Short runs bounded by -runs, never by time."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest
from qcow2harness.fuzz.campaign import CampaignConfig, worker_argv
from qcow2harness.fuzz.shard import seed_files as hashed_seed_files
from qcow2harness.fuzz.shard import seed_slice, worker_seed

from qcow2harness.errors import UsageError
from qcow2harness.merge import IncompleteError, merge
from qcow2harness.sharding import WHOLE, Shard

CLI = os.path.join(os.path.dirname(sys.executable), "qcow2-harness")


def test_every_worker_of_every_shard_gets_its_own_seed() -> None:
    for base in (None, 1, 1000):
        seeds = [worker_seed(base, Shard(i, 3), w) for i in range(3) for w in range(4)]
        assert len(set(seeds)) == len(seeds) and all(s is not None and s > 0 for s in seeds)
    # Unsharded keeps the old meaning: worker w gets seed + w, or libFuzzer's own.
    assert [worker_seed(7, WHOLE, w) for w in range(3)] == [7, 8, 9]
    assert worker_seed(None, WHOLE, 0) is None
    config = CampaignConfig("check", "c", "a", seed=10, shard=Shard(2, 3))
    assert "-seed=15" in worker_argv(config, 1, 5, "known")  # 10 + 1*3 + 2


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_seed_slices_partition_the_seed_corpus(count: int, tmp_path: pathlib.Path,
                                               seed_files: list[pathlib.Path]) -> None:
    seeds = str(seed_files[0].parent)
    everything = set(hashed_seed_files([seeds]))
    parts = []
    for index in range(count):
        dest = tmp_path / f"slice-{index}"
        info = seed_slice([seeds], Shard(index, count), str(dest))
        names = set(os.listdir(dest)) if count > 1 else everything
        assert info["files"] == len(names) and info["total"] == len(everything)
        parts.append(names)
    assert set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)  # disjoint
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # round-robin: balanced


def test_slices_depend_on_contents_not_paths(tmp_path: pathlib.Path,
                                             seed_files: list[pathlib.Path]) -> None:
    moved = tmp_path / "elsewhere" / "nested"
    shutil.copytree(seed_files[0].parent, moved)
    for path in moved.iterdir():
        path.rename(path.with_name("renamed-" + path.name))
    one = seed_slice([str(seed_files[0].parent)], Shard(1, 3), str(tmp_path / "a"))
    two = seed_slice([str(tmp_path / "elsewhere")], Shard(1, 3), str(tmp_path / "b"))
    assert one["digest"] == two["digest"]
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.listdir(tmp_path / "b"))


def _result(index: int, count: int, findings: list[dict[str, Any]], execs: int,
            digest_parts: list[str], total: str) -> dict[str, Any]:
    return {"kind": "fuzz", "target": "check", "mutator": "structured", "reader": None,
            "runs": 100, "time": 60.0, "max_len": None, "libfuzzer_args": [],
            "shard": {"index": index, "count": count}, "jobs": 1, "worker_seeds": [index + 1],
            "seed_slice": {"files": 1, "digest": digest_parts[index], "total": count,
                           "total_digest": total},
            "execs": execs, "cov": 100 + index, "ft": 200, "corpus_units": 10,
            "corpus_bytes": 1000, "findings": findings, "duplicates": 0, "worker_errors": [],
            "exit_code": 2 if findings else 0, "seconds": 1.0}


def test_merge_sums_and_unites_findings() -> None:
    from qcow2harness.sharding import id_digest, xor_digests

    names = ["a", "b", "c"]
    parts = [id_digest([n]) for n in names]
    total = xor_digests(parts)
    crash = {"kind": "crash", "summary": "IndexError", "signature": "check/crash/IndexError/x"}
    slow = {"kind": "slow", "summary": "slow", "signature": "check/slow/slow/y"}
    results = [_result(0, 3, [crash], 100, parts, total),
               _result(1, 3, [crash, slow], 150, parts, total),
               _result(2, 3, [], 50, parts, total)]
    merged = merge([(f"s{i}", r) for i, r in enumerate(results)])
    report = merged.report["result"]
    assert merged.exit_code == 2
    assert report["execs"] == 300 and report["corpus_units"] == 30 and report["cov"] == 102
    assert [f["signature"] for f in report["findings"]] == [crash["signature"],
                                                            slow["signature"]]
    assert report["duplicates"] == 1
    clean = [_result(i, 3, [], 10, parts, total) for i in range(3)]
    assert merge([(f"s{i}", r) for i, r in enumerate(clean)]).exit_code == 0
    with pytest.raises(IncompleteError):
        merge([("s0", clean[0]), ("s2", clean[2])])
    clean[2]["worker_seeds"] = [1]
    with pytest.raises(UsageError, match="share libFuzzer seeds"):
        merge([(f"s{i}", r) for i, r in enumerate(clean)])


def test_short_sharded_runs_merge(tmp_path: pathlib.Path,
                                  seed_files: list[pathlib.Path]) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (the fuzz extra)")
    files = []
    for index in range(3):
        out = tmp_path / f"shard-{index}.json"
        done = subprocess.run(
            [CLI, "fuzz", "check", "--shard", f"{index}/3", "--seed", "1", "--runs", "30",
             "--seeds", str(seed_files[0].parent), "--minimize-time", "0",
             "--regressions", str(tmp_path / "regressions"), "--json", str(out)],
            cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        files.append(out)
    shards = [json.loads(f.read_text()) for f in files]
    assert [s["worker_seeds"] for s in shards] == [[1], [2], [3]]
    assert all(os.path.isdir(tmp_path / "data" / "fuzz-check" / f"shard-{i}-of-3" / "corpus")
               for i in range(3))
    merged = subprocess.run([CLI, "merge", *map(str, files), "--json", str(tmp_path / "m.json")],
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    report = json.loads((tmp_path / "m.json").read_text())["result"]
    assert report["execs"] == sum(s["execs"] for s in shards) > 0
    assert report["seed_slice"]["files"] == report["seed_slice"]["total"] == len(
        hashed_seed_files([str(seed_files[0].parent)]))
    assert report["corpus_units"] == sum(s["corpus_units"] for s in shards)
