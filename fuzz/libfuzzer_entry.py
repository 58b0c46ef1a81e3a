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
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported at run time only after the coverage hooks are in place
    from qcow2harness.fuzz.targets import Bounds

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

SECONDS_VARIABLE = "QCOW2_HARNESS_FUZZ_SECONDS"
RSS_VARIABLE = "QCOW2_HARNESS_FUZZ_RSS_MB"


class FuzzFinding(Exception):  # noqa: N818 - a finding, reported as libFuzzer's crash
    """A target broke a bound or let an unexpected exception escape."""


def bounds_from_environment(bounds: Bounds) -> Bounds:
    """The target's bounds, overridden by QCOW2_HARNESS_FUZZ_SECONDS (time per input) and
    QCOW2_HARNESS_FUZZ_RSS_MB (peak-RSS growth): the campaign's --seconds and --rss-mb,
    for a builder or runner that is slower or larger than ours."""
    seconds = os.environ.get(SECONDS_VARIABLE)
    rss_mb = os.environ.get(RSS_VARIABLE)
    try:
        if seconds:
            bounds = replace(bounds, seconds=float(seconds))
        if rss_mb:
            bounds = replace(bounds, rss_mb=int(rss_mb))
    except ValueError as exc:
        from qcow2harness.errors import HarnessError

        raise HarnessError(f"{SECONDS_VARIABLE} / {RSS_VARIABLE}: not a number: {exc}") \
            from exc
    return bounds


def main(target_name: str, argv: list[str] | None = None) -> None:
    """Fuzz one target with libFuzzer's flags from argv (sys.argv by default)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import atheris
    from qcow2harness.fuzz import worker

    worker.instrument_imports(target_name)
    from qcow2harness.fuzz import targets

    target = targets.get_target(target_name)
    bounds = bounds_from_environment(target.bounds)

    def test_one_input(data: bytes) -> None:
        finding = targets.execute(target, data, bounds)
        if finding is not None:
            raise FuzzFinding(f"{finding.kind}: {finding.summary} [{finding.where}]\n"
                              f"{finding.details}")

    atheris.Setup(list(sys.argv if argv is None else argv), test_one_input,
                  custom_mutator=worker.structured_mutator())
    atheris.Fuzz()


__all__ = ["FuzzFinding", "NOT_BUILT", "OSS_FUZZ_TARGETS", "bounds_from_environment", "main"]
