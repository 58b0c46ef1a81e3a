"""The spec registry: valid, in sync with SPEC.md, and resolving every known contradiction."""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import re
import tomllib
from importlib import resources
from typing import Any

import pytest
from qcow2harness.spec import registry as reg
from qcow2harness.spec.registry import Clause, Registry, RegistryError, load, render_markdown

REPO = pathlib.Path(__file__).resolve().parents[2]
# CI clones the repo with shared/ beside it; so is the developer checkout.
FACTS_FILE = REPO.parent / "shared" / "zoned-qcow2-facts.md"

EXPECTED_FAMILIES = [
    "HDR", "EXT", "L1", "L2", "EL2", "CMP", "RC", "SNAP",
    "BMP", "CRYPT", "DATA", "OVL", "ZONE", "WP", "ZSM", "PERS", "TOOL",
]  # fmt: skip

# The contradictions the facts file lists; each needs a resolution (issue 3).
REQUIRED_TOPICS = {
    "open-vs-active-limit",
    "zonedmeta-size",
    "power-of-two-size-and-capacity",
    "wp-endianness",
    "incompatible-vs-autoclear-bit",
    "persistence-order",
}


@pytest.fixture(scope="module")
def spec() -> Registry:
    return load()


def raw_registry() -> dict[str, Any]:
    text = resources.files("qcow2harness.spec").joinpath("clauses.toml").read_text("utf-8")
    return tomllib.loads(text)


# --------------------------------------------------------------------------- the registry


def test_registry_loads_and_has_a_sensible_size(spec: Registry) -> None:
    assert 100 <= len(spec) <= 200
    assert [family.prefix for family in spec.families] == EXPECTED_FAMILIES


def test_spec_md_is_generated_from_the_registry(spec: Registry) -> None:
    spec_md = resources.files("qcow2harness.spec").joinpath("SPEC.md").read_text("utf-8")
    assert spec_md == render_markdown(spec), (
        "spec/SPEC.md is stale: run `python -m qcow2harness.spec.registry --write`"
    )


def test_check_entry_point_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert reg.main(["--check"]) == 0


@pytest.mark.parametrize("clause", load().clauses, ids=lambda clause: clause.id)
def test_every_clause_is_complete(clause: Clause) -> None:
    assert reg.CLAUSE_ID.fullmatch(clause.id)
    assert clause.level in reg.LEVELS
    assert clause.basis in reg.BASES
    for field in ("title", "rule", "source", "enforced_by"):
        value = getattr(clause, field)
        assert value.strip() == value and value, f"{clause.id}.{field} is empty"
    if clause.family in reg.MODEL_ENFORCERS:
        assert clause.enforced_by == reg.MODEL_ENFORCERS[clause.family]
    else:
        assert clause.enforced_by.startswith("check_")


def test_family_numbers_are_contiguous(spec: Registry) -> None:
    # Not a registry rule (withdrawn ids keep their number), but true before publication.
    for family in spec.families:
        numbers = [clause.number for clause in spec.family(family.prefix)]
        assert numbers == list(range(1, len(numbers) + 1)), family.prefix


def test_lookup_and_iteration(spec: Registry) -> None:
    assert spec["HDR-1"].title == "Magic"
    assert spec["HDR-1"].family == "HDR"
    assert "ZONE-1" in spec and "ZONE-999" not in spec
    assert spec.get("ZONE-999") is None
    with pytest.raises(KeyError, match="ZONE-999"):
        spec["ZONE-999"]
    assert [clause.id for clause in spec][:2] == ["HDR-1", "HDR-2"]
    assert all(clause.family == "WP" for clause in spec.family("WP"))


def test_clauses_are_frozen(spec: Registry) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec["HDR-1"].level = "MAY"  # type: ignore[misc]


def test_load_is_cached(spec: Registry) -> None:
    assert load() is spec


# --------------------------------------------------------------------------- key facts


@pytest.mark.parametrize(
    ("clause_id", "level", "needle"),
    [
        ("HDR-4", "MUST", "at least 9"),
        ("HDR-5", "MUST", "at most 21"),
        ("HDR-14", "MUST", "at most 6"),
        ("RC-4", "MUST", "lower than the number of references"),
        ("RC-5", "SHOULD", "higher than the number of references"),
        ("ZONE-1", "MUST", "exactly when the zoned extension"),
        ("ZONE-3", "MUST", "exactly 56"),
        ("ZONE-10", "MUST", "536870911"),
        ("ZONE-13", "MUST", "max_open_zones is at most max_active_zones"),
        ("ZONE-18", "MUST", "8 * nr_zones"),
        ("WP-2", "MUST", "little-endian"),
        ("WP-4", "MUST", "Bit 59"),
    ],
)
def test_key_facts(spec: Registry, clause_id: str, level: str, needle: str) -> None:
    assert spec[clause_id].level == level
    assert needle in spec[clause_id].rule


def test_implementation_limits_say_so(spec: Registry) -> None:
    limits = spec.resolution("implementation-limits").clauses
    assert limits
    assert all(spec[clause_id].basis == "implementation" for clause_id in limits)


# --------------------------------------------------------------------------- resolutions


def test_every_required_contradiction_is_resolved(spec: Registry) -> None:
    topics = {resolution.topic for resolution in spec.resolutions}
    assert REQUIRED_TOPICS <= topics
    for resolution in spec.resolutions:
        assert resolution.clauses, resolution.id
        for clause_id in resolution.clauses:
            assert clause_id in spec, f"{resolution.id} names unknown {clause_id}"


def facts_text() -> str:
    """The facts file; without it the test skips, except in CI (CI=true), whose checkout
    must have shared/ beside the repo: there its absence fails."""
    if not FACTS_FILE.exists():
        reason = f"{FACTS_FILE} not found (shared/ is not beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(f"not run: {reason}")
    return FACTS_FILE.read_text(encoding="utf-8")


def contradiction_bullets(text: str) -> list[str]:
    """Top-level bullets of the facts file's 'Known contradictions' section, joined."""
    section = re.search(r"^## Known contradictions.*?$(.*?)(?=^## )", text, re.M | re.S)
    assert section, "facts file has no 'Known contradictions' section"
    bullets: list[str] = []
    for line in section.group(1).splitlines():
        if line.startswith("- "):
            bullets.append(line[2:])
        elif line.startswith(" ") and bullets:
            bullets[-1] += " " + line.strip()
    return bullets


def test_facts_anchors_are_quoted_verbatim(spec: Registry) -> None:
    text = " ".join(facts_text().split())
    anchored = [res for res in spec.resolutions if res.facts_anchor]
    assert {res.topic for res in anchored} >= REQUIRED_TOPICS
    for resolution in anchored:
        assert resolution.facts_anchor in text, resolution.id


def test_every_contradiction_in_the_facts_file_has_a_resolution(spec: Registry) -> None:
    bullets = contradiction_bullets(facts_text())
    assert len(bullets) >= 5
    anchors = [res.facts_anchor for res in spec.resolutions if res.facts_anchor]
    for bullet in bullets:
        flat = " ".join(bullet.split())
        assert any(anchor in flat for anchor in anchors), f"unresolved: {bullet[:80]}"


# --------------------------------------------------------------------------- validation


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(RegistryError) as info:
        reg.parse(data)
    return "\n".join(info.value.problems)


def mutated(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(raw_registry())
    edit(data)
    return data


def test_shipped_registry_parses() -> None:
    assert len(reg.parse(raw_registry())) == len(load())


def test_duplicate_id_is_rejected() -> None:
    data = mutated(lambda d: d["clause"].append(dict(d["clause"][0])))
    assert "HDR-1: duplicate id" in problems_of(data)


@pytest.mark.parametrize("bad_id", ["HDR1", "hdr-1", "HDR-0", "HDR-01", "NOPE-1"])
def test_bad_id_is_rejected(bad_id: str) -> None:
    data = mutated(lambda d: d["clause"][0].update(id=bad_id))
    assert bad_id in problems_of(data)


def test_bad_level_is_rejected() -> None:
    data = mutated(lambda d: d["clause"][0].update(level="MUSTNT"))
    assert "level 'MUSTNT'" in problems_of(data)


@pytest.mark.parametrize("field", ["title", "rule", "source", "enforced_by"])
def test_empty_or_missing_field_is_rejected(field: str) -> None:
    assert f"field {field!r} is empty" in problems_of(
        mutated(lambda d: d["clause"][0].update({field: "  "}))
    )
    assert f"missing field {field!r}" in problems_of(mutated(lambda d: d["clause"][0].pop(field)))


def test_unknown_field_and_basis_are_rejected() -> None:
    assert "unknown field 'colour'" in problems_of(
        mutated(lambda d: d["clause"][0].update(colour="red"))
    )
    assert "basis 'folklore'" in problems_of(
        mutated(lambda d: d["clause"][0].update(basis="folklore"))
    )


def test_model_families_must_name_the_model() -> None:
    def edit(data: dict[str, Any]) -> None:
        zsm = next(c for c in data["clause"] if c["id"].startswith("ZSM-"))
        zsm["enforced_by"] = "check_zoned.limits"

    assert "enforced by 'reference.zones'" in problems_of(mutated(edit))


def test_long_rule_is_rejected() -> None:
    long_rule = "One. Two. Three. Four."
    assert "4 sentences" in problems_of(mutated(lambda d: d["clause"][0].update(rule=long_rule)))


def test_dangling_reference_in_prose_is_rejected() -> None:
    data = mutated(lambda d: d["clause"][0].update(notes="See RC-99 and RES-42."))
    problems = problems_of(data)
    assert "unknown id RC-99" in problems and "unknown id RES-42" in problems


def test_resolution_naming_unknown_clause_is_rejected() -> None:
    data = mutated(lambda d: d["resolution"][0]["clauses"].append("ZONE-999"))
    assert "unknown clause 'ZONE-999'" in problems_of(data)


def test_all_problems_are_reported_at_once() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["clause"][0]["level"] = "NEVER"
        data["clause"][1]["title"] = ""

    problems = problems_of(mutated(edit))
    assert "HDR-1" in problems and "HDR-2" in problems


def test_bad_toml_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="not valid TOML"):
        reg.loads("[[clause]\n")
