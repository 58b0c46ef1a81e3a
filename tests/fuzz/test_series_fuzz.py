"""The fuzz targets with the zoned series as the reader (QCOW2_HARNESS_ZONED_QEMU): its
crashes classified with their site, named by the zoned field the input changed, and
checked against stock 10.2. Skipped with the reason when the build is absent."""

from __future__ import annotations

import json
import pathlib

import pytest
from qcow2harness.fuzz import cause
from qcow2harness.fuzz.reader import resolve_build, verdict
from qcow2harness.fuzz.series_seeds import build_series_seeds
from qcow2harness.fuzz.targets import execute, get_target

from qcow2harness import qemu
from qcow2harness.errors import HarnessError

pytestmark = pytest.mark.qemu
INFO = "qemu-img info {}"


@pytest.fixture(scope="module")
def build() -> str:
    try:
        chosen = resolve_build("series")
    except HarnessError as why:
        pytest.skip(f"not run: {why}")
    assert chosen is not None
    return chosen


@pytest.fixture(scope="module")
def seeds(build: str, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("series-seeds")
    build_series_seeds(str(directory))
    return directory


def with_field(data: bytes, name: str, value: int) -> bytes:
    unit = next(u for u in cause.named_units(data) if u.name == name)
    out = bytearray(data)
    out[unit.offset:unit.offset + unit.width] = value.to_bytes(unit.width, "big")
    return bytes(out)


def small_seed(seeds: pathlib.Path) -> bytes:
    return (seeds / "series-zoned-512b-clusters.qcow2").read_bytes()


def test_series_seeds_are_zoned_images_the_series_reads(build: str,
                                                        seeds: pathlib.Path) -> None:
    manifest = json.loads((seeds / "manifest.json").read_text())
    assert len(manifest) == 3
    for entry in manifest:
        path = seeds / entry["file"]
        assert execute(get_target("external", reader=INFO, build=build),
                       path.read_bytes()) is None
        zoned = next(u for u in cause.named_units(path.read_bytes())
                     if u.name == "zoned.num_zones")
        assert zoned.width == 4


def test_zone_size_zero_is_a_crash_with_its_site_and_field(build: str,
                                                           seeds: pathlib.Path) -> None:
    seed = small_seed(seeds)
    target = get_target("external", reader=INFO, build=build)
    mutant = with_field(seed, "zoned.zone_size", 0)
    mutant = mutant[:-512] + b"\x5a" * 512  # an unrelated change in the last cluster
    finding = execute(target, mutant)
    assert finding is not None and finding.kind == "crash", finding
    assert finding.summary.startswith("SIGFPE:") and finding.where.startswith("block/qcow2.c")
    named = cause.attribute(target, mutant, finding, [("series", seed)])
    assert named.fields == "zoned.zone_size" and named.seed == "series"
    assert named.signature.endswith("/zoned.zone_size")


def test_huge_zone_count_is_an_unbounded_allocation_not_an_oom(build: str,
                                                               seeds: pathlib.Path) -> None:
    mutant = with_field(small_seed(seeds), "zoned.num_zones", 0xFFFFFFFF)
    for target in (get_target("external", reader=INFO, build=build),
                   get_target("differential", build=build)):
        finding = execute(target, mutant)
        assert finding is not None and finding.kind == "crash", finding
        assert finding.summary.startswith("UnboundedAllocation:"), finding.summary
        assert finding.where.startswith("block/qcow2.c")


def test_stock_refuses_what_the_series_crashes_on(build: str, seeds: pathlib.Path,
                                                  tmp_path: pathlib.Path) -> None:
    reason = qemu.build_unavailable("stock")
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    path = tmp_path / "zone-size-zero.qcow2"
    path.write_bytes(with_field(small_seed(seeds), "zoned.zone_size", 0))
    series = verdict([INFO], str(path), build, memory_mb=4096, seconds=30)
    stock = verdict([INFO], str(path), "stock", memory_mb=4096, seconds=30)
    assert series.failed and "SIGFPE" in series.outcome and build in series.command
    assert not stock.failed and stock.outcome.startswith("refused cleanly"), stock


def test_campaign_names_field_and_checks_stock(build: str, seeds: pathlib.Path,
                                               tmp_path: pathlib.Path) -> None:
    pytest.importorskip("atheris", reason="not run: atheris is not installed")
    from qcow2harness.fuzz.campaign import CampaignConfig, run_campaign

    base = tmp_path / "seeds"
    base.mkdir()
    seed = small_seed(seeds)
    (base / "a-series.qcow2").write_bytes(seed)
    (base / "b-mutant.qcow2").write_bytes(
        with_field(with_field(seed, "zoned.zone_size", 0), "header.compatible_features", 1))
    config = CampaignConfig(
        target="external", corpus=str(tmp_path / "corpus"),
        artifacts=str(tmp_path / "artifacts"), seconds=60, seeds=[str(base)], reader=INFO,
        runs=3, minimize_seconds=5, interval=5, regressions=str(tmp_path / "regressions"),
        build=build)
    result = run_campaign(config)
    assert len(result.findings) == 1, (result.findings, result.worker_errors)
    record = result.findings[0]
    assert record.finding.fields == "zoned.zone_size"
    assert record.finding.seed.endswith("a-series.qcow2")
    assert record.clauses == ["ZONE-6"]
    assert qemu.require_tool("qemu-img", build) in record.reproduce
    assert record.narrowed is not None
    assert pathlib.Path(record.narrowed).read_bytes() == with_field(seed, "zoned.zone_size", 0)
    if qemu.build_unavailable("stock") is None:
        assert record.narrowed_stock.startswith("refused cleanly"), record.narrowed_stock
        assert not record.stock.startswith("crash"), record.stock
