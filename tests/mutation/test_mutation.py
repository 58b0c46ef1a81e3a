"""The mutation campaign (qcow2harness/mutation.py): mutant ids, the test selection, the
equivalence file, the forked runner and the merge of its shards."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib
import textwrap
from typing import Any

import pytest

from qcow2harness import mutation
from qcow2harness.errors import UsageError
from qcow2harness.merge import merge, read_result
from qcow2harness.sharding import Shard, id_digest

# What needs the tool itself; the merge and the equivalence file's format do not.
cosmic_ray = pytest.mark.skipif(importlib.util.find_spec("cosmic_ray") is None,
                                reason="not run: cosmic-ray is not installed (the mutation "
                                "extra: pip install -e '.[mutation]')")

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
PERSISTENCE = "reference/persistence.py"
ZONES = "reference/zones.py"

TOY = textwrap.dedent("""\
    from __future__ import annotations

    LIMIT = 4


    def over(count: int | None, extra: list[int]) -> bool:
        total: int = count + 1 + 2
        return total > LIMIT
    """)


# ---------------------------------------------------------------------------
# === mutant ids ===
# ---------------------------------------------------------------------------


@cosmic_ray
def test_ids_name_line_operator_and_index_on_the_line() -> None:
    mutants = mutation.mutants_of("toy.py", TOY)
    ids = [m.id for m in mutants]
    assert len(ids) == len(set(ids))
    adds = [m for m in mutants if m.operator == "core/ReplaceBinaryOperator_Add_Sub"]
    # `count + 1 + 2`: two additions on line 7, told apart by K
    assert [(m.line, m.k) for m in adds] == [(7, 0), (7, 1)]
    assert adds[1].id == "toy.py:7:core/ReplaceBinaryOperator_Add_Sub:1"


@cosmic_ray
def test_annotations_are_not_mutated() -> None:
    # `int | None` (a BitOr) sits only in annotations, never evaluated under PEP 563.
    mutants = mutation.mutants_of("toy.py", TOY)
    assert not [m for m in mutants if m.operator.startswith("core/ReplaceBinaryOperator_BitOr")]
    without_future = TOY.replace("from __future__ import annotations\n", "\n")
    evaluated = mutation.mutants_of("toy.py", without_future)
    assert [m for m in evaluated if m.operator.startswith("core/ReplaceBinaryOperator_BitOr")]


@cosmic_ray
def test_ids_do_not_move_when_code_is_added_below() -> None:
    before = {m.id for m in mutation.mutants_of("toy.py", TOY)}
    after = {m.id for m in mutation.mutants_of("toy.py", TOY + "\n\nSTEP = 1 + 2 > 3\n")}
    assert before < after


@cosmic_ray
def test_each_mutant_changes_its_own_line() -> None:
    for mutant in mutation.mutants_of("toy.py", TOY):
        mutated = mutation.mutated_source(mutant, TOY)
        before, after = mutation.diff_lines(mutant, TOY, mutated)
        assert mutated != TOY
        assert before == TOY.splitlines()[mutant.line - 1].strip()
        assert before != after, mutant.id


@cosmic_ray
def test_shards_partition_the_mutants() -> None:
    every = mutation.mutants_of(PERSISTENCE)
    parts = [mutation.shard_mutants(Shard(i, 3), every) for i in range(3)]
    assert sorted(m.id for part in parts for m in part) == sorted(m.id for m in every)
    assert every[4] in parts[1]  # mutant i belongs to shard i mod N


def _made_up(module: str, count: int) -> list[mutation.Mutant]:
    return [mutation.Mutant(module, line, "core/Op", 0, line) for line in range(1, count + 1)]


def test_a_modules_shard_does_not_depend_on_the_modules_before_it() -> None:
    # An edit that changes one module's mutant count (then --again) must leave every other
    # module's mutants in the shard that ran them.
    later = _made_up("reference/zones.py", 10)
    for count in (7, 8):
        every = _made_up(PERSISTENCE, count) + later
        parts = [mutation.shard_mutants(Shard(i, 2), every) for i in range(2)]
        assert [m.line for m in parts[0] if m in later] == [1, 3, 5, 7, 9]
        assert [m.line for m in parts[1] if m in later] == [2, 4, 6, 8, 10]
        assert sorted(m.id for part in parts for m in part) == sorted(m.id for m in every)


def test_every_module_on_trial_has_tests_and_imports_as_its_file() -> None:
    for module, tests in mutation.TESTS_OF.items():
        assert (REPO / module).is_file(), module
        assert tests and all((REPO / test).is_file() for test in tests), module
        spec = importlib.util.find_spec(mutation.dotted_name(module))
        assert spec is not None and pathlib.Path(str(spec.origin)) == REPO / module


# ---------------------------------------------------------------------------
# === which tests run ===
# ---------------------------------------------------------------------------


def test_a_mutant_runs_the_tests_that_ran_its_function() -> None:
    source = TOY + "\n\ndef under(count: int) -> bool:\n    return count < LIMIT\n"
    bodies = mutation.function_bodies(source)
    assert bodies == [(7, 8), (12, 12)]
    traced = {"order": ["t::a", "t::b", "t::c"],
              "lines": {"": [1, 3, 6, 11], "t::a": [8], "t::b": [12], "t::c": [7, 8]}}
    files = ("t.py",)
    # Any line of the function chooses every test that ran some line of it.
    assert mutation.select_tests(7, bodies, traced, files) == ["t::a", "t::c"]
    assert mutation.select_tests(12, bodies, traced, files) == ["t::b"]
    assert mutation.select_tests(3, bodies, traced, files) == ["t.py"]  # module level
    assert mutation.select_tests(6, bodies, traced, files) == ["t.py"]  # a def line
    traced["lines"] = {"": [1, 3, 6, 11]}
    assert mutation.select_tests(8, bodies, traced, files) == []


def test_the_latest_killers_run_first_and_nothing_else_changes() -> None:
    killers = mutation.Killers()
    tests = ["t::a", "t::b", "t::c", "t::d"]
    f, g = (7, 8), (12, 12)
    assert killers.first(tests, "m.py", f) == tests  # nothing killed yet: baseline order
    killers.record("t::c", "m.py", f)
    killers.record("t::d", "m.py", g)
    # f's own killer, then the module's latest, then the rest in the order given.
    assert killers.first(tests, "m.py", f) == ["t::c", "t::d", "t::a", "t::b"]
    assert killers.first(tests, "m.py", g) == ["t::d", "t::c", "t::a", "t::b"]
    assert killers.first(["t::b", "t::c"], "m.py", g) == ["t::c", "t::b"]  # only those given
    assert killers.first(tests, "other.py", f) == tests
    for number in range(2 * mutation.KILLERS_KEPT):
        killers.record(f"t::{number}", "m.py", f)
    assert len(killers.latest[("m.py", f)]) == mutation.KILLERS_KEPT


# ---------------------------------------------------------------------------
# === the equivalence file ===
# ---------------------------------------------------------------------------


@cosmic_ray
def test_an_entry_goes_stale_when_its_line_changes(tmp_path: pathlib.Path) -> None:
    mutant = mutation.mutants_of("toy.py", TOY)[0]
    line = TOY.splitlines()[mutant.line - 1].strip()
    file = tmp_path / "equivalent.toml"
    file.write_text(f'[[equivalent]]\nid = "{mutant.id}"\nline = "{line}"\nwhy = "a reason"\n')
    entries = mutation.read_equivalents(file)
    assert entries[mutant.id].why == "a reason"
    mutants = mutation.mutants_of("toy.py", TOY)
    assert mutation.stale_equivalents(entries, mutants, {"toy.py": TOY}, ["toy.py"]) == []
    edited = TOY.replace("LIMIT = 4", "LIMIT = 5")
    assert mutation.stale_equivalents(entries, mutation.mutants_of("toy.py", edited),
                                      {"toy.py": edited}, ["toy.py"]) == [mutant.id]


def test_an_entry_without_a_reason_is_refused(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "equivalent.toml"
    file.write_text('[[equivalent]]\nid = "a.py:1:core/X:0"\nline = "x = 1"\nwhy = " "\n')
    with pytest.raises(UsageError, match="missing why"):
        mutation.read_equivalents(file)


def test_one_table_may_name_several_mutants_of_one_line(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "equivalent.toml"
    file.write_text('[[equivalent]]\nids = ["a.py:1:core/X:0", "a.py:1:core/Y:0"]\n'
                    'line = "x = 1"\nwhy = "any value will do"\n')
    assert sorted(mutation.read_equivalents(file)) == ["a.py:1:core/X:0", "a.py:1:core/Y:0"]
    file.write_text('[[equivalent]]\nids = ["a.py:1:core/X:0", "a.py:2:core/Y:0"]\n'
                    'line = "x = 1"\nwhy = "any value will do"\n')
    with pytest.raises(UsageError, match="share a line"):
        mutation.read_equivalents(file)


@cosmic_ray
def test_the_equivalence_file_names_live_mutants_with_reasons() -> None:
    entries = mutation.read_equivalents(REPO / mutation.EQUIVALENT_FILE)
    modules = sorted({entry.id.split(":")[0] for entry in entries.values()})
    assert set(modules) <= set(mutation.TESTS_OF)
    sources = {m: (REPO / m).read_text() for m in modules}
    mutants = [x for m in modules for x in mutation.mutants_of(m, sources[m])]
    assert mutation.stale_equivalents(entries, mutants, sources, modules) == []
    assert all(len(entry.why.split()) >= 3 for entry in entries.values())


# ---------------------------------------------------------------------------
# === the forked runner ===
# ---------------------------------------------------------------------------


def _find(module: str, text: str, operator: str) -> mutation.Mutant:
    source = (REPO / module).read_text()
    return next(m for m in mutation.mutants_of(module, source)
                if text in source.splitlines()[m.line - 1] and m.operator == operator)


@cosmic_ray
def test_a_mutant_is_served_to_the_tests_and_never_written(tmp_path: pathlib.Path) -> None:
    source = (REPO / PERSISTENCE).read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()
    test = "tests/crash/test_zoned.py"
    assert mutation.run_tests([test], 120)[0] == "survived"
    mutant = _find(PERSISTENCE, "if where[-1] > wp_at:",
                   "core/ReplaceComparisonOperator_Gt_Lt")
    served = (mutation.dotted_name(PERSISTENCE), str(REPO / PERSISTENCE),
              mutation.mutated_source(mutant, source))
    failed = tmp_path / "failed"
    outcome, code, _ = mutation.run_tests([test], 120, served, failed_out=str(failed))
    assert (outcome, code) == ("killed", 1)
    assert failed.read_text().startswith(test + "::")  # the test that killed it, by id
    assert hashlib.sha256((REPO / PERSISTENCE).read_bytes()).hexdigest() == digest


def test_a_mutant_that_breaks_an_import_is_killed_and_no_tests_is_an_error(
        tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "test_nothing_here.py"
    empty.write_text("")
    assert mutation.run_tests([str(empty)], 60)[:2] == ("error", 5)
    broken = (mutation.dotted_name(ZONES), str(REPO / ZONES), "raise ImportError('mutant')\n")
    outcome, code, _ = mutation.run_tests(["tests/reference/test_zones.py"], 120, broken)
    assert outcome == "killed" and code != 0


def test_a_hanging_run_times_out(tmp_path: pathlib.Path) -> None:
    hang = tmp_path / "test_hang_here.py"
    hang.write_text("import time\n\ndef test_hang():\n    time.sleep(600)\n")
    outcome, code, _ = mutation.run_tests([str(hang)], 1.0)
    assert (outcome, code) == ("timeout", None)


@cosmic_ray
def test_a_baseline_that_fails_names_its_first_failing_test(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = tmp_path / "test_fails_unmutated.py"
    failing.write_text("def test_passes():\n    pass\n\n\ndef test_fails():\n    assert False\n")
    monkeypatch.setitem(mutation.TESTS_OF, PERSISTENCE, (str(failing),))
    killed = _find(PERSISTENCE, "if where[-1] > wp_at:", "core/ReplaceComparisonOperator_Gt_Lt")
    campaign = mutation.Campaign([PERSISTENCE], only=frozenset({killed.id}), progress=False)
    # (a node id outside the rootdir is just "::test_fails")
    with pytest.raises(UsageError, match=r"first failure: \S*::test_fails\)"):
        campaign.run()


# ---------------------------------------------------------------------------
# === results and merge ===
# ---------------------------------------------------------------------------


@cosmic_ray
def test_a_real_run_writes_a_valid_result_and_can_be_brought_up_to_date(
        tmp_path: pathlib.Path) -> None:
    killed = _find(PERSISTENCE, "if where[-1] > wp_at:", "core/ReplaceComparisonOperator_Gt_Lt")
    # UNKNOWN is a sentinel compared only with ==: -2 serves as well as -1.
    sentinel = _find(PERSISTENCE, "UNKNOWN = -1", "core/NumberReplacer")
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    code = mutation.main([PERSISTENCE, "--mutant", killed.id, "--mutant", sentinel.id,
                          "--equivalent", str(tmp_path / "none.toml"), "--json", str(first),
                          "--quiet"])
    result = read_result(str(first))  # UsageError naming the field when invalid
    assert result["limited"] and code == 2
    assert {m["id"]: m["outcome"] for m in result["mutants"]} == {
        killed.id: "killed", sentinel.id: "survived"}
    listed = tmp_path / "equivalent.toml"
    listed.write_text(f'[[equivalent]]\nid = "{sentinel.id}"\nline = "UNKNOWN = -1  # after '
                      'a crash recovery the model no longer knows which of old/new survived"\n'
                      'why = "a sentinel compared only with =="\n')
    code = mutation.main([PERSISTENCE, "--mutant", killed.id, "--mutant", sentinel.id,
                          "--equivalent", str(listed), "--again", str(first),
                          "--json", str(again), "--quiet"])
    updated = read_result(str(again))
    assert code == 0 and updated["again"]["mutants"] == 1  # the killed one is kept
    assert {m["id"]: m["outcome"] for m in updated["mutants"]} == {
        killed.id: "killed", sentinel.id: "equivalent"}
    assert updated["modules_figures"][PERSISTENCE]["kill_rate"] == 1.0
    # A module whose source changed since the result keeps nothing: its mutants run again.
    stale = json.loads(first.read_text())
    stale["sources_digest"][PERSISTENCE] = "0" * 64
    first.write_text(json.dumps(stale))
    code = mutation.main([PERSISTENCE, "--mutant", killed.id, "--mutant", sentinel.id,
                          "--equivalent", str(listed), "--again", str(first),
                          "--json", str(again), "--quiet"])
    rerun = read_result(str(again))
    assert code == 0 and rerun["again"] == {**rerun["again"], "mutants": 2,
                                            "modules_changed": [PERSISTENCE]}
    assert {m["id"]: m["outcome"] for m in rerun["mutants"]} == {
        killed.id: "killed", sentinel.id: "equivalent"}


def _fake_shards(count: int, outcome_of: Any) -> list[dict[str, Any]]:
    """Shard results as result_json makes them, of made-up mutants with outcomes chosen
    by `outcome_of` (no mutant is made and no test is run: these exercise the merge)."""
    campaign = mutation.Campaign([PERSISTENCE])
    every = [mutation.Mutant(PERSISTENCE, line, f"core/Op{k}", 0, line)
             for line in range(1, 41) for k in range(2)]
    out = []
    for index in range(count):
        campaign.shard = Shard(index, count)
        mine = mutation.shard_mutants(campaign.shard, every)
        outcomes = [mutation.Outcome(m, outcome_of(m), 0.5, 0, "a", "b", 1) for m in mine]
        out.append(mutation.result_json(campaign, every, mine, outcomes, [],
                                        {PERSISTENCE: 1.0}, 10.0, {PERSISTENCE: "text"}))
    return out


def _outcome(mutant: mutation.Mutant) -> str:
    return ("survived", "killed", "timeout", "equivalent")[mutant.line % 4]


def _write(tmp_path: pathlib.Path, documents: list[dict[str, Any]]) -> list[str]:
    paths = []
    for number, document in enumerate(documents):
        path = tmp_path / f"mutation-{number}.json"
        path.write_text(json.dumps(document))
        paths.append(str(path))
    return paths


def test_merged_shards_count_like_the_whole(tmp_path: pathlib.Path) -> None:
    whole = _fake_shards(1, _outcome)[0]
    shards = _fake_shards(3, _outcome)
    results = [(p, read_result(p)) for p in _write(tmp_path, shards)]
    merged = merge(results)
    report = merged.to_json()["result"]
    assert report["modules_figures"] == whole["modules_figures"]
    assert [m["id"] for m in report["mutants"]] == [m["id"] for m in whole["mutants"]]
    assert report["mutants_digest"] == whole["mutants_total_digest"]
    assert merged.exit_code == 2  # survivors
    # The merged report is itself a valid result (it can be merged or read again).
    again = tmp_path / "merged"
    again.mkdir()
    assert read_result(_write(again, [report])[0])["kind"] == "mutation"


def test_merge_exits_0_when_nothing_survives(tmp_path: pathlib.Path) -> None:
    shards = _fake_shards(2, lambda m: "killed")
    merged = merge([(p, read_result(p)) for p in _write(tmp_path, shards)])
    assert merged.exit_code == 0
    assert merged.to_json()["result"]["modules_figures"][PERSISTENCE]["kill_rate"] == 1.0


def test_merge_refuses_a_missing_shard_a_twice_given_one_and_a_trial(
        tmp_path: pathlib.Path) -> None:
    shards = _fake_shards(3, _outcome)
    with pytest.raises(UsageError, match=r"shard 2/3"):
        merge([(p, read_result(p)) for p in _write(tmp_path, shards[:2])])
    partial = merge([(p, read_result(p)) for p in _write(tmp_path, shards[:2])],
                    allow_partial=True)
    assert partial.missing and "shard 2/3" in partial.missing[0]
    with pytest.raises(UsageError, match="given twice"):
        merge([(p, read_result(p)) for p in _write(tmp_path, [shards[0], *shards])])
    trial = dict(shards[1], mutants=shards[1]["mutants"][:5], limited=True)
    trial["mutants_digest"] = id_digest(m["id"] for m in trial["mutants"])
    with pytest.raises(UsageError, match="do not add up"):
        merge([(p, read_result(p)) for p in _write(tmp_path, [shards[0], trial, shards[2]])])


def test_merge_names_a_damaged_field(tmp_path: pathlib.Path) -> None:
    shard = _fake_shards(1, _outcome)[0]
    shard["mutants"][3]["outcome"] = "maybe"
    path = _write(tmp_path, [shard])[0]
    with pytest.raises(UsageError, match=r"/mutants/3/outcome"):
        read_result(path)
