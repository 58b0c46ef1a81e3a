"""The fuzz targets as plain libFuzzer programs, for OSS-Fuzz and ClusterFuzzLite.

Each fuzz/oss_fuzz/<target>_fuzzer.py calls `main(target)`; .clusterfuzzlite/build.sh
packages it with compile_python_fuzzer (PyInstaller) into $OUT/<target>_fuzzer. Unlike
the campaign worker (worker.py), the process takes libFuzzer's own flags only, and a
finding is an uncaught exception: that is how libFuzzer under atheris reports a crash
(a crash-<sha1> artifact and a non-zero exit), which is what OSS-Fuzz looks for.

Same coverage instrumentation, structure-aware mutator and per-input bounds as the
campaign (`targets.execute`). No RLIMIT_AS here: under AddressSanitizer the process
reserves terabytes of shadow memory; libFuzzer's -rss_limit_mb is the backstop.
"""

from __future__ import annotations

import os
import sys

# Built for OSS-Fuzz / ClusterFuzzLite: the targets that need nothing but this package.
OSS_FUZZ_TARGETS = ("check", "model")
# The others, and why (tests/fuzz/test_oss_fuzz_build.py checks every target is in one).
NOT_BUILT = {
    "differential": "needs qemu-img at run time; OSS-Fuzz and ClusterFuzzLite run the "
                    "fuzzers in the base-runner image, which receives $OUT only, not the "
                    "packages installed in the builder image",
    "external": "fuzzes a reader program named on the command line "
                "(qcow2-harness fuzz external --reader CMD); there is no such program "
                "on the runner",
}


class FuzzFinding(Exception):  # noqa: N818 - a finding, reported as libFuzzer's crash
    """A target broke a bound or let an unexpected exception escape."""


def main(target_name: str, argv: list[str] | None = None) -> None:
    """Fuzz one target with libFuzzer's flags from argv (sys.argv by default)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import atheris
    from qcow2harness.fuzz import worker

    worker.instrument_imports(target_name)
    from qcow2harness.fuzz import targets

    target = targets.get_target(target_name)

    def test_one_input(data: bytes) -> None:
        finding = targets.execute(target, data)
        if finding is not None:
            raise FuzzFinding(f"{finding.kind}: {finding.summary} [{finding.where}]\n"
                              f"{finding.details}")

    atheris.Setup(list(sys.argv if argv is None else argv), test_one_input,
                  custom_mutator=worker.structured_mutator())
    atheris.Fuzz()


__all__ = ["FuzzFinding", "NOT_BUILT", "OSS_FUZZ_TARGETS", "main"]
