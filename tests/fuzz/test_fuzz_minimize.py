"""Minimization and the regression tests written for each finding."""

from __future__ import annotations

import importlib.util
import pathlib

from qcow2harness.fuzz.minimize import minimize, same_finding
from qcow2harness.fuzz.regression import regression_test
from qcow2harness.fuzz.targets import TARGETS, Finding, execute


def test_minimize_keeps_offsets_and_zeroes_the_rest() -> None:
    data = bytes(range(1, 256)) * 40
    def fails(candidate: bytes) -> bool:
        return len(candidate) > 1001 and candidate[1000:1002] == data[1000:1002]

    small = minimize(data, fails, seconds=10)
    assert fails(small) and len(small) == 1002
    assert sum(1 for b in small if b) == 2


def test_minimize_a_check_crash(monkeypatch, seed_bytes: list[bytes]) -> None:
    import qcow2harness.checker as checker

    real = checker.check_image

    def fragile(image):  # a synthetic bug: crashes when cluster_bits is 9
        if image.cluster_bits == 9:
            raise KeyError("synthetic")
        return real(image)

    monkeypatch.setattr(checker, "check_image", fragile)
    data = min(seed_bytes, key=len)
    finding = execute(TARGETS["check"], data)
    assert finding is not None and finding.kind == "crash"
    small = minimize(data, same_finding(TARGETS["check"], finding), seconds=20)
    assert len(small) <= 128 and execute(TARGETS["check"], small).signature == finding.signature


def test_regression_module_is_pasteable(tmp_path: pathlib.Path, seed_bytes: list[bytes]) -> None:
    finding = Finding("check", "crash", 'ValueError: bad "quote" \\ and """', "x.py:1 in f")
    name, text = regression_test(finding, seed_bytes[0], found_by="test")
    path = tmp_path / name
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.INPUT == seed_bytes[0]
    getattr(module, path.stem)()  # the seed is fine, so the regression test passes
