"""Fuzzing shards: `qcow2-harness fuzz TARGET --shard I/N [--jobs J]`.

- **Seeds.** Worker w of shard I gets libFuzzer `-seed=S + w*N + I`, S being `--seed`
  (1 when sharded without one; libFuzzer reads 0 as "pick one at random"). Distinct
  for every (shard, worker) pair, and with N = 1 it is the old `S + w`.
- **Seed corpus.** The files of the seed dirs (as libFuzzer reads them: recursively,
  every regular file) are named by the SHA-256 of their bytes, duplicates dropped,
  sorted by that name, and dealt round-robin: the k-th goes to shard k mod N. Shard I
  fuzzes from a directory holding its slice only (`seed-slice-I-of-N` beside its
  corpus). Content names make the slices the same on every machine and checkout.
- **Dirs.** Unless --corpus/--artifacts are given, shard I works in
  data/fuzz-TARGET/shard-I-of-N/.

A shard's `--json` result holds what the merge adds up: executions, coverage (libFuzzer's
`cov`/`ft` of that shard: counts, which cannot be united, so the merge reports the
largest and each one), corpus size, findings, and digests of its seed slice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

from qcow2harness.sharding import Shard, id_digest


def worker_seed(base: int | None, shard: Shard, worker: int) -> int | None:
    if base is None and shard.whole:
        return None
    return (1 if base is None else base) + worker * shard.count + shard.index


def seed_files(dirs: list[str]) -> dict[str, str]:
    """SHA-256 of the bytes -> one path holding them, for every file under `dirs`."""
    found: dict[str, str] = {}
    for directory in dirs:
        for root, subdirs, names in os.walk(directory):
            subdirs.sort()
            for name in sorted(names):
                path = os.path.join(root, name)
                if os.path.isfile(path):
                    with open(path, "rb") as stream:
                        found.setdefault(hashlib.sha256(stream.read()).hexdigest(), path)
    return found


def seed_slice(dirs: list[str], shard: Shard, dest: str) -> dict[str, Any]:
    """Copy shard's part of the seed files into `dest` (emptied first); its JSON. The
    whole (N = 1) is not copied: libFuzzer reads the seed dirs themselves."""
    found = seed_files(dirs)
    names = sorted(found)
    mine = shard.round_robin(names)
    part = {"dir": None, "files": len(mine), "digest": id_digest(mine),
            "total": len(names), "total_digest": id_digest(names)}
    if shard.whole:
        return part
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    for name in mine:
        shutil.copyfile(found[name], os.path.join(dest, name))
    return part | {"dir": dest}


def result_json(config: Any, result: Any, exit_code: int, seconds: float) -> dict[str, Any]:
    """The shard result `qcow2-harness merge` reads."""
    final = result.samples[-1] if result.samples else None
    return {
        "kind": "fuzz", "target": config.target, "mutator": config.mutator,
        "reader": config.reader, "runs": config.runs, "time": config.seconds,
        "max_len": config.max_len, "libfuzzer_args": config.libfuzzer_args,
        "shard": config.shard.to_json(), "jobs": config.jobs,
        "worker_seeds": [worker_seed(config.seed, config.shard, w)
                         for w in range(max(1, config.jobs))],
        "seed_slice": result.seed_slice,
        "execs": final.execs if final else 0, "cov": final.cov if final else 0,
        "ft": final.ft if final else 0, "corpus_units": final.units if final else 0,
        "corpus_bytes": final.corpus_bytes if final else 0,
        "findings": [record.to_json() | {"signature": record.finding.signature}
                     for record in result.findings],
        "duplicates": result.duplicates, "worker_errors": result.worker_errors,
        "exit_code": exit_code, "seconds": round(seconds, 3),
        "corpus": config.corpus, "artifacts": config.artifacts,
    }


__all__ = ["result_json", "seed_files", "seed_slice", "worker_seed"]
