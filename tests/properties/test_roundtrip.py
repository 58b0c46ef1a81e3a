"""Round-trip properties (issue 6 §2) over drawn images and targeted corruptions.

- every valid image (reference writer, zoned or not; real qemu-img) parses and passes check;
- every targeted corruption is reported under the clause it broke, and otherwise only
  under the consequences it declares (`Corruption.also`);
- info, check and the Kaitai parse agree;
- nothing tracebacks.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcow2harness.properties.corruptions import CORRUPTIONS, base_image
from qcow2harness.properties.strategies import (
    qemu_images,
    reference_images,
    targeted_corruptions,
)

from qcow2harness import cli, qemu
from qcow2harness.checker import check_image, check_path
from qcow2harness.errors import ParseError
from qcow2harness.image import Image

WORKDIR = tempfile.mkdtemp(prefix="qcow2-harness-roundtrip-")
SLOW = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(argv))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def assert_info_check_and_parse_agree(path: str) -> None:
    code, out, _ = run_cli("info", "--json", path)
    assert code == 0
    info = json.loads(out)
    report = check_path(path)
    with Image.open(path) as image:
        assert info["virtual_size"] == image.header.virtual_size
        assert info["cluster_size"] == image.cluster_size
        assert [e["offset"] for e in info["extensions"]] == [e.offset for e in image.extensions()]
        assert info["clusters"]["l1_entries"] == len(image.root.l1_table.entries)
        assert (info["zoned"] is None) == (image.zoned is None)
    assert report.stats["file_size"] == info["file_size"]
    if info["zoned"] is not None:
        assert len(info["zoned"]["zones"]) == info["zoned"]["config"]["num_zones"]


@SLOW
@given(reference_images(WORKDIR))
def test_reference_writer_images_parse_and_pass_check(path: str) -> None:
    report = check_path(path)
    assert report.exit_code == 0, report.to_json()["violations"]
    assert_info_check_and_parse_agree(path)


@settings(SLOW, max_examples=15)
@given(qemu_images(WORKDIR))
def test_qemu_images_parse_and_pass_check(path: str) -> None:
    if qemu.find_tool("qemu-img") is None:
        pytest.skip("not run: qemu-img not found")
    report = check_path(path)
    assert report.exit_code == 0, report.to_json()["violations"]
    assert_info_check_and_parse_agree(path)


# ZONE-2 is about old QEMU refusing the image, which no byte-level check can see.
IMAGE_CHECKABLE = [c.clause for c in CORRUPTIONS if c.clause != "ZONE-2"]


@SLOW
@given(targeted_corruptions(clauses=IMAGE_CHECKABLE), st.data())
def test_corruption_is_reported_under_its_clause_only(drawn: tuple, data: st.DataObject) -> None:
    corruption, params = drawn
    try:
        base = base_image(corruption.base, WORKDIR)
    except Exception as error:  # a QEMU base without QEMU
        if qemu.find_tool("qemu-img") is None:
            pytest.skip(f"not run: {error}")
        raise
    broken = corruption.broken(base, **params)
    try:
        with Image.from_bytes(broken) as image:
            report = check_image(image)
        clauses = report.clauses()
    except ParseError as error:
        clauses = {error.clause or ""}
    assert corruption.clause in clauses, (corruption.id, params, clauses)
    # Only MUST/SHOULD findings count as "reported under"; MAY notes are information.
    allowed = {corruption.clause, *corruption.also}
    if "report" in locals():
        unexpected = {f.clause for f in report.violations} - allowed
        assert not unexpected, (corruption.id, params, sorted(unexpected))
    # info and check never traceback on it either.
    path = pathlib.Path(WORKDIR) / "broken.qcow2"
    path.write_bytes(broken)
    for command in ("info", "check"):
        code, _, err = run_cli(command, "--json", str(path))
        assert code in (0, 2, 3), (command, err)
