"""Regression: `model` target, crash (5-byte input).

IndexError: list index out of range
at zones.py:528 in zone
Found by tests/fuzz/test_fuzz_replay.py while building the model target. The
harness asked the zone model for zone 6 of 6 to place a write; fixed in
fuzz/targets.py: a write to a zone past the last one becomes a write past the end
of the disk, which the model and the writer must both refuse (OUT_OF_RANGE).
"""

from __future__ import annotations

import base64
import zlib

from qcow2harness.fuzz.targets import execute, get_target

INPUT = zlib.decompress(base64.b64decode(
    "eNpjYGBoYQAAAQ0AhQ=="
))


def test_model_crash_96cc1981580c() -> None:
    finding = execute(get_target('model'), INPUT)
    assert finding is None, finding.summary if finding else ""
