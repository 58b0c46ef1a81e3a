#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build for qcow2-harness (language: python).
# Runs in the builder image with $SRC, $OUT and $WORK set and compile_python_fuzzer on
# PATH. `python -m qcow2harness.fuzz.oss_fuzz_local` runs this same file on a machine
# without Docker, with a stand-in compile_python_fuzzer (fuzz/oss_fuzz/).

cd "$SRC/qcow2-harness"

# The package and its dependencies (kaitaistruct, numpy, zstandard); atheris comes with
# the base image.
pip3 install .

# One program per fuzz/oss_fuzz/<target>_fuzzer.py. Which targets are built, and why
# the others are not: fuzz/libfuzzer_entry.py (OSS_FUZZ_TARGETS, NOT_BUILT).
for fuzzer in fuzz/oss_fuzz/*_fuzzer.py; do
  name=$(basename -s .py "$fuzzer")
  # --collect-data: spec/clauses.toml is read with importlib.resources at run time.
  compile_python_fuzzer "$fuzzer" --collect-data qcow2harness
  # Seeds: the committed corpus (corpus/README.md), flat in the zip.
  rm -f "$OUT/${name}_seed_corpus.zip"
  python3 -m zipfile -c "$OUT/${name}_seed_corpus.zip" corpus/seeds/*.qcow2
  cp fuzz/qcow2.dict "$OUT/$name.dict"
  cp fuzz/oss_fuzz/fuzzer.options "$OUT/$name.options"
done
