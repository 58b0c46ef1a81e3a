"""The ClusterFuzzLite / OSS-Fuzz build, rehearsed on a machine without Docker.

    python -m qcow2harness.fuzz.oss_fuzz_local [--dir DIR] [--seconds 5] [--runs N]
                                               [--packager pyinstaller|launcher]

Runs the very file the builder image runs, .clusterfuzzlite/build.sh, the way the image
does: the source copied to $SRC/qcow2-harness (git's tracked and untracked-but-not-ignored
files, like `COPY .`), build.sh at $SRC/build.sh, run from $SRC/qcow2-harness with $SRC,
$OUT and $WORK set. What the base image provides is stood in for: a fresh virtualenv
with atheris and PyInstaller (the image's Python with its preinstalled packages), and
fuzz/oss_fuzz/compile_python_fuzzer on PATH (PyInstaller --onefile plus a wrapper, like
the image's own). Then, like OSS-Fuzz's check_build and run_fuzzer, each program in $OUT
that names LLVMFuzzerTestOneInput runs for a few seconds on its unpacked seed corpus
with its .dict and .options. A fuzzer passes when it exits 0 and executed more inputs
than it had seeds (so mutated inputs ran too).

Needs a source checkout (the build script and the corpus are not in the wheel) and the
package index for the virtualenv. Exit codes: 0 every fuzzer passed, 2 one failed or
found something, 1 the build could not run. A JSON summary goes to DIR/summary.json.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qcow2harness.fuzz.libfuzzer_entry import NOT_BUILT, OSS_FUZZ_TARGETS

from qcow2harness.errors import HarnessError
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK

REPO = Path(__file__).resolve().parent.parent  # a source checkout: fuzz/ is at its top
PROJECT = "qcow2-harness"  # the directory name under $SRC (.clusterfuzzlite/Dockerfile)
FUZZER_MARKER = b"LLVMFuzzerTestOneInput"
# Left out of the source copy when it is not a git checkout.
NOT_SOURCE = {".git", ".venv", "node_modules", ".tox", "data", "build", "dist",
              "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
PACKAGERS = ("pyinstaller", "launcher")
_EXECUTED = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_COVERAGE = re.compile(rb"^#\d+\s+\w+\s+cov: (\d+) ft: (\d+)", re.MULTILINE)
_PEAK_RSS = re.compile(rb"stat::peak_rss_mb:\s*(\d+)")


class BaseEnvironmentUnavailable(HarnessError):
    """atheris (or PyInstaller, when asked for) would not install from the package index."""


@dataclass
class FuzzerRun:
    """One built fuzzer's short run on its seed corpus."""

    name: str
    exit_code: int
    executions: int
    seeds: int
    coverage: int  # libFuzzer's last `cov:` figure (0 when none was printed)
    peak_rss_mb: int
    cpu_seconds: float  # user + system time of the fuzzer process and its children
    artifacts: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.executions > self.seeds and not self.artifacts


@dataclass
class LocalBuild:
    directory: str
    packager: str
    built: list[str]
    runs: list[FuzzerRun]
    not_built: dict[str, str]
    build_seconds: float

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(run.passed for run in self.runs)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["passed"] = self.passed
        for run, entry in zip(self.runs, data["runs"], strict=True):
            entry["passed"] = run.passed
        return data


def _require_checkout(root: Path) -> None:
    if not (root / ".clusterfuzzlite" / "build.sh").is_file():
        raise HarnessError(f"needs a source checkout: {root}/.clusterfuzzlite/build.sh not "
                           "found (the build script and corpus are not installed with the "
                           "package)")


def source_files(root: Path) -> list[Path]:
    """What `COPY .` would bring: git's tracked and untracked-but-not-ignored files."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in NOT_SOURCE)
            files += [Path(dirpath, n).relative_to(root) for n in sorted(names)]
        return files
    return [Path(name) for name in listed.decode().split("\0")
            if name and (root / name).is_file()]


def copy_source(root: Path, destination: Path) -> int:
    files = source_files(root)
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    return len(files)


def _run_logged(argv: list[str], log: Path, **kwargs: object) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                              **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise HarnessError(f"`{' '.join(argv[:4])} ...` exited {proc.returncode} "
                           f"(log {log}):\n" + "\n".join(tail))


def make_base_environment(work: Path, packager: str | None, log: Path) -> tuple[Path, str]:
    """A virtualenv standing in for the image's Python: atheris and, to package like
    compile_python_fuzzer, PyInstaller. With no packager chosen, PyInstaller when it
    installs, else the launcher. Returns the virtualenv and the packager."""
    venv = work / "venv"
    pip = str(venv / "bin" / "pip")
    _run_logged([sys.executable, "-m", "venv", str(venv)], log)
    try:
        _run_logged([pip, "install", "-q", "atheris"], log)
    except HarnessError as exc:
        raise BaseEnvironmentUnavailable(f"atheris does not install: {exc}") from exc
    if packager in (None, "pyinstaller"):
        try:
            _run_logged([pip, "install", "-q", "pyinstaller"], log)
        except HarnessError as exc:
            if packager == "pyinstaller":
                raise BaseEnvironmentUnavailable(f"PyInstaller does not install: {exc}") \
                    from exc
            return venv, "launcher"
    return venv, packager or "pyinstaller"


def run_build(root: Path, base: Path, packager: str | None) -> tuple[Path, Path, str]:
    """Lay out $SRC/$OUT/$WORK under `base` and run .clusterfuzzlite/build.sh there."""
    src, out, work = base / "src", base / "out", base / "work"
    for directory in (src, out, work):
        directory.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    project = src / PROJECT
    copy_source(root, project)
    shutil.copy2(project / ".clusterfuzzlite" / "build.sh", src / "build.sh")
    venv, packager = make_base_environment(work, packager, log)
    tools = work / "bin"
    tools.mkdir(exist_ok=True)
    shutil.copy2(project / "fuzz" / "oss_fuzz" / "compile_python_fuzzer", tools)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(SRC=str(src), OUT=str(out), WORK=str(work), FUZZING_LANGUAGE="python",
               QCOW2_PACKAGER=packager, VIRTUAL_ENV=str(venv),
               PATH=os.pathsep.join([str(tools), str(venv / "bin"), env.get("PATH", "")]))
    _run_logged(["bash", "-eu", str(src / "build.sh")], log, cwd=project, env=env)
    return out, work, packager


def built_fuzzers(out: Path) -> list[Path]:
    """Executables in $OUT that name LLVMFuzzerTestOneInput (OSS-Fuzz's own test)."""
    found = []
    for path in sorted(out.iterdir()):
        if path.is_file() and os.access(path, os.X_OK) and "." not in path.name:
            with open(path, "rb") as f:
                if FUZZER_MARKER in f.read(1 << 20):
                    found.append(path)
    return found


def libfuzzer_options(options_file: Path) -> list[str]:
    """The [libfuzzer] section of <fuzzer>.options as flags, as ClusterFuzz passes them."""
    if not options_file.is_file():
        return []
    parser = configparser.ConfigParser()
    parser.read(options_file)
    if not parser.has_section("libfuzzer"):
        return []
    return [f"-{key}={value}" for key, value in parser.items("libfuzzer")]


def run_fuzzer(fuzzer: Path, work: Path, seconds: int, runs: int | None) -> FuzzerRun:
    out = fuzzer.parent
    name = fuzzer.name
    seeds_dir = work / "corpus" / name / "seeds"
    new_dir = work / "corpus" / name / "new"
    artifacts_dir = work / "artifacts" / name
    for directory in (seeds_dir, new_dir, artifacts_dir):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    seed_zip = out / f"{name}_seed_corpus.zip"
    seeds = 0
    if seed_zip.is_file():
        with zipfile.ZipFile(seed_zip) as archive:
            archive.extractall(seeds_dir)
            seeds = len(archive.namelist())
    argv = [str(fuzzer), *libfuzzer_options(out / f"{name}.options")]
    if (out / f"{name}.dict").is_file():
        argv.append(f"-dict={out / f'{name}.dict'}")
    argv += [f"-max_total_time={seconds}", "-print_final_stats=1", "-seed=1",
             f"-artifact_prefix={artifacts_dir}/"]
    if runs is not None:
        argv.append(f"-runs={runs}")
    argv += [str(new_dir), str(seeds_dir)]
    before = os.times()
    log = work / f"{name}.log"
    with open(log, "wb") as output:
        try:
            # PyInstaller's bundle unpacks itself before libFuzzer's clock starts.
            proc = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT,
                                  timeout=seconds + 300, check=False, cwd=work)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -9
    after = os.times()
    text = log.read_bytes()
    executed = _EXECUTED.findall(text)
    coverage = _COVERAGE.findall(text)
    rss = _PEAK_RSS.findall(text)
    return FuzzerRun(
        name=name, exit_code=code, executions=int(executed[-1]) if executed else 0,
        seeds=seeds, coverage=int(coverage[-1][0]) if coverage else 0,
        peak_rss_mb=int(rss[-1]) if rss else 0,
        cpu_seconds=round((after.children_user - before.children_user)
                          + (after.children_system - before.children_system), 2),
        artifacts=sorted(p.name for p in artifacts_dir.iterdir()))


def build_and_run(base: Path, seconds: int = 5, runs: int | None = None,
                  packager: str | None = None, root: Path = REPO) -> LocalBuild:
    _require_checkout(root)
    started = time.monotonic()
    out, work, packager = run_build(root, base, packager)
    build_seconds = round(time.monotonic() - started, 1)
    fuzzers = built_fuzzers(out)
    results = [run_fuzzer(fuzzer, work, seconds, runs) for fuzzer in fuzzers]
    return LocalBuild(str(base), packager, [f.name for f in fuzzers], results,
                      dict(NOT_BUILT), build_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcow2harness.fuzz.oss_fuzz_local",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where $SRC, $OUT and $WORK go (default: a new "
                                      "temporary directory, kept)")
    parser.add_argument("--seconds", type=int, default=5,
                        help="libFuzzer -max_total_time per fuzzer (default 5)")
    parser.add_argument("--runs", type=int, help="libFuzzer -runs per fuzzer")
    parser.add_argument("--packager", choices=PACKAGERS,
                        help="pyinstaller (as compile_python_fuzzer; the default when "
                             "PyInstaller installs) or launcher (a wrapper running "
                             "the fuzzer script with the build's python3)")
    args = parser.parse_args(argv)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="oss-fuzz-local-"))
    print(f"oss-fuzz-local: building in {base} (packager {args.packager or 'auto'}; targets "
          f"{', '.join(OSS_FUZZ_TARGETS)})", flush=True)
    try:
        result = build_and_run(base.resolve(), args.seconds, args.runs, args.packager)
    except HarnessError as exc:
        print(f"oss-fuzz-local: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    with open(base / "summary.json", "w") as f:
        json.dump(result.to_json(), f, indent=1)
    print(f"built {len(result.built)} fuzzer(s) with {result.packager} in "
          f"{result.build_seconds} s: "
          f"{', '.join(result.built) or 'none'}")
    for run in result.runs:
        verdict = "ok" if run.passed else "FAILED"
        print(f"  {run.name}: {verdict}, exit {run.exit_code}, {run.executions} executions "
              f"({run.seeds} seeds), cov {run.coverage}, peak RSS {run.peak_rss_mb} MB, "
              f"{run.cpu_seconds} s CPU" + (f", artifacts {run.artifacts}" if run.artifacts
                                           else ""))
    for name, reason in result.not_built.items():
        print(f"  {name}: not built ({reason})")
    print(f"summary: {base / 'summary.json'}; logs: {base / 'work'}")
    return EXIT_OK if result.passed else EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
