"""qemu_json: our JSON beside QEMU's on the fields we model (a new QEMU key is no difference)."""

from __future__ import annotations

import json
import pathlib

import pytest

from qcow2harness.qemu_json import check_counts, comparable_map, main, map_difference

OURS = [
    {"start": 0, "length": 65536, "depth": 0, "present": True, "zero": False, "data": True},
    {"start": 65536, "length": 65536, "depth": 0, "present": True, "zero": False,
     "data": True, "offset": 393216},
    {"start": 131072, "length": 917504, "depth": 0, "present": False, "zero": True,
     "data": False},
]


def with_key(extents: list[dict], **extra: object) -> list[dict]:
    return [{**e, **extra} for e in extents]


def test_a_key_only_qemu_10_prints_is_no_difference() -> None:
    qemu_10 = with_key(OURS, compressed=False)
    qemu_10[0]["compressed"] = True
    assert map_difference(OURS, qemu_10) is None
    assert comparable_map(qemu_10) == OURS


@pytest.mark.parametrize(("field", "value"), [("zero", True), ("data", False), ("depth", 1),
                                              ("present", False), ("offset", 4096),
                                              ("length", 512), ("start", 1)])
def test_every_modelled_field_is_compared(field: str, value: object) -> None:
    theirs = with_key(OURS, compressed=False)
    theirs[1][field] = value
    difference = map_difference(OURS, theirs)
    assert difference is not None and "at extent 1" in difference


def test_an_offset_on_one_side_only_differs() -> None:
    theirs = [dict(e) for e in OURS]
    theirs[0]["offset"] = 0
    assert "at extent 0" in (map_difference(OURS, theirs) or "")


def test_extents_are_not_merged_away() -> None:
    split = [dict(OURS[0], length=32768), dict(OURS[0], start=32768, length=32768), *OURS[1:]]
    assert "at extent 0" in (map_difference(OURS, split) or "")
    assert "nothing" in (map_difference(OURS, OURS[:2]) or "")


def test_check_counts_read_a_missing_count_as_zero() -> None:
    clean = {"image-end-offset": 4608, "total-clusters": 16, "check-errors": 0}
    assert check_counts(clean) == {"corruptions": 0, "leaks": 0, "check-errors": 0}
    assert check_counts({**clean, "leaks": 1})["leaks"] == 1


def test_shell_commands(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_text(json.dumps(OURS))
    theirs.write_text(json.dumps(with_key(OURS, compressed=False)))
    assert main(["compare-maps", str(ours), str(theirs)]) == 0
    assert capsys.readouterr().out == "maps agree\n"
    assert main(["show-map", str(theirs)]) == 0
    shown = capsys.readouterr().out
    assert "compressed" not in shown and shown.startswith('[{ "start": 0, "length": 65536,')
    assert json.loads(shown) == OURS
    theirs.write_text(json.dumps(with_key(OURS, zero=True)))
    assert main(["compare-maps", str(ours), str(theirs)]) == 0
    assert capsys.readouterr().out.startswith("map differs from qemu-img map at extent 0")
    (tmp_path / "bad.json").write_text("[{")
    assert main(["show-map", str(tmp_path / "bad.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
