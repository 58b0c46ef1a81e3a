"""Mutation testing of the oracle (issue #20): the checker, the reference model and the
crash oracle are what every campaign trusts, so their own tests are put on trial here.

    python -m qcow2harness.mutation reference/persistence.py --json m.json
    python -m qcow2harness.mutation --shard 1/4 --json m1.json     # every module, 1 of 4
    qcow2-harness merge m0.json m1.json m2.json m3.json

**Tool: cosmic-ray** (PyPI `cosmic-ray`, the `mutation` extra), used as a library: its
core operators find the mutation points and `mutate_code` writes one mutant's source.
Why not mutmut 3: it rewrites every module to mutate into a `mutants/` tree of
trampolines and runs the whole suite through its own pytest plugin, with results kept
under mangled function names. We need a mutant id that says where it is (line,
operator), a deterministic list to cut into `--shard I/N`, and a test subset per module;
cosmic-ray addresses each mutation as (module, operator, occurrence), which gives all
three. Its session database, distributors and worker are not used: its worker writes
the mutant into the file on disk and restores it afterwards, which in a shared working
tree would show mutated source to everyone else for the length of the run. Here the
mutant never touches a file: each test run is a forked pytest whose import system
serves the mutated source for that one module (`_MutantFinder`).

**Which tests run**: each module has a subset of fast test files (TESTS_OF). A
baseline run of it, unmutated, traces which lines of the module each test executes.
A mutant inside a function then runs only the tests that executed that function,
stopping at the first failure: first those that killed the latest mutants of the same
function, then of the same module, then the rest in baseline order (most mutants of a
function fall to the same few tests, so a killed mutant usually costs one test). A
mutant outside functions (module and class level, def lines) runs the whole subset. A
function no test executes leaves its mutants survived without a run. A test that reaches
the module only in a child process is not traced, so it is not chosen: that can only
understate the kill rate.

**Mutant id**: `MODULE:LINE:OPERATOR:K`, K the index of that operator's mutation among
those on that line (0 first), e.g. `reference/zones.py:412:core/NumberReplacer:1`.
Mutations inside annotations are not generated: with `from __future__ import
annotations` they are never evaluated, so each would be equivalent by construction.

**Outcomes**: `killed` (the module's tests failed, or could not even import it),
`survived` (they passed), `timeout` (slower than the timeout: counted as detected, as
a hang is a failure a test run shows), `equivalent` (listed in the equivalence file,
not run), `error` (pytest found no tests or a usage error without a mutant: the test
map is wrong). Under a mutant those same exit codes mean the mutant broke the import
of conftest or of a test module, which is a detection: killed.
The kill rate of a module is (killed + timeout) / (mutants - equivalent). Exit 2 while
any mutant survives: each is a blind spot to kill with a test or to explain as
equivalent.

**Equivalence file** (tests/mutation/equivalent.toml): one `[[equivalent]]` table per
mutant judged equivalent (or `ids`, several of one line for one reason), with its `id`,
the source `line` it was judged on and one line of `why`. An entry whose line has
changed, or whose id no longer exists, is stale: it is reported and no longer hides the
mutant.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import os
import select
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

from qcow2harness.errors import UsageError
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK
from qcow2harness.sharding import WHOLE, Shard, add_shard_argument, id_digest

REPO = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = "tests/mutation/equivalent.toml"
SCHEMA_VERSION = "1.0"
TARGET_KILL_RATE = 0.90  # issue #20: of the non-equivalent mutants, per module

# Each module under trial -> the fast tests that cover it (seconds, not minutes). One
# place: change a subset here and every shard and the README's command follow.
# test_check_small_walk.py first: it is fast, and -x stops a killed mutant's run there.
_CHECKER_TESTS = ("tests/test_check_small_walk.py",
                  "tests/test_check_report.py", "tests/test_check_zoned.py",
                  "tests/test_check_header.py",
                  "tests/test_clause_coverage.py",
                  "tests/test_check_hostile.py",
                  "tests/test_check_fast_paths.py")
TESTS_OF: dict[str, tuple[str, ...]] = {
    "reference/persistence.py": ("tests/reference/test_persistence.py",
                                 "tests/reference/test_persistence_edges.py",
                                 "tests/crash/test_zoned.py",
                                 "tests/crash/test_reference.py",
                                 "tests/reference/test_properties.py"),
    "reference/zones.py": ("tests/reference/test_zone_edges.py",
                           "tests/reference/test_zones.py",
                           "tests/reference/test_conformance.py",
                           "tests/reference/test_persistence.py",
                           "tests/reference/test_trace.py",
                           "tests/reference/test_writer.py",
                           "tests/reference/test_zone_batches.py",
                           "tests/test_clause_coverage.py"),
    "qcow2harness/crash/oracle.py": ("tests/crash/test_oracle_filters.py",
                                     "tests/crash/test_oracle_reader.py",
                                     "tests/crash/test_reference.py",
                                     "tests/crash/test_qemu.py",
                                     "tests/crash/test_repair.py"),
    "qcow2harness/checker/__init__.py": _CHECKER_TESTS,
    "qcow2harness/checker/header.py": _CHECKER_TESTS,
    "qcow2harness/checker/metadata.py": _CHECKER_TESTS,
    "qcow2harness/checker/small.py": _CHECKER_TESTS,
    "qcow2harness/checker/zoned.py": _CHECKER_TESTS,
    "qcow2harness/checker/report.py": _CHECKER_TESTS,
}
# Modules imported before forking, so each test run need not import them again.
# Nothing of qcow2harness: the child imports the project afresh, the mutant included.
_PRELOAD = ("pytest", "numpy", "hypothesis", "hypothesis.strategies", "jsonschema",
            "kaitaistruct")
OUTCOMES = ("killed", "survived", "timeout", "equivalent", "error")


@dataclass(frozen=True)
class Mutant:
    module: str  # repo-relative path, e.g. reference/zones.py
    line: int
    operator: str  # cosmic-ray operator name, e.g. core/NumberReplacer
    k: int  # index among this operator's mutations on this line
    occurrence: int  # cosmic-ray's occurrence (per module and operator): applies it

    @property
    def id(self) -> str:
        return f"{self.module}:{self.line}:{self.operator}:{self.k}"


@dataclass
class Outcome:
    mutant: Mutant
    outcome: str
    seconds: float = 0.0
    exit_code: int | None = None
    before: str = ""
    after: str = ""
    tests: int | None = None  # tests run on it (0: none executes its function)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.mutant.id, "module": self.mutant.module, "line": self.mutant.line,
                "operator": self.mutant.operator, "k": self.mutant.k,
                "outcome": self.outcome, "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code, "tests": self.tests, "before": self.before,
                "after": self.after}


# --- generating mutants ---------------------------------------------------------------

def _operators() -> list[tuple[str, Any]]:
    """cosmic-ray's core operators that take no arguments, by name (what its `init`
    runs by default)."""
    import cosmic_ray.plugins

    out = []
    for name in sorted(cosmic_ray.plugins.operator_names()):
        operator_class = cosmic_ray.plugins.get_operator(name)
        if not operator_class.arguments():
            out.append((name, operator_class()))
    return out


def _in_annotation(node: Any) -> bool:
    """Whether a parso node lies inside an annotation (never evaluated under PEP 563):
    the part after ':' of a parameter (tfpdef) or an annotated assignment, or after
    '->' of a def."""
    child, parent = node, node.parent
    while parent is not None:
        before = child.get_previous_sibling()
        mark = getattr(before, "value", None)
        if (parent.type in ("tfpdef", "annassign") and mark == ":") \
                or (parent.type == "funcdef" and mark == "->"):
            return True
        child, parent = parent, parent.parent
    return False


def mutants_of(module: str, source: str | None = None) -> list[Mutant]:
    """Every mutant of `module` (a repo-relative path), in (line, operator, K) order."""
    from cosmic_ray.ast import ast_nodes, get_ast

    if source is None:
        source = (REPO / module).read_text(encoding="utf-8")
    postponed = "from __future__ import annotations" in source
    tree = get_ast(source)
    nodes = list(ast_nodes(tree))
    found: list[tuple[int, str, int]] = []
    for name, operator in _operators():
        occurrence = 0
        for node in nodes:
            for start, _end in operator.mutation_positions(node):
                if not (postponed and _in_annotation(node)):
                    found.append((start[0], name, occurrence))
                occurrence += 1
    found.sort()
    out: list[Mutant] = []
    per_line: dict[tuple[int, str], int] = {}
    for line, name, occurrence in found:
        k = per_line.get((line, name), 0)
        per_line[(line, name)] = k + 1
        out.append(Mutant(module, line, name, k, occurrence))
    return out


def shard_mutants(shard: Shard, every: Sequence[Mutant]) -> list[Mutant]:
    """The shard's part of `every`: the i-th mutant of each module runs in shard i mod N.
    Counted per module, so a module whose mutant count changes (an edit, then --again)
    leaves every other module's mutants in the shard that ran them."""
    by_module: dict[str, list[Mutant]] = {}
    for mutant in every:
        by_module.setdefault(mutant.module, []).append(mutant)
    return [m for mutants in by_module.values() for m in shard.round_robin(mutants)]


def mutated_source(mutant: Mutant, source: str) -> str:
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    operator = cosmic_ray.plugins.get_operator(mutant.operator)()
    code = mutate_code(source, operator, mutant.occurrence)
    if code is None:
        raise RuntimeError(f"{mutant.id}: cosmic-ray made no mutation")
    return str(code)


def diff_lines(mutant: Mutant, source: str, mutated: str) -> tuple[str, str]:
    """(the mutated line before, after), stripped; a removed line reads as ''."""
    before, after = source.splitlines(), mutated.splitlines()
    old = before[mutant.line - 1].strip()
    if len(before) == len(after):
        return old, after[mutant.line - 1].strip()
    changed = [line[1:].strip() for line in difflib.unified_diff(before, after, n=0,
                                                                lineterm="")
               if line.startswith("+") and not line.startswith("+++")]
    return old, " / ".join(changed)


def dotted_name(module: str) -> str:
    """reference/zones.py -> qcow2harness.reference.zones, by pyproject's package-dir."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        package_dir: dict[str, str] = tomllib.load(handle)["tool"]["setuptools"]["package-dir"]
    path = Path(module).with_suffix("")
    best: tuple[int, str] | None = None
    for package, folder in package_dir.items():
        parts = Path(folder).parts
        if path.parts[:len(parts)] == parts and (best is None or len(parts) > best[0]):
            rest = ".".join(path.parts[len(parts):])
            best = (len(parts), f"{package}.{rest}" if rest else package)
    if best is None:
        raise UsageError(f"{module}: not inside a package of pyproject.toml's package-dir")
    return best[1].removesuffix(".__init__")


def function_bodies(source: str) -> list[tuple[int, int]]:
    """(first, last) body line of every outermost function or method. A line outside
    them (module and class level, def lines with their defaults and decorators) runs at
    import, where no single test can be told apart."""
    import ast

    spans: list[tuple[int, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = child.body[0].lineno
                if first > child.lineno:
                    spans.append((first, child.end_lineno or first))
            else:
                visit(child)

    visit(ast.parse(source))
    return sorted(spans)


def enclosing_body(line: int, bodies: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The (first, last) body line of the function holding `line`; None outside them."""
    return next(((first, last) for first, last in bodies if first <= line <= last), None)


def select_tests(line: int, bodies: list[tuple[int, int]], traced: dict[str, Any],
                 files: Sequence[str]) -> list[str]:
    """The tests to run on a mutant of `line`: every test of the baseline that executed
    a line of the function holding it, in run order; the whole subset (`files`) for a
    line outside functions. Empty: no test executes that function."""
    body = enclosing_body(line, bodies)
    if body is None:
        return list(files)
    first, last = body
    return [test for test in traced["order"]
            if any(first <= n <= last for n in traced["lines"].get(test, ()))]


KILLERS_KEPT = 8  # per function and per module, the latest tests that killed a mutant


@dataclass
class Killers:
    """The tests that killed the latest mutants, latest first, by function and module."""

    latest: dict[Any, list[str]] = dataclasses.field(default_factory=dict)

    def first(self, tests: list[str], module: str, body: tuple[int, int] | None) -> list[str]:
        """`tests` reordered: this function's killers, then this module's, then the rest
        in the order given. The same tests: only the order changes."""
        given = set(tests)
        front: list[str] = []
        for key in ((module, body), module):
            front += [t for t in self.latest.get(key, ()) if t in given and t not in front]
        chosen = set(front)
        return front + [t for t in tests if t not in chosen]

    def record(self, test: str, module: str, body: tuple[int, int] | None) -> None:
        for key in ((module, body), module):
            latest = [test] + [t for t in self.latest.get(key, ()) if t != test]
            self.latest[key] = latest[:KILLERS_KEPT]


# --- the equivalence file -------------------------------------------------------------

@dataclass(frozen=True)
class Equivalent:
    id: str
    line: str
    why: str


def read_equivalents(path: Path) -> dict[str, Equivalent]:
    """id -> entry. A table names one mutant (`id`) or several of one line (`ids`)."""
    if not path.exists():
        return {}
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    out: dict[str, Equivalent] = {}
    for number, entry in enumerate(data.get("equivalent", [])):
        where = f"{path}: equivalent #{number + 1}"
        ids = [entry["id"]] if "id" in entry else list(entry.get("ids", []))
        missing = [key for key in ("line", "why") if not str(entry.get(key, "")).strip()]
        if not ids or missing:
            raise UsageError(f"{where}: missing {', '.join(missing or ['id'])}")
        if len({":".join(i.split(":")[:2]) for i in ids}) != 1:
            raise UsageError(f"{where}: the ids of one table must share a line")
        for mutant_id in ids:
            if mutant_id in out:
                raise UsageError(f"{where}: {mutant_id} listed twice")
            out[mutant_id] = Equivalent(mutant_id, entry["line"].strip(), entry["why"].strip())
    return out


def stale_equivalents(equivalents: dict[str, Equivalent], mutants: Iterable[Mutant],
                      sources: dict[str, str], modules: Iterable[str]) -> list[str]:
    """Entries (of the modules on trial) that no longer name a mutant of that line."""
    ids = {m.id for m in mutants}
    wanted = tuple(f"{module}:" for module in modules)
    stale = []
    for entry in equivalents.values():
        if not entry.id.startswith(wanted):
            continue
        module, line = entry.id.split(":")[:2]
        lines = sources[module].splitlines()
        number = int(line)
        here = lines[number - 1].strip() if 0 < number <= len(lines) else None
        if entry.id not in ids or here != entry.line:
            stale.append(entry.id)
    return sorted(stale)


# --- running the tests on one mutant --------------------------------------------------

class _MutantLoader(Loader):
    def __init__(self, path: str, source: str) -> None:
        self.path, self.source = path, source

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(compile(self.source, self.path, "exec"), module.__dict__)  # noqa: S102


class _MutantFinder(MetaPathFinder):
    """Serves the mutated source for one module name; every other import is untouched."""

    def __init__(self, name: str, path: str, source: str) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        package = Path(self.path).name == "__init__.py"
        spec = ModuleSpec(fullname, _MutantLoader(self.path, self.source), origin=self.path,
                          is_package=package)
        if package:
            spec.submodule_search_locations = [str(Path(self.path).parent)]
        spec.has_location = True
        return spec


def run_tests(tests: Sequence[str], timeout: float,
              mutant: tuple[str, str, str] | None = None,
              record: tuple[str, str] | None = None,
              failed_out: str | None = None) -> tuple[str, int | None, float]:
    """Run pytest on `tests` (files or node ids, in that order, stopping at the first
    failure) in a forked child; the working tree is never written. `mutant` (module
    name, file, source) is served in place of that module. `record` (file, out) traces
    which lines of that file each test runs, into out as JSON (the baseline).
    `failed_out`: a file the child writes the id of the failing test to.
    (outcome, exit code, seconds): killed, survived, timeout or error."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.setpgid(0, 0)
            sink = os.open(os.devnull, os.O_WRONLY)
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            _forget_project_modules()
            if mutant is not None:
                sys.meta_path.insert(0, _MutantFinder(*mutant))
            os.chdir(REPO)
            # Derandomized, no example database (tests/conftest.py): every run the same.
            os.environ["HYPOTHESIS_PROFILE"] = "ci"
            import pytest

            plugins: list[Any] = [_FirstFailure()]
            if record is not None:
                plugins.append(_LineRecorder(record[0]))
            code = int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--rootdir",
                                    str(REPO), *tests], plugins=plugins))
            if record is not None:
                Path(record[1]).write_text(json.dumps(plugins[1].to_json()))
            if failed_out is not None and plugins[0].nodeid is not None:
                Path(failed_out).write_text(plugins[0].nodeid)
        except BaseException:  # noqa: B036 - the child must always exit, never return
            code = 70
        finally:
            os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it first, or has exited
        pass
    status = _wait(pid, timeout)
    seconds = time.monotonic() - started
    if status is None:
        return "timeout", None, seconds
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "survived", 0, seconds
    if code in (4, 5) and mutant is None:  # usage error, no tests: the map is wrong
        return "error", code, seconds
    # Under a mutant, 4 or 5 means it broke an import that conftest or collection needs
    # (the same tests ran clean in the baseline): detected, so killed.
    return "killed", code, seconds


class _FirstFailure:
    """A pytest plugin: the id of the first test that failed (setup, call or teardown)."""

    def __init__(self) -> None:
        self.nodeid: str | None = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and self.nodeid is None:
            self.nodeid = report.nodeid


class _LineRecorder:
    """A pytest plugin for the baseline run: the test ids in run order, and for each
    the lines of one file it executed in this process (sys.settrace, all threads).
    Lines run outside any test (at import, in collection) are kept under ""."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current = ""
        self.order: list[str] = []
        self.lines: dict[str, set[int]] = {"": set()}

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != self.path:
            return None
        self.lines.setdefault(self.current, set()).add(frame.f_lineno)
        return self._local

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.lines.setdefault(self.current, set()).add(frame.f_lineno)
        return self._local

    def pytest_configure(self, config: Any) -> None:
        import threading

        sys.settrace(self._global)
        threading.settrace(self._global)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.current = nodeid
        self.order.append(nodeid)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.current = ""

    def to_json(self) -> dict[str, Any]:
        return {"order": self.order,
                "lines": {test: sorted(lines) for test, lines in self.lines.items()}}


def _forget_project_modules() -> None:
    """Drop every module imported from this checkout (the project, tests, conftests),
    so that the tests import the mutant and bind its names afresh."""
    root = str(REPO) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name != __name__ and path.startswith(root) and "site-packages" not in path:
            del sys.modules[name]


def _wait(pid: int, timeout: float) -> int | None:
    """The child's wait status, or None after killing its process group at `timeout`."""
    handle = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([handle], [], [], timeout)
    finally:
        os.close(handle)
    if not ready:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    status = os.waitpid(pid, 0)[1]
    return status if ready else None


# --- the campaign ---------------------------------------------------------------------

@dataclass
class Campaign:
    modules: list[str]
    shard: Shard = WHOLE
    equivalent_file: Path = dataclasses.field(default_factory=lambda: REPO / EQUIVALENT_FILE)
    timeout_factor: float = 5.0
    min_timeout: float = 10.0
    max_mutants: int | None = None  # for a trial: the shard's first N only
    only: frozenset[str] = frozenset()  # run just these ids (triage)
    minutes: float | None = None  # start no mutant after this long (the result is limited)
    # A result of this campaign to bring up to date: its killed and timed-out mutants are
    # kept, the others run again (after new tests or equivalence entries). A module whose
    # source changed since keeps nothing (its mutant ids name other lines now).
    previous: dict[str, Any] | None = None
    progress: bool = True
    stopped_early: bool = False

    def run(self) -> dict[str, Any]:
        for module in self.modules:
            if module not in TESTS_OF:
                raise UsageError(f"{module}: no test subset in TESTS_OF (known: "
                                 f"{', '.join(sorted(TESTS_OF))})")
        started = time.monotonic()
        equivalents = read_equivalents(self.equivalent_file)
        sources = {m: (REPO / m).read_text(encoding="utf-8") for m in self.modules}
        every = [mutant for m in self.modules for mutant in mutants_of(m, sources[m])]
        mine = shard_mutants(self.shard, every)
        if self.only:
            unknown = self.only - {m.id for m in every}
            if unknown:
                raise UsageError(f"no such mutant: {', '.join(sorted(unknown))}")
            mine = [m for m in mine if m.id in self.only]
        if self.max_mutants is not None:
            mine = mine[:self.max_mutants]
        stale = stale_equivalents(equivalents, every, sources, self.modules)
        kept, changed = self._kept(sources)
        if self.previous is not None:
            ran_before = {m["id"] for m in self.previous["mutants"]}
            mine = [m for m in mine if m.module in changed or m.id in ran_before]
        for name in _PRELOAD:
            __import__(name)
        baseline: dict[str, float] = {}
        traced: dict[str, dict[str, Any]] = {}
        for module in self.modules:
            if not any(m.module == module and m.id not in kept for m in mine):
                continue
            with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
                out = os.path.join(scratch, "lines.json")
                failed = Path(scratch) / "failed"
                outcome, code, seconds = run_tests(TESTS_OF[module], 3600,
                                                   record=(str(REPO / module), out),
                                                   failed_out=str(failed))
                if outcome != "survived":
                    first = failed.read_text() if failed.exists() else "none named"
                    raise UsageError(f"{module}: its tests fail without a mutant (pytest "
                                     f"exit {code}; first failure: {first}): "
                                     f"{' '.join(TESTS_OF[module])}")
                traced[module] = json.loads(Path(out).read_text())
            baseline[module] = round(seconds, 3)
        bodies = {m: function_bodies(sources[m]) for m in baseline}
        outcomes: list[Outcome] = []
        killers = Killers()
        deadline = None if self.minutes is None else started + 60 * self.minutes
        for number, mutant in enumerate(mine):
            if deadline is not None and time.monotonic() > deadline:
                self.stopped_early = True
                break
            if mutant.id in kept:
                done = kept[mutant.id]
                outcomes.append(Outcome(mutant, done["outcome"], done["seconds"],
                                        done["exit_code"], done["before"], done["after"],
                                        done["tests"]))
                continue
            source = sources[mutant.module]
            mutated = mutated_source(mutant, source)
            before, after = diff_lines(mutant, source, mutated)
            entry = equivalents.get(mutant.id)
            if entry is not None and mutant.id not in stale:
                outcomes.append(Outcome(mutant, "equivalent", before=before, after=after))
                continue
            tests = select_tests(mutant.line, bodies[mutant.module], traced[mutant.module],
                                 TESTS_OF[mutant.module])
            if not tests:  # no test runs this function: a survivor without a run
                outcomes.append(Outcome(mutant, "survived", before=before, after=after,
                                        tests=0))
            else:
                timeout = max(self.min_timeout,
                              self.timeout_factor * baseline[mutant.module])
                served = (dotted_name(mutant.module), str(REPO / mutant.module), mutated)
                body = enclosing_body(mutant.line, bodies[mutant.module])
                if body is not None:
                    tests = killers.first(tests, mutant.module, body)
                with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
                    failed = Path(scratch) / "failed"
                    outcome, code, seconds = run_tests(tests, timeout, served,
                                                       failed_out=str(failed))
                    if outcome == "killed" and body is not None and failed.exists():
                        killers.record(failed.read_text(), mutant.module, body)
                outcomes.append(Outcome(mutant, outcome, seconds, code, before, after,
                                        len(tests)))
            if self.progress:
                print(f"[{number + 1}/{len(mine)}] {outcomes[-1].outcome:9} {mutant.id}",
                      file=sys.stderr, flush=True)
        seconds = time.monotonic() - started
        result = result_json(self, every, mine, outcomes, stale, baseline, seconds, sources)
        if self.previous is not None:
            result["seconds"] = round(self.previous["seconds"] + seconds, 3)
            judged = sum(1 for o in outcomes if o.outcome != "equivalent")
            result["mutants_per_second"] = round(judged / result["seconds"], 3)
            result["limited"] = result["limited"] or self.previous["limited"]
            result["again"] = {"previous_seconds": self.previous["seconds"],
                               "seconds": round(seconds, 3),
                               "mutants": sum(1 for o in outcomes if o.mutant.id not in kept),
                               "modules_changed": sorted(changed)}
        return result

    def _kept(self, sources: dict[str, str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The previous result's killed and timed-out mutants, by id, of the modules whose
        source is unchanged; and the changed modules, whose mutants all run again."""
        if self.previous is None:
            return {}, set()
        previous = self.previous
        if previous["modules"] != self.modules or previous["shard"]["index"] != \
                self.shard.index or previous["shard"]["count"] != self.shard.count:
            raise UsageError("--again: that result is of other modules or another shard")
        digests = sources_digest(sources)
        changed = {m for m in self.modules if previous["sources_digest"].get(m) != digests[m]}
        return {m["id"]: m for m in previous["mutants"] if m["outcome"] in ("killed", "timeout")
                and m["module"] not in changed}, changed


def sources_digest(sources: dict[str, str]) -> dict[str, str]:
    import hashlib

    return {module: hashlib.sha256(text.encode()).hexdigest()
            for module, text in sources.items()}


def module_figures(outcomes: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """module -> mutants, each outcome's count and the kill rate of the non-equivalent."""
    figures: dict[str, dict[str, Any]] = {}
    for item in outcomes:
        row = figures.setdefault(item["module"], {"mutants": 0, **dict.fromkeys(OUTCOMES, 0)})
        row["mutants"] += 1
        row[item["outcome"]] += 1
    for row in figures.values():
        judged = row["mutants"] - row["equivalent"]
        row["kill_rate"] = round((row["killed"] + row["timeout"]) / judged, 4) if judged else None
    return dict(sorted(figures.items()))


def result_json(campaign: Campaign, every: list[Mutant], mine: list[Mutant],
                outcomes: list[Outcome], stale: list[str], baseline: dict[str, float],
                seconds: float, sources: dict[str, str]) -> dict[str, Any]:
    items = [o.to_json() for o in outcomes]
    ran = [o for o in outcomes if o.outcome != "equivalent"]
    survivors = [o for o in outcomes if o.outcome == "survived"]
    errors = [o for o in outcomes if o.outcome == "error"]
    return {
        "kind": "mutation", "schema_version": SCHEMA_VERSION,
        "shard": campaign.shard.to_json(),
        "tool": f"cosmic-ray {_version('cosmic-ray')}",
        "modules": campaign.modules,
        "tests": {m: list(TESTS_OF[m]) for m in campaign.modules},
        "sources_digest": sources_digest(sources),
        "equivalent_file": str(campaign.equivalent_file.relative_to(REPO)
                               if campaign.equivalent_file.is_relative_to(REPO)
                               else campaign.equivalent_file),
        "stale_equivalents": stale,
        "mutants_total": len(every),
        "mutants_total_digest": id_digest(m.id for m in every),
        "mutants_digest": id_digest(o.mutant.id for o in outcomes),
        "limited": (campaign.max_mutants is not None or bool(campaign.only)
                    or campaign.stopped_early),
        "baseline_seconds": baseline,
        "mutants": items,
        "modules_figures": module_figures(items),
        "seconds": round(seconds, 3),
        "mutants_per_second": round(len(ran) / seconds, 3) if seconds else 0,
        "exit_code": EXIT_INVALID if survivors else EXIT_CANNOT_RUN if errors else EXIT_OK,
    }


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{'module':34} {'mutants':>7} {'killed':>6} {'surv.':>5} {'t/o':>4} "
             f"{'equiv.':>6} {'error':>5} {'kill rate':>9}"]
    for module, row in result["modules_figures"].items():
        rate = "-" if row["kill_rate"] is None else f"{100 * row['kill_rate']:.1f}%"
        lines.append(f"{module:34} {row['mutants']:7} {row['killed']:6} {row['survived']:5} "
                     f"{row['timeout']:4} {row['equivalent']:6} {row['error']:5} {rate:>9}")
    if result["limited"]:
        lines.append(f"LIMITED: {len(result['mutants'])} of this shard's mutants were run "
                     "(--max-mutants, --mutant or --minutes)")
    if "again" in result:
        again = result["again"]
        lines.append(f"brought up to date: {again['mutants']} mutants run again in "
                     f"{again['seconds']:.0f} s after a run of {again['previous_seconds']:.0f} s")
    lines.append(f"{len(result['mutants'])} mutants in {result['seconds']:.0f} s "
                 f"({result['mutants_per_second']} mutants/s), shard "
                 f"{result['shard']['index']}/{result['shard']['count']}")
    for item in result["mutants"]:
        if item["outcome"] in ("survived", "error"):
            lines.append(f"{item['outcome']}: {item['id']}: {item['before']}  ->  "
                         f"{item['after']}")
    for entry in result["stale_equivalents"]:
        lines.append(f"stale equivalence entry (its line changed or the mutant is gone): "
                     f"{entry}")
    return lines


def _read_previous(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from qcow2harness.merge import read_result

    result = read_result(path)
    if result["kind"] != "mutation":
        raise UsageError(f"{path}: a {result['kind']} result, not a mutation result")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qcow2harness.mutation",
        description="mutation testing of the checker, the reference model and the crash "
        "oracle (cosmic-ray operators, each mutant run against its module's fast tests)")
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"repo-relative paths (default: all {len(TESTS_OF)} in TESTS_OF)")
    add_shard_argument(parser, "mutants (mutant i of each module runs in shard i mod N)")
    parser.add_argument("--json", metavar="FILE", help="the result, for qcow2-harness merge")
    parser.add_argument("--equivalent", default=str(REPO / EQUIVALENT_FILE), metavar="FILE",
                        help="the equivalence file (default: %(default)s)")
    parser.add_argument("--list", action="store_true",
                        help="print the shard's mutant ids and the mutated line; run nothing")
    parser.add_argument("--mutant", action="append", default=[], metavar="ID",
                        help="run only this mutant (repeatable)")
    parser.add_argument("--max-mutants", type=int, metavar="N",
                        help="run only the shard's first N mutants (a trial)")
    parser.add_argument("--minutes", type=float, metavar="M",
                        help="start no mutant after M minutes (the result says it is limited)")
    parser.add_argument("--again", metavar="RESULT.json",
                        help="bring that result up to date: keep its killed and timed-out "
                        "mutants, run the others again (same modules and shard; every mutant of a "
                        "module whose source changed)")
    parser.add_argument("--timeout-factor", type=float, default=5.0,
                        help="a mutant times out after this many baseline runs (min 10 s)")
    parser.add_argument("--quiet", action="store_true", help="no line per mutant")
    args = parser.parse_args(argv)
    try:
        if importlib.util.find_spec("cosmic_ray") is None:
            raise UsageError("cosmic-ray is not installed (pip install -e '.[mutation]', "
                             "or make mutation)")
        modules = args.modules or list(TESTS_OF)
        shard = args.shard
        if args.list:
            for module in modules:
                source = (REPO / module).read_text(encoding="utf-8")
                for mutant in shard_mutants(shard, mutants_of(module, source)):
                    before, after = diff_lines(mutant, source, mutated_source(mutant, source))
                    print(f"{mutant.id}\t{before}\t->\t{after}")
            return 0
        campaign = Campaign(modules, shard, Path(args.equivalent),
                            timeout_factor=args.timeout_factor, max_mutants=args.max_mutants,
                            only=frozenset(args.mutant), minutes=args.minutes,
                            previous=_read_previous(args.again),
                            progress=not args.quiet)
        result = campaign.run()
    except UsageError as error:
        print(f"mutation: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("\n".join(summary_lines(result)))
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
