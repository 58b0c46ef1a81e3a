"""Merging shard results (`--json FILE` of crash, fuzz, the nightly properties and the
mutation campaign).

Each result names its kind ("crash", "fuzz", "properties", "mutation") and its shard
({"index", "count", ...}). The merge checks that the shards belong together (same
campaign, same shard count, same capture or seed corpus), that no part came twice
and that none is missing, and then adds them up into one report whose exit code is
the one the unsharded run would have had: 0 nothing found, 2 something found.
A missing shard is an error (exit 1) unless `allow_partial`, and then the report
says which parts it lacks.

Digests (qcow2harness.sharding) prove disjoint and complete parts: the XOR of the
parts' digests must equal the digest of the whole each shard was cut from.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qcow2harness.errors import UsageError
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK
from qcow2harness.sharding import xor_digests

Result = dict[str, Any]


@dataclass
class Merged:
    kind: str
    exit_code: int
    summary: str
    report: dict[str, Any]
    missing: list[str] = field(default_factory=list)  # parts not merged (allow_partial)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "exit_code": self.exit_code, "summary": self.summary,
                "missing": self.missing, **self.report}


def load(paths: Iterable[str]) -> list[tuple[str, Result]]:
    """(file, result) for every result in the files; a file may hold several (--matrix:
    {"schema_version", "campaigns": [...]}). Each file is read within MAX_RESULT_BYTES
    and validated against its kind's schema (docs/schema/) before anything uses it."""
    out: list[tuple[str, Result]] = []
    for path in paths:
        payload = read_result(path)
        items = payload.get("campaigns", [payload])
        for number, item in enumerate(items):
            if "kind" not in item:
                where = f"/campaigns/{number}/kind" if "campaigns" in payload else "/kind"
                raise UsageError(f"{path}: {where}: missing: not a shard result; write one "
                                 "with --json FILE")
            _check_bounds(path, f"/campaigns/{number}" if "campaigns" in payload else "", item)
            out.append((path, item))
    if not out:
        raise UsageError("no results to merge")
    return out


# --- reading and validating one result file -------------------------------------------

MAX_RESULT_BYTES = 64 * 1024 * 1024  # a result file larger than this is refused unread
# Shard counts, matrix sizes and wanted rounds the merge enumerates: larger ones are
# refused (no campaign is cut this finely) instead of listing billions of missing parts.
MAX_PARTS = 100_000
# kind -> docs/schema/NAME.schema.json that describes its result file
SCHEMA_OF_KIND = {"crash": "crash", "fuzz": "fuzz", "properties": "properties",
                  "mutation": "mutation"}


def read_result(path: str) -> dict[str, Any]:
    """One result file, parsed and valid against its kind's schema; UsageError (exit 1)
    naming the file, and the field (a JSON pointer) when the JSON is not what it says."""
    from qcow2harness.inputfile import read_bounded

    try:
        data = read_bounded(path, MAX_RESULT_BYTES)
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    try:
        payload = json.loads(data)
    except RecursionError:
        raise UsageError(f"{path}: not JSON that can be read: nested too deeply") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not JSON: not UTF-8 text") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer of 4300+ digits
        raise UsageError(f"{path}: not JSON: {_clip(str(error))}") from None
    if not isinstance(payload, dict):
        raise UsageError(f"{path}: /: not a shard result: a JSON {_json_type(payload)}, "
                         "not an object")
    kind = payload.get("kind", "crash" if "campaigns" in payload else None)
    if kind is None:
        raise UsageError(f"{path}: /kind: missing: not a shard result; write one with "
                         "--json FILE")
    if not isinstance(kind, str) or kind not in SCHEMA_OF_KIND:
        raise UsageError(f"{path}: /kind: unknown result kind {_clip(repr(kind))} (want "
                         f"{', '.join(sorted(SCHEMA_OF_KIND))})")
    # A crash file is one campaign or the --matrix list (crash.schema.json's oneOf).
    variant = ("matrix" if "campaigns" in payload else "campaign") if kind == "crash" else None
    problem = schema_problem(SCHEMA_OF_KIND[kind], payload, variant)
    if problem is not None:
        raise UsageError(f"{path}: {problem} (docs/schema/{SCHEMA_OF_KIND[kind]}"
                         ".schema.json)")
    return payload


def schema_problem(name: str, document: Any, variant: str | None = None) -> str | None:
    """The first way `document` breaks docs/schema/NAME.schema.json, as 'POINTER: what',
    or None when it is valid. `variant` names (by title) the branch of a schema's top
    oneOf the document means to be, so that the problem is told within that branch."""

    validator, branches = _validator(name)
    try:
        error = _first(validator.iter_errors(document))
        if error is not None and error.validator == "oneOf" and variant in branches:
            error = _first(branches[variant].iter_errors(document)) or error
    except RecursionError:
        return "/: nested too deeply to validate"
    if error is None:
        return None
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        absent = [key for key in error.validator_value if key not in error.instance]
        if absent:
            return f"{_pointer([*path, absent[0]])}: missing (required)"
    return f"{_pointer(path)}: {_clip(error.message)}"


def _first(errors: Iterable[Any]) -> Any:
    """jsonschema's best match, once the unevaluatedProperties errors that only echo
    another failure are set aside (a property whose subschema failed is not
    "evaluated", so the whole object's unevaluatedProperties fails with it)."""
    import jsonschema

    errors = list(errors)
    real = [e for e in errors if e.validator != "unevaluatedProperties"]
    return jsonschema.exceptions.best_match(real or errors)


_validators: dict[str, tuple[Any, dict[str, Any]]] = {}


def _validator(name: str) -> tuple[Any, dict[str, Any]]:
    """The schema's validator, and one per titled branch of its top-level oneOf."""
    if name not in _validators:
        import jsonschema
        from referencing import Registry, Resource

        schema = json.loads(schema_text(name))
        registry: Registry[Any] = Registry().with_resource(
            schema["$id"], Resource.from_contents(schema))
        branches = {
            branch["title"]: jsonschema.Draft202012Validator(
                {"$ref": f"{schema['$id']}#/oneOf/{number}"}, registry=registry)
            for number, branch in enumerate(schema.get("oneOf", [])) if "title" in branch}
        _validators[name] = (jsonschema.Draft202012Validator(schema), branches)
    return _validators[name]


def schema_text(name: str) -> str:
    """docs/schema/NAME.schema.json: shipped in the wheel as qcow2harness/schema/, read
    from the checkout's docs/schema/ otherwise (an editable install, the sdist)."""
    from importlib import resources
    from pathlib import Path

    file_name = f"{name}.schema.json"
    shipped = resources.files("qcow2harness").joinpath("schema", file_name)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "docs" / "schema" / file_name
    try:
        return checkout.read_text(encoding="utf-8")
    except OSError:
        raise UsageError(f"the schema {file_name} is missing from this installation "
                         "(qcow2harness/schema/ or docs/schema/)") from None


def _check_bounds(path: str, where: str, result: Result) -> None:
    """Refuse counts the merge would enumerate when they are beyond any real campaign."""
    for pointer, value in ((f"{where}/shard/count", (result.get("shard") or {}).get("count")),
                           (f"{where}/matrix/campaigns",
                            (result.get("matrix") or {}).get("campaigns")),
                           (f"{where}/rounds_wanted", result.get("rounds_wanted"))):
        if isinstance(value, int) and value > MAX_PARTS:
            raise UsageError(f"{path}: {pointer}: {value} is more than the {MAX_PARTS} "
                             "parts merge enumerates")


def _pointer(parts: list[str]) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def merge(results: list[tuple[str, Result]], allow_partial: bool = False) -> Merged:
    kinds = {r["kind"] for _, r in results}
    if len(kinds) != 1:
        raise UsageError(f"cannot merge different kinds of result: {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    if kind not in MERGERS:
        raise UsageError(f"unknown result kind {kind!r} (want {', '.join(sorted(MERGERS))})")
    merged = MERGERS[kind](results)
    if merged.missing and not allow_partial:
        raise IncompleteError(merged)
    return merged


class IncompleteError(UsageError):
    def __init__(self, merged: Merged) -> None:
        super().__init__(f"incomplete: missing {'; '.join(merged.missing)} "
                         "(--allow-partial merges what is there)")
        self.merged = merged


def _shard(result: Result) -> tuple[int, int]:
    shard = result.get("shard") or {"index": 0, "count": 1}
    return int(shard["index"]), int(shard["count"])


def _parts(what: str, results: list[tuple[str, Result]]) -> tuple[int, dict[int, Result],
                                                                     list[str]]:
    """The shard count, the results by index, and the missing indices as text. Refuses
    mixed counts and a shard given twice."""
    counts = {_shard(r)[1] for _, r in results}
    if len(counts) != 1:
        raise UsageError(f"{what}: shards of different counts ({sorted(counts)}) do not "
                         "partition the same work")
    count = counts.pop()
    by_index: dict[int, Result] = {}
    for path, result in results:
        index = _shard(result)[0]
        if index >= count:
            raise UsageError(f"{path}: /shard/index: shard {index} of {count} does not exist")
        if index in by_index:
            raise UsageError(f"{what}: shard {index}/{count} given twice (again in {path})")
        by_index[index] = result
    missing = [f"{what}: shard {i}/{count}" for i in range(count) if i not in by_index]
    return count, by_index, missing


def _same(what: str, results: Iterable[Result], key: str) -> Any:
    values = {json.dumps(r.get(key), sort_keys=True) for r in results}
    if len(values) > 1:
        raise UsageError(f"{what}: shards disagree on {key} ({len(values)} different values)")
    return json.loads(values.pop()) if values else None


# --- crash ---------------------------------------------------------------------------

CRASH_SUMMED = ("states_checked", "qemu_reads", "raw_fallbacks")


def _campaign_key(path: str, result: Result) -> str:
    """The campaign's command without where it ran (--workdir, --reuse-capture)."""
    try:
        argv = shlex.split(result.get("command", result.get("campaign", "")))
    except ValueError as error:  # an unclosed quote: no crash run writes one
        raise UsageError(f"{path}: /command: not a shell command line ({error})") from None
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--workdir":
            skip = True
        elif word != "--reuse-capture":
            out.append(word)
    return shlex.join(out)


def _merge_campaign(key: str, results: list[tuple[str, Result]]) -> tuple[Result, list[str]]:
    what = results[0][1].get("campaign", key)
    count, by_index, missing = _parts(what, results)
    shards = [by_index[i] for i in sorted(by_index)]
    first = dict(shards[0])
    if count == 1:
        return first, missing
    digests = {r.get("capture_digest") for r in shards}
    if None in digests:
        raise UsageError(f"{what}: results carry no capture digest (not from --shard)")
    if len(digests) > 1:
        raise UsageError(f"{what}: the shards judged different write logs (capture_digest; "
                         "this workload's QEMU log is not reproducible): capture once with "
                         "--capture-only --workdir DIR, then shard with --reuse-capture")
    for name in ("states_total", "states_total_digest", "writer_version", "log_entries",
                 "epochs", "exhaustive", "states_possible"):
        _same(what, shards, name)
    merged = first
    for name in CRASH_SUMMED:
        merged[name] = sum(int(r.get(name, 0)) for r in shards)
    merged["violations"] = [v for r in shards for v in r["violations"]]
    merged["findings"] = _merge_findings(shards)
    repaired = [r["repair"] for r in shards if r.get("repair")]
    if repaired:
        from qcow2harness.crash.repair import RepairStats

        stats = RepairStats()
        for part in repaired:
            stats.merge(RepairStats.from_json(part))
        merged["repair"] = stats.to_json()
    merged["failing_states"] = len({v["state"] for v in merged["violations"]})
    merged["seconds"] = round(sum(float(r.get("seconds", 0)) for r in shards), 3)
    merged["wall_seconds"] = round(max(float(r.get("seconds", 0)) for r in shards), 3)
    judging = merged["seconds"]
    merged["states_per_second"] = round(merged["states_checked"] / judging, 1) if judging else 0
    merged["states_digest"] = xor_digests(r["states_digest"] for r in shards)
    merged["shard"] = {"index": 0, "count": 1, "by": "states",
                       "merged_from": [f"{i}/{count}" for i in sorted(by_index)]}
    merged["not_run"] = "; ".join(sorted({r["not_run"] for r in shards if r.get("not_run")}))
    if not missing and merged["states_digest"] != merged["states_total_digest"]:
        raise UsageError(f"{what}: the shards' states do not add up to the campaign's "
                         "(different enumerations: same --seed, --max-states, --torn?)")
    if missing:
        merged["exhaustive"] = False
    return merged, missing


def _merge_findings(shards: list[Result]) -> list[Result]:
    """Findings of one campaign's shards, united by cause: their counts add up, the
    first is the earliest, the example is the smallest state (crash/campaign.py)."""
    def size(finding: Result) -> tuple[int, int, bool]:
        state = str(finding["state"])
        if ":" not in state:
            return (-1, 0, False)
        return _state_size(state)

    merged: dict[tuple[str, str], Result] = {}
    for result in shards:
        for finding in result.get("findings", []):
            key = (finding["property"], finding["cause"])
            kept = merged.get(key)
            if kept is None:
                merged[key] = dict(finding)
                continue
            kept["states"] += finding["states"]
            kept["first_seconds"] = min(kept["first_seconds"], finding["first_seconds"])
            if size(finding) < size(kept):
                for name in ("state", "message", "reproduce", "reproducer"):
                    kept[name] = finding[name]
    return sorted(merged.values(), key=lambda f: (f["first_seconds"], f["property"]))


def _state_size(state: str) -> tuple[int, int, bool]:
    """(epoch, writes applied, torn) of a state ID of the schema's pattern (the grammar is
    crash/states.py's CrashState), counted from its ranges: expanding them, as
    CrashState.parse does, would let an ID such as 0:0-999999999999 exhaust memory."""
    epoch, _, rest = state.partition(":")
    rest, plus, _ = rest.partition("+")
    applied = 0
    for part in filter(None, rest.split(",")):
        lo, _, hi = part.partition("-")
        applied += max(0, int(hi or lo) - int(lo) + 1)
    return int(epoch), applied, bool(plus)


def merge_crash(results: list[tuple[str, Result]]) -> Merged:
    from qcow2harness.crash.shard import counts_against

    matrix = [(p, r) for p, r in results if (r.get("shard") or {}).get("by") == "campaign"]
    if matrix and len(matrix) != len(results):
        raise UsageError("cannot merge --matrix results with single-campaign results")
    missing: list[str] = []
    if matrix:
        count, total = _matrix_parts(matrix, missing)
        campaigns = sorted((r for _, r in matrix), key=lambda r: r["matrix"]["campaign"])
        merged_results = [dict(r, shard={"index": 0, "count": 1, "by": "campaign"})
                          for r in campaigns]
        shape = f"{len(merged_results)} of {total} matrix campaigns from {count} shard(s)"
    else:
        groups: dict[str, list[tuple[str, Result]]] = {}
        for path, result in results:
            groups.setdefault(_campaign_key(path, result), []).append((path, result))
        merged_results = []
        for key, group in groups.items():
            merged, lacking = _merge_campaign(key, group)
            merged_results.append(merged)
            missing += lacking
        count = max(_shard(r)[1] for _, r in results)
        shape = f"{len(merged_results)} campaign(s) from {len(results)} result(s)"
    failing = any(counts_against(r) for r in merged_results)
    states = sum(int(r.get("states_checked", 0)) for r in merged_results)
    violations = sum(len(r.get("violations", [])) for r in merged_results)
    code = EXIT_INVALID if failing else EXIT_OK
    summary = (f"crash: {shape}: {states} crash states checked, {violations} violation(s)"
               + (f"; MISSING {len(missing)} part(s)" if missing else "") + f"; exit {code}")
    return Merged("crash", code, summary, {"results": merged_results}, missing)


def _matrix_parts(matrix: list[tuple[str, Result]], missing: list[str]) -> tuple[int, int]:
    counts = {_shard(r)[1] for _, r in matrix}
    totals = {r["matrix"]["campaigns"] for _, r in matrix}
    if len(counts) != 1 or len(totals) != 1:
        raise UsageError("matrix shards of different shard counts or matrix sizes")
    count, total = counts.pop(), totals.pop()
    seen: dict[int, str] = {}
    for path, result in matrix:
        if "matrix" not in result:
            raise UsageError(f"{path}: /matrix: missing (required when shard.by is campaign)")
        number = result["matrix"]["campaign"]
        index = _shard(result)[0]
        if number in seen:
            raise UsageError(f"matrix campaign {number} given twice ({seen[number]}, {path})")
        if number % count != index:
            raise UsageError(f"{path}: campaign {number} does not belong to shard "
                             f"{index}/{count}")
        seen[number] = path
    lacking = sorted({n % count for n in range(total) if n not in seen})
    missing += [f"matrix shard {i}/{count}" for i in lacking]
    return count, total


# --- fuzz ----------------------------------------------------------------------------

FUZZ_SAME = ("target", "mutator", "reader", "runs", "time", "max_len", "libfuzzer_args")


def merge_fuzz(results: list[tuple[str, Result]]) -> Merged:
    """Executions, corpus sizes and duplicates add up; findings are united by
    signature; coverage counts cannot be united, so the largest is reported (with each
    shard's). The seed slices must add up to the whole seed corpus."""
    shards = [r for _, r in results]
    what = f"fuzz {shards[0].get('target')}"
    for name in FUZZ_SAME:
        _same(what, shards, name)
    count, by_index, missing = _parts(what, results)
    ordered = [by_index[i] for i in sorted(by_index)]
    slices = [r["seed_slice"] for r in ordered]
    _same(what, slices, "total_digest")
    if not missing and xor_digests(s["digest"] for s in slices) != slices[0]["total_digest"]:
        raise UsageError(f"{what}: the shards' seed slices do not add up to the seed corpus")
    seeds = [seed for r in ordered for seed in r.get("worker_seeds", []) if seed is not None]
    if len(seeds) != len(set(seeds)):
        raise UsageError(f"{what}: shards share libFuzzer seeds ({sorted(seeds)})")
    findings: dict[str, Result] = {}
    repeated = 0
    for result in ordered:
        for finding in result["findings"]:
            if finding["signature"] in findings:
                repeated += 1
            else:
                findings[finding["signature"]] = finding
    report = {key: ordered[0].get(key) for key in FUZZ_SAME}
    report |= {
        "shard": {"index": 0, "count": 1,
                  "merged_from": [f"{i}/{count}" for i in sorted(by_index)]},
        "worker_seeds": seeds,
        "seed_slice": {"files": sum(s["files"] for s in slices),
                       "digest": xor_digests(s["digest"] for s in slices),
                       "total": slices[0]["total"], "total_digest": slices[0]["total_digest"]},
        "execs": sum(r["execs"] for r in ordered),
        "cov": max(r["cov"] for r in ordered), "ft": max(r["ft"] for r in ordered),
        "cov_per_shard": [r["cov"] for r in ordered],
        "corpus_units": sum(r["corpus_units"] for r in ordered),
        "corpus_bytes": sum(r["corpus_bytes"] for r in ordered),
        "findings": list(findings.values()),
        "duplicates": sum(r["duplicates"] for r in ordered) + repeated,
        "worker_errors": [e for r in ordered for e in r["worker_errors"]],
        "seconds": round(sum(r["seconds"] for r in ordered), 3),
        "wall_seconds": round(max(r["seconds"] for r in ordered), 3),
    }
    cannot = any(r.get("exit_code") == EXIT_CANNOT_RUN for r in ordered)
    code = EXIT_INVALID if findings else EXIT_CANNOT_RUN if cannot else EXIT_OK
    report["exit_code"] = code
    summary = (f"{what}: {len(ordered)} of {count} shard(s), {report['execs']} execs, "
               f"cov {report['cov']} (largest), corpus {report['corpus_units']} units, "
               f"{len(findings)} finding(s)"
               + (f"; MISSING {len(missing)} part(s)" if missing else "") + f"; exit {code}")
    return Merged("fuzz", code, summary, {"result": report}, missing)


# --- properties (nightly) -------------------------------------------------------------

PROPERTIES_SAME = ("suites", "examples_per_round", "steps", "mutants", "seed", "rounds_wanted",
                   "shrink", "expect")


def merge_properties(results: list[tuple[str, Result]]) -> Merged:
    """Rounds are united (round r belongs to shard r mod N), examples added per suite,
    failures listed by round. With --rounds R the shards must cover rounds 0..R-1."""
    shards = [r for _, r in results]
    what = "properties"
    for name in PROPERTIES_SAME:
        _same(what, shards, name)
    count, by_index, missing = _parts(what, results)
    ordered = [by_index[i] for i in sorted(by_index)]
    rounds: list[int] = []
    for index, result in sorted(by_index.items()):
        strays = [r for r in result["rounds"] if r % count != index]
        if strays:
            raise UsageError(f"{what}: shard {index}/{count} ran rounds {strays} of other shards")
        rounds += result["rounds"]
    if len(rounds) != len(set(rounds)):
        raise UsageError(f"{what}: a round ran twice")
    wanted = ordered[0].get("rounds_wanted")
    if wanted is not None:
        lacking = sorted(set(range(wanted)) - set(rounds) - {
            r for r in range(wanted) if r % count not in by_index})
        if lacking:
            missing.append(f"{what}: rounds {lacking} did not run (time ran out?)")
    examples: dict[str, int] = {}
    for result in ordered:
        for suite, number in result["examples"].items():
            examples[suite] = examples.get(suite, 0) + number
    # One failure per finding (suite, identity) across the shards: the first found,
    # with every round that saw it.
    findings: dict[tuple[str, str], dict[str, Any]] = {}
    for failure in sorted((f for r in ordered for f in r["failures"]),
                          key=lambda f: (f["round"], f["suite"])):
        key = (failure["suite"], failure.get("identity") or failure["error"].split("\n")[0])
        kept = findings.setdefault(key, dict(failure))
        kept["rounds_seen"] = sorted(set(kept.get("rounds_seen", [kept["round"]]))
                                     | set(failure.get("rounds_seen", [failure["round"]])))
    failures = list(findings.values())
    expected_seen: dict[str, dict[str, dict[str, Any]]] = {}
    for result in ordered:
        for suite, clauses in result.get("expected_seen", {}).items():
            for clause, seen in clauses.items():
                entry = expected_seen.setdefault(suite, {}).setdefault(
                    clause, {"count": 0, "first": seen["first"]})
                entry["count"] += seen["count"]
    report = {key: ordered[0].get(key) for key in PROPERTIES_SAME}
    report |= {
        "shard": {"index": 0, "count": 1,
                  "merged_from": [f"{i}/{count}" for i in sorted(by_index)]},
        "rounds": sorted(rounds), "examples": examples, "failures": failures,
        "expected_seen": expected_seen,
        "not_run": sorted({n for r in ordered for n in r.get("not_run", [])}),
        "seconds": round(sum(r["seconds"] for r in ordered), 3),
        "wall_seconds": round(max(r["seconds"] for r in ordered), 3),
    }
    code = EXIT_INVALID if failures else EXIT_OK
    report["exit_code"] = code
    summary = (f"{what}: {len(rounds)} round(s) from {len(ordered)} of {count} shard(s), "
               f"{sum(examples.values())} examples, {len(failures)} distinct failure(s)"
               + (f" in rounds {sorted({f['round'] for f in failures})}" if failures else "")
               + (f"; MISSING {len(missing)} part(s)" if missing else "") + f"; exit {code}")
    return Merged("properties", code, summary, {"result": report}, missing)


# --- mutation ------------------------------------------------------------------------

MUTATION_SAME = ("schema_version", "tool", "modules", "tests", "sources_digest",
                 "equivalent_file", "stale_equivalents", "mutants_total",
                 "mutants_total_digest")


def merge_mutation(results: list[tuple[str, Result]]) -> Merged:
    """Mutants are united (mutant i belongs to shard i mod N) and each module's figures
    counted again from them; the shards' mutant digests must add up to the campaign's
    (a --max-mutants or --mutant run is a part, not a shard)."""
    from qcow2harness.mutation import module_figures

    shards = [r for _, r in results]
    what = "mutation"
    for name in MUTATION_SAME:
        _same(what, shards, name)
    count, by_index, missing = _parts(what, results)
    ordered = [by_index[i] for i in sorted(by_index)]
    mutants = [m for r in ordered for m in r["mutants"]]
    ids = [m["id"] for m in mutants]
    if len(ids) != len(set(ids)):
        raise UsageError(f"{what}: a mutant was run by two shards")
    first = ordered[0]
    if not missing and xor_digests(r["mutants_digest"] for r in ordered) \
            != first["mutants_total_digest"]:
        raise UsageError(f"{what}: the shards' mutants do not add up to the campaign's "
                         "(a --max-mutants or --mutant run, or another version of the "
                         "modules?)")
    if missing:
        for index in sorted(set(range(count)) - set(by_index)):
            missing[missing.index(f"{what}: shard {index}/{count}")] += (
                f" (mutants {index}, {index + count}, ... of each module; "
                f"{first['mutants_total']} in all)")
    order = {module: number for number, module in enumerate(first["modules"])}
    mutants.sort(key=lambda m: (order.get(m["module"], len(order)), m["line"], m["operator"],
                                m["k"]))
    baseline: dict[str, float] = {}
    for result in ordered:
        for module, seconds in result["baseline_seconds"].items():
            baseline[module] = max(baseline.get(module, 0.0), seconds)
    seconds = round(sum(float(r["seconds"]) for r in ordered), 3)
    ran = sum(1 for m in mutants if m["outcome"] != "equivalent")
    survived = sum(1 for m in mutants if m["outcome"] == "survived")
    errors = sum(1 for m in mutants if m["outcome"] == "error")
    code = EXIT_INVALID if survived else EXIT_CANNOT_RUN if errors else EXIT_OK
    report = {key: first[key] for key in ("kind", *MUTATION_SAME)}
    report |= {
        "shard": {"index": 0, "count": 1,
                  "merged_from": [f"{i}/{count}" for i in sorted(by_index)]},
        "mutants_digest": xor_digests(r["mutants_digest"] for r in ordered),
        "limited": any(r["limited"] for r in ordered),
        "baseline_seconds": baseline, "mutants": mutants,
        "modules_figures": module_figures(mutants),
        "seconds": seconds,
        "wall_seconds": round(max(float(r["seconds"]) for r in ordered), 3),
        "mutants_per_second": round(ran / seconds, 3) if seconds else 0,
        "exit_code": code,
    }
    rates = ", ".join(f"{module} {_percent(row['kill_rate'])}"
                      for module, row in report["modules_figures"].items())
    summary = (f"{what}: {len(mutants)} of {first['mutants_total']} mutants from "
               f"{len(ordered)} of {count} shard(s), {survived} survived; kill rate {rates}"
               + (f"; MISSING {len(missing)} part(s)" if missing else "") + f"; exit {code}")
    return Merged("mutation", code, summary, {"result": report}, missing)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


MERGERS: dict[str, Callable[[list[tuple[str, Result]]], Merged]] = {
    "crash": merge_crash, "fuzz": merge_fuzz, "properties": merge_properties,
    "mutation": merge_mutation}


__all__ = ["IncompleteError", "MERGERS", "Merged", "load", "merge"]
