"""Pre-zoned QEMUs (7.2, stock 10.2) refuse zoned images; the rejected autoclear design is
flagged; the series opens exactly the zoned images the spec allows (the open campaign)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from qcow2harness.spec.registry import load

from qcow2harness import qemu
from qcow2harness.crash.backcompat import (
    ACCEPTS,
    BYTE_ORDER,
    CRASHES,
    REFUSES,
    SANITIZER,
    OpenCampaign,
    OpenOutcome,
    autoclear_simulation,
    build_label,
    judge,
    old_writer_refuses,
    open_campaign,
    outcome_problems,
    try_open,
)

pytestmark = pytest.mark.qemu

PRE_ZONED = [pytest.param(None, id="default"), pytest.param("stock", id="stock")]


def require_pre_zoned(build: str | None) -> None:
    """Skip unless `build` is there and does not know zones (ZONE-2 is about the others)."""
    if build is None:
        for tool in ("qemu-img", "qemu-io"):
            if qemu.find_tool(tool) is None:
                pytest.skip(f"not run: {tool} not found (install qemu-utils or set "
                            f"{qemu.TOOL_ENV[tool]})")
    else:
        why = qemu.build_unavailable(build)
        if why is not None:
            pytest.skip(f"not run: {why}")
    if qemu.supports_zoned_qcow2(build):
        pytest.skip(f"not run: {qemu.qemu_version('qemu-img', build)} "
                    f"({qemu.find_tool('qemu-img', build)}) knows zoned qcow2; ZONE-2 asks "
                    "only QEMUs without zones to refuse (the open campaign judges this one)")


@pytest.mark.parametrize("build", PRE_ZONED)
def test_old_qemu_refuses_every_zoned_image(build: str | None, tmp_path: Path) -> None:
    require_pre_zoned(build)
    attempts = old_writer_refuses(str(tmp_path), build)
    assert len(attempts) >= 30
    bad = [a for a in attempts if not a.ok]
    assert bad == []
    # 7.2 and 10.2 both name the unknown incompatible bit (HDR-9).
    assert all("incompatible feature" in a.message.lower() for a in attempts)


@pytest.mark.parametrize("build", PRE_ZONED)
def test_autoclear_design_leaves_stale_zones_the_checker_flags(build: str | None,
                                                               tmp_path: Path) -> None:
    require_pre_zoned(build)
    result = autoclear_simulation(str(tmp_path), build)
    assert result.autoclear_after & (1 << 5) == 0, "the old writer clears the unknown bit"
    assert result.extension_kept
    assert result.flagged
    assert any(" ZONE-1 " in line for line in result.after)
    assert any(" WP-10 " in line for line in result.after), "the stale wps under new data"


# -- the open campaign -----------------------------------------------------------------

@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> OpenCampaign:
    if qemu.find_tool("qemu-img") is None and qemu.build_unavailable("stock") and \
            qemu.build_unavailable("zoned"):
        pytest.skip("not run: no QEMU at all (qemu-utils, or QCOW2_HARNESS_ZONED_QEMU)")
    return open_campaign(str(tmp_path_factory.mktemp("open-campaign")))


def outcomes_of(campaign: OpenCampaign, build: str | None) -> list[OpenOutcome]:
    if campaign.builds.get(build_label(build), "not run").startswith("not run"):
        pytest.skip(f"{build_label(build)}: {campaign.builds.get(build_label(build))}")
    return [o for o in campaign.outcomes if o.build == build]


def test_cases_cover_the_corpus_and_every_zoned_corruption(campaign: OpenCampaign) -> None:
    from qcow2harness.properties.corruptions import CORRUPTIONS

    zoned = {c.id for c in CORRUPTIONS if c.base == "reference-zoned"}
    names = {c.name.split("[")[0] for c in campaign.cases}
    assert zoned <= names
    assert sum(name.startswith("corpus/") for name in names) >= 6
    assert any(c.conformant for c in campaign.cases)
    assert any(not c.conformant for c in campaign.cases)
    # Each case's verdict is our checker's: a corruption of a MUST clause breaks a MUST
    # clause (its own, or the one it documents as the consequence: ZONE-2 -> ZONE-1).
    registry = load()
    for case in campaign.cases:
        if case.clause and registry[case.clause].level == "MUST" and case.byte_order == "big":
            assert case.must, case.name


@pytest.mark.parametrize("build", PRE_ZONED)
def test_pre_zoned_qemu_refuses_every_image_with_bit_5(campaign: OpenCampaign,
                                                       build: str | None) -> None:
    outcomes = outcomes_of(campaign, build)
    if outcomes and outcomes[0].zone_aware:
        pytest.skip(f"{build_label(build)} knows zones: judged against the spec instead")
    with_bit = [o for o in outcomes if o.case.zoned_bit]
    assert len(with_bit) >= 60
    assert [o.case.name for o in with_bit if not o.refused] == []
    assert [o.case.name for o in with_bit if not o.unchanged] == []  # TOOL-2
    assert [f for f in campaign.findings if f.build == build] == []


def test_series_judged_on_every_case_in_both_byte_orders(campaign: OpenCampaign) -> None:
    outcomes = outcomes_of(campaign, "zoned")
    assert {(o.case.name, o.case.byte_order) for o in outcomes} == {
        (c.name, c.byte_order) for c in campaign.cases}
    assert {o.case.byte_order for o in outcomes} == {"big", "little"}
    registry = load()
    for finding in campaign.findings:
        assert finding.clause in registry, finding.clause
        assert finding.images and finding.reproduce


def test_series_findings_reproduce(campaign: OpenCampaign, tmp_path: Path) -> None:
    """Each distinct series finding shows again on the first image that showed it."""
    findings = [f for f in campaign.findings if f.build == "zoned"]
    if not findings:
        outcomes_of(campaign, "zoned")  # skips when the series is not there
    by_label = {f"{o.case.name} ({o.case.byte_order}-endian table)": o
                for o in campaign.outcomes if o.build == "zoned"}
    for finding in findings:
        first = by_label[finding.images[0]]
        twin = next((o for o in campaign.outcomes if o.build == "zoned"
                     and o.case.name == first.case.name and o.case.byte_order == "little"),
                    None)
        again = try_open(first.case, "zoned", str(tmp_path / "again"), first.zone_aware)
        seen = {(clause, what) for clause, what, _ in outcome_problems(again, twin)}
        assert (finding.clause, finding.what) in seen, (finding.key, seen)


def test_judge_flags_a_reader_that_refuses_everything(campaign: OpenCampaign) -> None:
    """The judge has teeth: stock 10.2's refusals, judged as if stock were the series, are
    one REFUSES finding per conformant clause, and accepting everything is ACCEPTS."""
    outcomes = outcomes_of(campaign, "stock")
    as_series = [dataclasses.replace(o, zone_aware=True) for o in outcomes]
    refused = {f.clause for f in judge(as_series) if f.what == REFUSES}
    conformant = {c.clause or "ZONE-2" for c in campaign.cases
                  if c.conformant and c.byte_order == "big"}
    assert refused == conformant
    accepting = [dataclasses.replace(o, zone_aware=True, info_ok=True, read_ok=True)
                 for o in outcomes]
    accepted = {f.clause for f in judge(accepting) if f.what in (ACCEPTS, BYTE_ORDER)}
    broken = {c.clause for c in campaign.cases
              if not c.conformant and c.clause and c.byte_order == "big"}
    assert broken <= accepted | {"ZONE-2"}


def test_a_signal_or_a_sanitizer_report_is_a_finding_of_its_own(campaign: OpenCampaign
                                                                 ) -> None:
    outcome = next(o for o in outcomes_of(campaign, "stock") if o.case.clause == "ZONE-5")
    died = dataclasses.replace(outcome, zone_aware=True, signal=6, message="Assertion failed")
    assert outcome_problems(died) == [("ZONE-5", CRASHES, "signal 6: Assertion failed")]
    reported = dataclasses.replace(outcome, zone_aware=True, info_ok=True, read_ok=True,
                                   sanitizer="ERROR: AddressSanitizer: heap-buffer-overflow")
    assert [p[:2] for p in outcome_problems(reported)] == [("ZONE-5", SANITIZER)]
