"""The iotests runner: numbered tests with golden output, in the qemu-iotests manner.

Used by `iotests/check` and by `qcow2-harness iotests` (same arguments). A test is
an executable file named by a number (`iotests/001`), bash or Python, whose line 2
names its groups (`# group: quick zoned`). The runner gives each test a fresh
scratch TEST_DIR, merges stdout and stderr, passes the output through the global
filters below and compares it with `NNN.out`. A mismatch writes `NNN.out.bad` and
`NNN.diff` to the results directory and prints the diff. A test that cannot run
here calls `_notrun "reason"` (bash) or `iotests.notrun("reason")` (Python): it
is reported as "not run", never as passed.

The last line printed is always `N passed, N failed, N not run`; the exit status
is 0 when nothing failed and 1 otherwise.

This is the CLI layer (it prints); nothing else in the package imports it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qcow2harness.junit import Case, Failure, Suite, write_junit

PASS = "pass"
FAIL = "fail"
NOTRUN = "not run"

TEST_NAME = re.compile(r"^\d{3,4}$")
GROUP_LINE = re.compile(r"^#\s*group:\s*(.*)$")
DEFAULT_TIMEOUT = 600.0

# The source tree's iotests/ folder (an editable install keeps it beside the package).
DEFAULT_TESTS_DIR = Path(__file__).resolve().parent.parent / "iotests"


# --------------------------------------------------------------------------
# Discovery and selection
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """One numbered test file."""

    name: str
    path: Path
    groups: frozenset[str]
    interpreter: str  # "bash" or "python"

    @property
    def golden(self) -> Path:
        return self.path.with_name(self.name + ".out")


def read_test(path: Path) -> Test:
    """Parse a test's first two lines: the interpreter and `# group: ...`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
        second = f.readline()
    interpreter = "python" if "python" in first else "bash"
    match = GROUP_LINE.match(second.strip())
    groups = frozenset(match.group(1).split()) if match else frozenset()
    return Test(path.name, path, groups, interpreter)


def discover(tests_dir: Path) -> list[Test]:
    """Every numbered test in `tests_dir`, in numeric order."""
    if not tests_dir.is_dir():
        raise FileNotFoundError(f"iotests directory not found: {tests_dir} (the iotests come "
                                "with the source tree, not the wheel: pass --dir)")
    found = [read_test(p) for p in tests_dir.iterdir() if TEST_NAME.match(p.name) and p.is_file()]
    return sorted(found, key=lambda t: int(t.name))


def _parse_selection(words: Sequence[str]) -> set[int] | None:
    """`1 5 010-020` -> the numbers selected, or None for "all"."""
    if not words:
        return None
    chosen: set[int] = set()
    for word in words:
        if re.fullmatch(r"\d+", word):
            chosen.add(int(word))
        elif re.fullmatch(r"\d+-\d+", word):
            low, high = (int(x) for x in word.split("-"))
            chosen.update(range(low, high + 1))
        else:
            raise ValueError(f"not a test number or range: {word!r}")
    return chosen


def select(
    tests: Iterable[Test],
    numbers: Sequence[str] = (),
    groups: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Test]:
    """Tests matching the numbers (all if none), in any of `groups` (all if none),
    and in none of `exclude`."""
    chosen = _parse_selection(numbers)
    return [
        t
        for t in tests
        if (chosen is None or int(t.name) in chosen)
        and (not groups or t.groups & set(groups))
        and not t.groups & set(exclude)
    ]


# --------------------------------------------------------------------------
# Filters applied to every test's output (tests apply the _filter_* helpers too)
# --------------------------------------------------------------------------

_QEMU_IO_TIMING = re.compile(
    r"^(?P<head>.*\bops); \d+(?::\d+)*\.\d+ sec \([^)]*\)$", re.MULTILINE
)
_IMG_CREATE = re.compile(r"^Formatting '(?P<path>[^']*)', fmt=(?P<fmt>\S+)(?P<opts>.*)$",
                         re.MULTILINE)
_IMG_CREATE_KEEP = ("size", "backing_file", "backing_fmt", "data_file", "data_file_raw",
                    "encrypt.format", "zoned")
_QEMU_VERSION = re.compile(
    r"\b(?P<tool>qemu-img|qemu-io|QEMU emulator) version \d+\.\d+\.\d+[^\n]*"
)
_HARNESS_VERSION = re.compile(r"\bqcow2-harness \d+\.\d+\.\d+\S*")


def filter_img_create(text: str) -> str:
    """Keep only the options that say what the image is (not QEMU's defaults)."""

    def keep(match: re.Match[str]) -> str:
        opts = re.findall(r"(\S+?)=('[^']*'|\S+)", match.group("opts"))
        kept = " ".join(f"{k}={v}" for k, v in opts if k in _IMG_CREATE_KEEP)
        return f"Formatting '{match.group('path')}', fmt={match.group('fmt')}" + (
            f" {kept}" if kept else ""
        )

    return _IMG_CREATE.sub(keep, text)


def filter_output(text: str, test_dir: str | None = None) -> str:
    """The global filters: scratch paths, qemu-io timings, image-create noise,
    version strings. Idempotent, so tests may filter first."""
    if test_dir:
        for variant in {test_dir, os.path.realpath(test_dir)}:
            text = text.replace(variant, "TEST_DIR")
    text = _QEMU_IO_TIMING.sub(r"\g<head>; TIMING", text)
    text = filter_img_create(text)
    text = _QEMU_VERSION.sub(r"\g<tool> version VERSION", text)
    text = _HARNESS_VERSION.sub("qcow2-harness VERSION", text)
    return text


# --------------------------------------------------------------------------
# Running one test
# --------------------------------------------------------------------------


@dataclass
class Settings:
    tests_dir: Path = DEFAULT_TESTS_DIR
    results_dir: Path | None = None  # default: tests_dir / "results"
    scratch_dir: Path | None = None  # default: a fresh temporary directory
    regenerate: bool = False
    keep: bool = False
    timeout: float = DEFAULT_TIMEOUT
    python: str = sys.executable
    harness: str | None = None  # the qcow2-harness command; found when None

    def results(self) -> Path:
        return self.results_dir or self.tests_dir / "results"


@dataclass
class Result:
    test: Test
    status: str
    seconds: float = 0.0
    reason: str = ""  # not-run reason, or why it failed
    diff: str = ""
    output: str = ""
    regenerated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == PASS


def find_harness(python: str = sys.executable) -> str | None:
    """The qcow2-harness console script beside `python`, else on PATH."""
    beside = Path(python).parent / "qcow2-harness"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("qcow2-harness")


def test_environment(test: Test, settings: Settings, test_dir: Path, notrun_file: Path
                     ) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QCOW2_HARNESS_DEBUG", None)
    harness = settings.harness or find_harness(settings.python) or "qcow2-harness"
    tests_dir = str(settings.tests_dir.resolve())
    env.update(
        IOTESTS_DIR=tests_dir,
        IOTESTS_SEQ=test.name,
        IOTESTS_NOTRUN_FILE=str(notrun_file),
        TEST_DIR=str(test_dir),
        PYTHON=settings.python,
        QCOW2_HARNESS_PROG=harness,
        PYTHONPATH=os.pathsep.join(p for p in (tests_dir, env.get("PYTHONPATH", "")) if p),
        PYTHONDONTWRITEBYTECODE="1",
        LC_ALL="C",
        TZ="UTC",
    )
    return env


def _command(test: Test, settings: Settings) -> list[str]:
    if test.interpreter == "python":
        return [settings.python, str(test.path.resolve())]
    return ["bash", str(test.path.resolve())]


def _unified_diff(expected: str, actual: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"{name}.out",
            tofile=f"{name}.out.bad",
        )
    )


def run_test(test: Test, settings: Settings, scratch_root: Path | None = None) -> Result:
    """Run one test in its own TEST_DIR and judge it against its golden file."""
    own_root = scratch_root is None
    root = scratch_root or Path(tempfile.mkdtemp(prefix="iotests-"))
    test_dir = root / test.name
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    notrun_file = root / f"{test.name}.notrun"
    notrun_file.unlink(missing_ok=True)
    results = settings.results()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            _command(test, settings),
            cwd=test_dir,
            env=test_environment(test, settings, test_dir, notrun_file),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            raw, _ = proc.communicate(timeout=settings.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raw, _ = proc.communicate()
            timed_out = True
        seconds = time.monotonic() - start
        output = filter_output(raw.decode("utf-8", errors="replace"), str(test_dir))
        if notrun_file.exists():
            reason = notrun_file.read_text(encoding="utf-8").strip() or "(no reason given)"
            return Result(test, NOTRUN, seconds, reason, output=output)
        if timed_out:
            return Result(test, FAIL, seconds, f"timed out after {settings.timeout:g} s",
                          output=output)
        return _judge(test, settings, results, output, proc.returncode, seconds)
    finally:
        if own_root and not settings.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif not settings.keep:
            shutil.rmtree(test_dir, ignore_errors=True)
            notrun_file.unlink(missing_ok=True)


def _judge(test: Test, settings: Settings, results: Path, output: str, status: int,
           seconds: float) -> Result:
    bad = results / f"{test.name}.out.bad"
    diff_file = results / f"{test.name}.diff"
    for stale in (bad, diff_file):
        stale.unlink(missing_ok=True)
    if status != 0:
        results.mkdir(parents=True, exist_ok=True)
        bad.write_text(output, encoding="utf-8")
        return Result(test, FAIL, seconds, f"exit status {status} (output in {bad})",
                      output=output)
    expected = test.golden.read_text(encoding="utf-8") if test.golden.exists() else None
    if settings.regenerate:
        if expected != output:
            test.golden.write_text(output, encoding="utf-8")
            return Result(test, PASS, seconds, output=output, regenerated=True)
        return Result(test, PASS, seconds, output=output)
    if expected == output:
        return Result(test, PASS, seconds, output=output)
    results.mkdir(parents=True, exist_ok=True)
    bad.write_text(output, encoding="utf-8")
    if expected is None:
        return Result(test, FAIL, seconds,
                      f"no golden file {test.golden.name} (run with -r to create it)",
                      output=output)
    diff = _unified_diff(expected, output, test.name)
    diff_file.write_text(diff, encoding="utf-8")
    return Result(test, FAIL, seconds, f"output mismatch (see {diff_file})", diff=diff,
                  output=output)


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def summary_line(results: Sequence[Result]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, NOTRUN)}
    return f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[NOTRUN]} not run"


def junit_suite(results: Sequence[Result], suite: str = "iotests") -> Suite:
    """One testcase per test: a failure carries the diff (or the output), a "not run"
    is skipped with its reason, and the filtered output is the case's system-out."""
    cases = []
    for r in results:
        case = Case(r.test.name, suite, r.seconds, system_out=r.output)
        if r.status == FAIL:
            case.failure = Failure(r.reason, "mismatch" if r.diff else "failed",
                                   r.diff or r.output)
        elif r.status == NOTRUN:
            case.skipped = r.reason
        cases.append(case)
    return Suite(suite, cases)


def _result_line(r: Result) -> str:
    status = r.status + (" (regenerated)" if r.regenerated else "")
    line = f"{r.test.name:<6} {status:<18} [{r.seconds:5.1f}s]"
    if r.reason:
        line += f"  {r.reason}"
    return line


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tests", nargs="*", metavar="NNN",
                        help="test numbers or ranges (010-020); default: all selected by groups")
    parser.add_argument("-g", "--group", action="append", default=[], metavar="GROUP",
                        help="run tests in GROUP (repeat or comma-separate for several)")
    parser.add_argument("-x", "--exclude-group", action="append", default=[], metavar="GROUP",
                        help="skip tests in GROUP")
    parser.add_argument("-r", "--regenerate", action="store_true",
                        help="rewrite NNN.out from this run's output (review with git diff)")
    parser.add_argument("-j", "--jobs", default="1", metavar="N",
                        help="run N tests at once ('auto': one per CPU)")
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    parser.add_argument("--dir", type=Path, default=DEFAULT_TESTS_DIR,
                        help="the tests directory (default: the source tree's iotests/)")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="where NNN.out.bad and NNN.diff go (default: DIR/results)")
    parser.add_argument("--scratch", type=Path, metavar="DIR",
                        help="parent of the per-test TEST_DIRs (default: a temporary dir)")
    parser.add_argument("-k", "--keep", action="store_true",
                        help="keep every TEST_DIR after the run")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SEC",
                        help=f"per-test time limit (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("-l", "--list", action="store_true",
                        help="list the selected tests and their groups, run nothing")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print diffs")


def _split(values: Sequence[str]) -> list[str]:
    return [v for value in values for v in value.replace(",", " ").split()]


def run_suite(
    tests: Sequence[Test],
    settings: Settings,
    jobs: int = 1,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run `tests`, `jobs` at a time; results come back in test order."""
    root = settings.scratch_dir or Path(tempfile.mkdtemp(prefix="iotests-"))
    root.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def one(test: Test) -> Result:
        result = run_test(test, settings, root)
        if on_result is not None:
            with lock:
                on_result(result)
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, tests))
    finally:
        if not settings.keep and settings.scratch_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None, prog: str = "check") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the numbered iotests and compare their output with NNN.out.",
        epilog="The last line is 'N passed, N failed, N not run'; exit 0 when nothing "
        "failed, 1 otherwise.",
    )
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    tests_dir: Path = args.dir
    try:
        chosen = select(discover(tests_dir), args.tests, _split(args.group),
                        _split(args.exclude_group))
    except (OSError, ValueError) as error:
        print(f"check: {error}", file=sys.stderr, flush=True)
        print(summary_line([]))
        return 1
    if args.list:
        for t in chosen:
            print(f"{t.name}  {t.interpreter:<6}  {' '.join(sorted(t.groups))}")
        return 0
    if not chosen:
        print("check: no tests selected", file=sys.stderr, flush=True)
        print(summary_line([]))
        return 1
    settings = Settings(
        tests_dir=tests_dir,
        results_dir=args.results,
        scratch_dir=args.scratch,
        regenerate=args.regenerate,
        keep=args.keep,
        timeout=args.timeout,
    )
    settings.harness = find_harness(settings.python)
    if settings.harness is None:
        print("check: the qcow2-harness command was not found (pip install -e .)",
              file=sys.stderr, flush=True)
        print(summary_line([]))
        return 1
    jobs = (os.cpu_count() or 1) if args.jobs == "auto" else int(args.jobs)
    print(f"TEST_DIR  {settings.scratch_dir or '(temporary)'}")
    print(f"RESULTS   {settings.results()}")
    print(f"HARNESS   {settings.harness}")
    print()

    def report(result: Result) -> None:
        print(_result_line(result), flush=True)
        if result.diff and not args.quiet:
            print(result.diff.rstrip("\n"))

    results = run_suite(chosen, settings, jobs, report)
    if args.junit:
        write_junit(args.junit, [junit_suite(results)])
    notrun = [r.test.name for r in results if r.status == NOTRUN]
    failed = [r.test.name for r in results if r.status == FAIL]
    print()
    if notrun:
        print(f"Not run: {' '.join(notrun)}")
    if failed:
        print(f"Failures: {' '.join(failed)}")
    print(summary_line(results))
    return 1 if failed else 0


__all__ = [
    "FAIL",
    "NOTRUN",
    "PASS",
    "Result",
    "Settings",
    "Test",
    "discover",
    "filter_output",
    "junit_suite",
    "main",
    "run_suite",
    "run_test",
    "select",
    "summary_line",
]
