"""CRYPT-6: an image encrypted with legacy AES is valid qcow2; check names the method in
a MAY note and exits 0 (spec/clauses.toml gives the reasoning)."""

from __future__ import annotations

import shutil
from pathlib import Path

from qcow2harness.spec.registry import load

from qcow2harness.checker import check_path
from qcow2harness.exitcodes import EXIT_OK

SEED = Path(__file__).parents[2] / "corpus" / "seeds" / "qemu-v3.qcow2"


def test_legacy_aes_is_a_note_not_a_finding(tmp_path: Path) -> None:
    assert load()["CRYPT-6"].level == "MAY"
    image = tmp_path / "aes.qcow2"
    shutil.copy(SEED, image)
    with open(image, "r+b") as f:
        f.seek(32)  # crypt_method
        f.write((1).to_bytes(4, "big"))
    report = check_path(image)
    assert [(f.clause, f.level) for f in report.findings] == [("CRYPT-6", "MAY")]
    assert report.exit_code == EXIT_OK
