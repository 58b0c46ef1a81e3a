"""Regression: `differential` target, diff (4097-byte input).

DifferentialMismatch: check exit 3 (clauses BMP-2, RC-5), qemu-img check exit 2
at check exit 3 (clauses BMP-2, RC-5), qemu-img check exit 2
Found by `qcow2-harness fuzz differential` (30 s). L1 entry 7 is 0x8000000000000000:
COPIED with offset 0. The spec and QEMU's read path call its L2 table unallocated;
qemu-img 7.2 check walks cluster 0 (the header) as an L2 table and reports 14 errors.
Explained in fuzz/targets.py (_qemu_walks_cluster_zero), not a checker bug.
"""

from __future__ import annotations

import base64
import zlib

import pytest
from qcow2harness.fuzz.targets import execute, get_target

pytestmark = pytest.mark.qemu

INPUT = zlib.decompress(base64.b64decode(
    "eNoLdPP8zcDAwMyACjjR+BwQig3KZQIRjAzEARYgLoBxlFs1SoGUBMMoGESAZTQIRipghEIYbxSM"
    "AiJAw2gQjIJRMApGwSgYBaNgFAxNAAAuIwRT"
))


def test_differential_diff_08165fac346b() -> None:
    finding = execute(get_target('differential'), INPUT)
    assert finding is None, finding.summary if finding else ""
