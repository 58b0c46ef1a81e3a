"""Every finding in docs/series-review.md, run against the series build and stock 10.2.

Each reproducer must still show its finding on the series (a finding that no longer
shows fails here: the review must be written again), and stock 10.2 from the same
source must refuse every step cleanly (exit non-zero, no signal) or behave. Without a
series build (make zoned-qemu) they are not run, with the reason.
"""

from __future__ import annotations

import pathlib

import pytest
from qcow2harness.properties.series_findings import FINDINGS, SERIES_EXPECTED, verify
from qcow2harness.spec.registry import load

from qcow2harness import qemu


@pytest.fixture(scope="module")
def series_build() -> None:
    reason = qemu.build_unavailable("zoned")
    if reason is not None:
        pytest.skip(f"not run: {reason}")


@pytest.mark.parametrize("finding", FINDINGS, ids=lambda f: f.slug)
def test_the_series_shows_the_finding_and_stock_refuses_it_cleanly(
        series_build: None, finding: object, tmp_path: pathlib.Path) -> None:
    verified = verify(finding, str(tmp_path))  # type: ignore[arg-type]
    steps = "\n".join(f"{s.line} -> {s.code}: {s.output[-300:]}" for s in verified.series.steps)
    assert verified.evidence is not None, f"the series no longer shows it:\n{steps}"
    if verified.stock is not None:
        assert verified.stock.refused_cleanly(), [
            (s.line, s.code, s.last_line) for s in verified.stock.steps]


def test_every_finding_names_known_clauses_and_a_unique_slug() -> None:
    spec = load()
    assert all(clause in spec for f in FINDINGS for clause in f.clauses)
    assert len({f.slug for f in FINDINGS}) == len(FINDINGS)
    assert SERIES_EXPECTED == {clause for f in FINDINGS for clause in f.clauses}


def test_the_review_lists_every_finding() -> None:
    review = pathlib.Path(__file__).resolve().parents[1] / "docs" / "series-review.md"
    text = review.read_text()
    missing = [f.slug for f in FINDINGS if f'<a id="{f.slug}"></a>' not in text]
    assert not missing, f"{review} lacks {missing}: regenerate it (see its first line)"


def test_crafted_headers_poke_where_the_parser_finds_the_zoned_fields(
        series_build: None, tmp_path: pathlib.Path) -> None:
    from qcow2harness.properties.series_findings import (
        HEADER_GEOMETRY,
        HEADER_SIZE,
        ZONED_DATA,
        create,
    )

    from qcow2harness.image import ExtensionType, Image

    words = create(HEADER_SIZE, **HEADER_GEOMETRY).split()
    qemu.run("qemu-img", *words[1:-2], str(tmp_path / "img"), words[-1], build="zoned")
    with Image.open(tmp_path / "img") as image:
        zoned = image.extension(ExtensionType.zoned)
        assert zoned is not None and zoned.offset + 8 == ZONED_DATA
