"""Fuzzing qcow2 readers: atheris targets, a structure-aware mutator, the campaign runner.

    targets.py     check (parse + check robustness), differential (vs qemu-img check),
                   model (zone model vs reference writer), external (any reader command);
                   per-input time and memory bounds; plain replay without atheris
    mutator.py     structure-aware mutation over the Kaitai parse, byte fallback
    qcow2.dict     libFuzzer dictionary: magics, feature bits, flag masks
    worker.py      one atheris process (python -m qcow2harness.fuzz.worker)
    libfuzzer_entry.py  the targets as plain libFuzzer programs (OSS-Fuzz, ClusterFuzzLite)
    oss_fuzz_local.py   .clusterfuzzlite/build.sh rehearsed without Docker, then each fuzzer run
    oss_fuzz/      the per-target entry scripts and a local compile_python_fuzzer (not installed)
    campaign.py    the runner behind `qcow2-harness fuzz`: workers, progress, findings
    minimize.py    offset-preserving shrinking of findings
    regression.py  a pytest module per finding (tests/fuzz/regressions/)
    seeds.py       the committed seed corpus (corpus/), `corpus build corpus --seeds`
    bench.py       throughput figures for bench/run.py
    RESULTS.md     mutator comparison, campaign figures, throughput
"""
