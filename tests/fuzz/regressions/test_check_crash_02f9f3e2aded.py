"""Regression: `check` target, crash (3136-byte input).

OverflowError: Python int too large to convert to C long
at zoned.py:83 in read_zoned
Found by `qcow2-harness fuzz check` (mutator structured).
"""

from __future__ import annotations

import base64
import zlib

from qcow2harness.fuzz.targets import execute, get_target

INPUT = zlib.decompress(base64.b64decode(
    "eNoLdPP8zcDAwMyACrj+M1AVZDBUJaUAaUsQRwFFSgDG4MCizwFC8TCMglEwCkbBKBgFo2AUjIJR"
    "MAoGHgAAxMwFTQ=="
))


def test_check_crash_02f9f3e2aded() -> None:
    finding = execute(get_target('check'), INPUT)
    assert finding is None, finding.summary if finding else ""
