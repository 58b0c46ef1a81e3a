"""The spec registry: spec/clauses.toml loaded, validated and rendered as SPEC.md.

    from qcow2harness.spec.registry import load
    spec = load()
    spec["HDR-4"].level          # "MUST"
    for clause in spec.family("ZONE"): ...

SPEC.md is generated from the registry; regenerate it with
    python -m qcow2harness.spec.registry --write
and check it with --check (the test suite does the same).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from qcow2harness.errors import HarnessError

if TYPE_CHECKING:
    from pathlib import Path

Level = Literal["MUST", "SHOULD", "MAY"]
Basis = Literal["spec", "implementation", "decision"]
LEVELS: tuple[str, ...] = get_args(Level)
BASES: tuple[str, ...] = get_args(Basis)

REGISTRY_FILE = "clauses.toml"
SPEC_FILE = "SPEC.md"

# Families whose clauses the reference model enforces, not the image checker.
MODEL_ENFORCERS: Mapping[str, str] = {
    "ZSM": "reference.zones",
    "PERS": "reference.persistence",
    "TOOL": "reference.tools",
}

CLAUSE_ID = re.compile(r"^(?P<family>[A-Z][A-Z0-9]*)-(?P<number>[1-9][0-9]*)$")
RESOLUTION_ID = re.compile(r"^RES-[1-9][0-9]*$")
TOPIC = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ENFORCER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$")
# Any token in prose that looks like a clause or resolution id.
ID_TOKEN = re.compile(r"\b([A-Z][A-Z0-9]*-[1-9][0-9]*)\b")
# Sentence ends: . ! ? followed by whitespace and a capital/bracket, or the end.
SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z(\"']|$)")
MAX_RULE_SENTENCES = 3

CLAUSE_KEYS = {"id", "level", "title", "rule", "source", "enforced_by"}
CLAUSE_OPTIONAL_KEYS = {"basis", "notes"}
FAMILY_KEYS = {"prefix", "title", "description"}
RESOLUTION_KEYS = {"id", "topic", "conflict", "decision", "rationale", "clauses"}
RESOLUTION_OPTIONAL_KEYS = {"facts_anchor"}
TOP_LEVEL_KEYS = {"meta", "family", "clause", "resolution"}


class RegistryError(HarnessError):
    """clauses.toml is malformed. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        listing = "\n  ".join(self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the spec registry:\n  {listing}")


@dataclass(frozen=True)
class Family:
    prefix: str
    title: str
    description: str


@dataclass(frozen=True)
class Clause:
    id: str
    level: Level
    title: str
    rule: str
    source: str
    enforced_by: str
    basis: Basis = "spec"
    notes: str = ""

    @property
    def family(self) -> str:
        return self.id.rsplit("-", 1)[0]

    @property
    def number(self) -> int:
        return int(self.id.rsplit("-", 1)[1])


@dataclass(frozen=True)
class Resolution:
    id: str
    topic: str
    conflict: str
    decision: str
    rationale: str
    clauses: tuple[str, ...]
    facts_anchor: str = ""


class Registry:
    """All clauses in file order, looked up by id; families and resolutions beside them."""

    def __init__(
        self,
        meta: Mapping[str, str],
        families: Sequence[Family],
        clauses: Sequence[Clause],
        resolutions: Sequence[Resolution],
    ) -> None:
        self.meta: Mapping[str, str] = dict(meta)
        self.families: tuple[Family, ...] = tuple(families)
        self.clauses: tuple[Clause, ...] = tuple(clauses)
        self.resolutions: tuple[Resolution, ...] = tuple(resolutions)
        self._by_id = {clause.id: clause for clause in self.clauses}
        # Each clause's level by id: the checker looks one up per finding.
        self.levels: Mapping[str, Level] = {clause.id: clause.level for clause in self.clauses}

    def __getitem__(self, clause_id: str) -> Clause:
        try:
            return self._by_id[clause_id]
        except KeyError:
            raise KeyError(f"no spec clause {clause_id!r}") from None

    def __contains__(self, clause_id: object) -> bool:
        return clause_id in self._by_id

    def __iter__(self) -> Iterator[Clause]:
        return iter(self.clauses)

    def __len__(self) -> int:
        return len(self.clauses)

    def get(self, clause_id: str) -> Clause | None:
        return self._by_id.get(clause_id)

    def family(self, prefix: str) -> tuple[Clause, ...]:
        return tuple(clause for clause in self.clauses if clause.family == prefix)

    def resolution(self, topic: str) -> Resolution:
        for resolution in self.resolutions:
            if resolution.topic == topic:
                return resolution
        raise KeyError(f"no resolution on {topic!r}")


# --------------------------------------------------------------------------- loading


@functools.cache
def load() -> Registry:
    """The registry shipped with the package (spec/clauses.toml), validated."""
    # A file beside this module (the wheel installs it so); read without importlib's
    # resources and pathlib, which a small check's start-up would pay for.
    with open(os.path.join(os.path.dirname(__file__), REGISTRY_FILE), encoding="utf-8") as f:
        text = f.read()
    return loads(text)


def loads(text: str) -> Registry:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError([f"{REGISTRY_FILE} is not valid TOML: {exc}"]) from exc
    return parse(data)


def parse(data: Mapping[str, Any]) -> Registry:
    """Validate parsed TOML and build the registry; raise RegistryError listing all problems."""
    problems: list[str] = []

    for key in sorted(set(data) - TOP_LEVEL_KEYS):
        problems.append(f"unknown top-level key {key!r}")

    meta = _parse_meta(data.get("meta", {}), problems)
    families = _parse_families(_table_list(data, "family", problems), problems)
    family_prefixes = {family.prefix for family in families}
    clauses = _parse_clauses(_table_list(data, "clause", problems), family_prefixes, problems)
    clause_ids = {clause.id for clause in clauses}
    resolutions = _parse_resolutions(
        _table_list(data, "resolution", problems), clause_ids, problems
    )

    _check_cross_references(clauses, resolutions, family_prefixes, problems)
    for family in families:
        if not any(clause.family == family.prefix for clause in clauses):
            problems.append(f"family {family.prefix} has no clauses")

    if problems:
        raise RegistryError(problems)
    return Registry(meta, families, clauses, resolutions)


def _table_list(data: Mapping[str, Any], key: str, problems: list[str]) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.append(f"{key!r} must be an array of tables ([[{key}]])")
        return []
    return value


def _text_fields(
    table: Mapping[str, Any],
    where: str,
    required: set[str],
    optional: set[str],
    problems: list[str],
) -> dict[str, str]:
    """The string fields of one table; records missing, empty and unknown keys."""
    fields: dict[str, str] = {}
    for key in sorted(set(table) - required - optional):
        problems.append(f"{where}: unknown field {key!r}")
    for key in sorted(required | optional):
        if key not in table:
            if key in required:
                problems.append(f"{where}: missing field {key!r}")
            continue
        value = table[key]
        if not isinstance(value, str):
            problems.append(f"{where}: field {key!r} must be a string")
        elif not value.strip():
            problems.append(f"{where}: field {key!r} is empty")
        elif value != value.strip():
            problems.append(f"{where}: field {key!r} has leading or trailing whitespace")
        else:
            fields[key] = value
    return fields


def _parse_meta(table: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(table, dict):
        problems.append("'meta' must be a table")
        return {}
    meta: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, str) and value.strip():
            meta[key] = value
        else:
            problems.append(f"meta: field {key!r} must be a non-empty string")
    if "title" not in meta:
        problems.append("meta: missing field 'title'")
    return meta


def _parse_families(tables: list[Mapping[str, Any]], problems: list[str]) -> list[Family]:
    families: list[Family] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        where = f"family #{index + 1}"
        fields = _text_fields(table, where, FAMILY_KEYS, set(), problems)
        if set(fields) != FAMILY_KEYS:
            continue
        prefix = fields["prefix"]
        if not re.fullmatch(r"[A-Z][A-Z0-9]*", prefix) or prefix == "RES":
            problems.append(f"{where}: bad prefix {prefix!r}")
            continue
        if prefix in seen:
            problems.append(f"{where}: duplicate family {prefix}")
            continue
        seen.add(prefix)
        families.append(Family(prefix, fields["title"], fields["description"]))
    return families


def _parse_clauses(
    tables: list[Mapping[str, Any]], family_prefixes: set[str], problems: list[str]
) -> list[Clause]:
    clauses: list[Clause] = []
    seen: set[str] = set()
    last_number: dict[str, int] = {}
    for index, table in enumerate(tables):
        raw_id = table.get("id")
        where = f"clause {raw_id}" if isinstance(raw_id, str) else f"clause #{index + 1}"
        fields = _text_fields(table, where, CLAUSE_KEYS, CLAUSE_OPTIONAL_KEYS, problems)
        if not CLAUSE_KEYS <= set(fields):
            continue
        clause_id = fields["id"]
        match = CLAUSE_ID.fullmatch(clause_id)
        if match is None:
            problems.append(f"{where}: id does not look like FAMILY-n")
            continue
        family, number = match["family"], int(match["number"])
        ok = True
        if family not in family_prefixes:
            problems.append(f"{where}: family {family} is not declared in [[family]]")
            ok = False
        if clause_id in seen:
            problems.append(f"{where}: duplicate id")
            ok = False
        elif number <= last_number.get(family, 0):
            problems.append(f"{where}: ids of a family must increase in file order")
        seen.add(clause_id)
        last_number[family] = max(number, last_number.get(family, 0))
        if fields["level"] not in LEVELS:
            problems.append(f"{where}: level {fields['level']!r} is not one of {LEVELS}")
            ok = False
        basis = fields.get("basis", "spec")
        if basis not in BASES:
            problems.append(f"{where}: basis {basis!r} is not one of {BASES}")
            ok = False
        ok &= _check_enforcer(where, family, fields["enforced_by"], problems)
        ok &= _check_prose(where, fields, problems)
        if ok:
            clauses.append(
                Clause(
                    id=clause_id,
                    level=cast(Level, fields["level"]),
                    title=fields["title"],
                    rule=fields["rule"],
                    source=fields["source"],
                    enforced_by=fields["enforced_by"],
                    basis=cast(Basis, basis),
                    notes=fields.get("notes", ""),
                )
            )
    return clauses


def _check_enforcer(where: str, family: str, enforcer: str, problems: list[str]) -> bool:
    if not ENFORCER.fullmatch(enforcer):
        problems.append(f"{where}: enforced_by {enforcer!r} is not a dotted name")
        return False
    model = MODEL_ENFORCERS.get(family)
    if model is not None and enforcer != model:
        problems.append(f"{where}: {family} clauses are enforced by {model!r}")
        return False
    if model is None and not enforcer.startswith("check_"):
        problems.append(f"{where}: enforced_by must name a check_* function")
        return False
    return True


def _check_prose(where: str, fields: Mapping[str, str], problems: list[str]) -> bool:
    ok = True
    for key in ("title", "rule", "source", "enforced_by"):
        if "\n" in fields[key]:
            problems.append(f"{where}: field {key!r} must be one line")
            ok = False
    rule = fields["rule"]
    if not rule.endswith("."):
        problems.append(f"{where}: rule must end with a full stop")
        ok = False
    sentences = len(SENTENCE_END.findall(rule))
    if sentences > MAX_RULE_SENTENCES:
        problems.append(f"{where}: rule has {sentences} sentences (at most {MAX_RULE_SENTENCES})")
        ok = False
    return ok


def _parse_resolutions(
    tables: list[Mapping[str, Any]], clause_ids: set[str], problems: list[str]
) -> list[Resolution]:
    resolutions: list[Resolution] = []
    seen_ids: set[str] = set()
    seen_topics: set[str] = set()
    text_keys = RESOLUTION_KEYS - {"clauses"}
    for index, table in enumerate(tables):
        raw_id = table.get("id")
        where = f"resolution {raw_id}" if isinstance(raw_id, str) else f"resolution #{index + 1}"
        stripped = {key: value for key, value in table.items() if key != "clauses"}
        fields = _text_fields(stripped, where, text_keys, RESOLUTION_OPTIONAL_KEYS, problems)
        clauses = table.get("clauses")
        if not isinstance(clauses, list) or not clauses:
            problems.append(f"{where}: 'clauses' must be a non-empty list of clause ids")
            continue
        if not text_keys <= set(fields):
            continue
        ok = True
        if not RESOLUTION_ID.fullmatch(fields["id"]):
            problems.append(f"{where}: id does not look like RES-n")
            ok = False
        if not TOPIC.fullmatch(fields["topic"]):
            problems.append(f"{where}: topic must be kebab-case")
            ok = False
        if fields["id"] in seen_ids:
            problems.append(f"{where}: duplicate id")
            ok = False
        if fields["topic"] in seen_topics:
            problems.append(f"{where}: duplicate topic {fields['topic']!r}")
            ok = False
        seen_ids.add(fields["id"])
        seen_topics.add(fields["topic"])
        for clause_id in clauses:
            if clause_id not in clause_ids:
                problems.append(f"{where}: names unknown clause {clause_id!r}")
                ok = False
        if len(set(clauses)) != len(clauses):
            problems.append(f"{where}: names a clause twice")
            ok = False
        if ok:
            resolutions.append(
                Resolution(
                    id=fields["id"],
                    topic=fields["topic"],
                    conflict=fields["conflict"],
                    decision=fields["decision"],
                    rationale=fields["rationale"],
                    clauses=tuple(clauses),
                    facts_anchor=fields.get("facts_anchor", ""),
                )
            )
    return resolutions


def _check_cross_references(
    clauses: Sequence[Clause],
    resolutions: Sequence[Resolution],
    family_prefixes: set[str],
    problems: list[str],
) -> None:
    """Every id mentioned in prose (FAMILY-n or RES-n) must exist."""
    known = {clause.id for clause in clauses} | {res.id for res in resolutions}
    prose: list[tuple[str, str]] = []
    for clause in clauses:
        prose += [(f"clause {clause.id}", clause.rule), (f"clause {clause.id}", clause.notes)]
    for res in resolutions:
        for text in (res.conflict, res.decision, res.rationale):
            prose.append((f"resolution {res.id}", text))
    for where, text in prose:
        for token in ID_TOKEN.findall(text):
            family = token.rsplit("-", 1)[0]
            if (family in family_prefixes or family == "RES") and token not in known:
                problems.append(f"{where}: mentions unknown id {token}")


# --------------------------------------------------------------------------- rendering

LEVEL_MEANING = {
    "MUST": "a violation is corruption or a spec error (`check` exit 2)",
    "SHOULD": "a leak-type finding: the image works but needs attention (`check` exit 3)",
    "MAY": "an explicit permission; an image that uses it gets a note, which is informational"
           " (listed under `notes`, never a violation, `check` exit code unaffected)",
}
BASIS_MEANING = {
    "spec": "stated by a written source (qcow2.rst, the zoned text, a review)",
    "implementation": "a limit of QEMU's implementation, not of the format",
    "decision": "our decision where the sources are silent or disagree (see the resolutions)",
}


def render_markdown(registry: Registry) -> str:
    """The human document, derived entirely from the registry."""
    meta = registry.meta
    out: list[str] = [
        "<!-- Generated from spec/clauses.toml by"
        " `python -m qcow2harness.spec.registry --write`. Do not edit by hand. -->",
        "",
        f"# {meta['title']}",
        "",
        "Every verdict of `qcow2-harness check` and of the reference model cites one of the"
        " clauses below by id. Clause ids are stable: a withdrawn clause keeps its number.",
        "",
    ]
    if "qcow2_rst_commit" in meta:
        commit = meta["qcow2_rst_commit"]
        out += [f"- qcow2 core: `docs/interop/qcow2.rst` at QEMU commit `{commit}`."]
    if "zoned_text" in meta:
        out += [f"- Zoned extension: {meta['zoned_text']}."]
    out += ["", "Levels:", ""]
    out += [f"- **{level}**: {LEVEL_MEANING[level]}." for level in LEVELS]
    out += ["", "Basis (shown when it is not `spec`):", ""]
    out += [f"- `{basis}`: {BASIS_MEANING[basis]}." for basis in BASES]
    out += ["", "## Contents", "", "| Family | Title | Clauses | MUST | SHOULD | MAY |"]
    out += ["|---|---|---|---|---|---|"]
    for family in registry.families:
        members = registry.family(family.prefix)
        counts = [sum(1 for c in members if c.level == level) for level in LEVELS]
        out.append(
            f"| [{family.prefix}](#{family.prefix.lower()}) | {family.title} | {len(members)} | "
            + " | ".join(str(count) for count in counts)
            + " |"
        )
    total = [sum(1 for c in registry if c.level == level) for level in LEVELS]
    out.append(f"| | **Total** | {len(registry)} | " + " | ".join(str(n) for n in total) + " |")
    out += [
        f"| [RES](#resolutions) | Resolved contradictions | {len(registry.resolutions)} | | | |",
        "",
    ]

    for family in registry.families:
        out += [
            f'<a id="{family.prefix.lower()}"></a>',
            "",
            f"## {family.prefix}: {family.title}",
            "",
            family.description,
            "",
        ]
        for clause in registry.family(family.prefix):
            out += _render_clause(clause)

    out += ['<a id="resolutions"></a>', "", "## Resolved contradictions", ""]
    out += [
        "Where the sources disagree or are silent, this is what the spec decides, and which"
        " clauses carry the decision.",
        "",
    ]
    for res in registry.resolutions:
        out += [
            f'<a id="{res.id}"></a>',
            "",
            f"### {res.id}: {res.topic}",
            "",
            f"- **Conflict:** {res.conflict}",
            f"- **Decision:** {res.decision}",
            f"- **Why:** {res.rationale}",
            "- **Clauses:** " + ", ".join(f"[{cid}](#{cid})" for cid in res.clauses),
            "",
        ]
    return "\n".join(out).rstrip("\n") + "\n"


def _render_clause(clause: Clause) -> list[str]:
    facts = [f"**{clause.level}**", f"source: {clause.source}"]
    facts.append(f"enforced by `{clause.enforced_by}`")
    if clause.basis != "spec":
        facts.append(f"basis: `{clause.basis}`")
    lines = [
        f'<a id="{clause.id}"></a>',
        "",
        f"### {clause.id}: {clause.title}",
        "",
        " · ".join(facts),
        "",
        clause.rule,
        "",
    ]
    if clause.notes:
        lines += [f"*Note:* {clause.notes}", ""]
    return lines


# --------------------------------------------------------------------------- entry point


def spec_md_path() -> Path:
    """SPEC.md in the source tree (the package is installed editable for development)."""
    from pathlib import Path

    return Path(__file__).with_name(SPEC_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m qcow2harness.spec.registry",
        description="Validate spec/clauses.toml and render spec/SPEC.md from it.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite SPEC.md")
    action.add_argument("--check", action="store_true", help="fail if SPEC.md is stale")
    args = parser.parse_args(argv)

    try:
        text = render_markdown(load())
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 2
    target = spec_md_path()
    if args.write:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    elif args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is stale: run with --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
