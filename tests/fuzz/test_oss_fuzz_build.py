"""The ClusterFuzzLite / OSS-Fuzz build: every target is built or explained, and the local
rehearsal of .clusterfuzzlite/build.sh packages each fuzzer with PyInstaller and runs it.

The rehearsal makes its own virtualenv (atheris, PyInstaller, this package from a copy of
the checkout) and takes about two minutes of CPU; it is skipped, with the reason, when
atheris or PyInstaller cannot be installed from the package index.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess
import zipfile

import pytest
from qcow2harness.fuzz import oss_fuzz_local
from qcow2harness.fuzz.libfuzzer_entry import NOT_BUILT, OSS_FUZZ_TARGETS, SECONDS_VARIABLE
from qcow2harness.fuzz.targets import TARGET_NAMES

REPO = pathlib.Path(__file__).resolve().parents[2]
FUZZER_SCRIPTS = REPO / "fuzz" / "oss_fuzz"
SEEDS = REPO / "corpus" / "seeds"


def test_every_target_is_built_or_says_why_not() -> None:
    assert set(OSS_FUZZ_TARGETS) | set(NOT_BUILT) == set(TARGET_NAMES)
    assert not set(OSS_FUZZ_TARGETS) & set(NOT_BUILT)
    assert all(reason.strip() for reason in NOT_BUILT.values())


def test_one_entry_script_per_built_target() -> None:
    scripts = {p.name.removesuffix("_fuzzer.py"): p for p in FUZZER_SCRIPTS.glob("*_fuzzer.py")}
    assert set(scripts) == set(OSS_FUZZ_TARGETS)
    for target, script in scripts.items():
        calls = re.findall(r'main\("([a-z]+)"\)', script.read_text())
        assert calls == [target], f"{script.name} runs {calls}, not {target!r}"


def test_dockerfile_puts_the_source_where_build_sh_looks() -> None:
    dockerfile = (REPO / ".clusterfuzzlite" / "Dockerfile").read_text()
    build_sh = (REPO / ".clusterfuzzlite" / "build.sh").read_text()
    project = oss_fuzz_local.PROJECT
    assert dockerfile.startswith("#") and "FROM gcr.io/oss-fuzz-base/base-builder-python" \
        in dockerfile
    assert f"COPY . $SRC/{project}\n" in dockerfile
    assert "COPY .clusterfuzzlite/build.sh $SRC/\n" in dockerfile
    assert f'cd "$SRC/{project}"' in build_sh
    assert "language: python" in (REPO / ".clusterfuzzlite" / "project.yaml").read_text()


def test_options_file_becomes_libfuzzer_flags() -> None:
    flags = oss_fuzz_local.libfuzzer_options(FUZZER_SCRIPTS / "fuzzer.options")
    assert flags and all(re.fullmatch(r"-[a-z_]+=\S+", flag) for flag in flags)
    largest_seed = max(p.stat().st_size for p in SEEDS.glob("*.qcow2"))
    max_len = [int(f.split("=")[1]) for f in flags if f.startswith("-max_len=")]
    assert max_len and max_len[0] > largest_seed


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory) -> oss_fuzz_local.LocalBuild:
    base = tmp_path_factory.mktemp("oss-fuzz")
    try:
        return oss_fuzz_local.build_and_run(base, seconds=5, packager="pyinstaller")
    except oss_fuzz_local.BaseEnvironmentUnavailable as exc:
        pytest.skip(f"not run: {str(exc).splitlines()[0]}")


def test_local_build_packages_every_target(local_build: oss_fuzz_local.LocalBuild) -> None:
    out = pathlib.Path(local_build.directory) / "out"
    assert local_build.packager == "pyinstaller"
    assert local_build.built == sorted(f"{t}_fuzzer" for t in OSS_FUZZ_TARGETS)
    seeds = sorted(p.name for p in SEEDS.glob("*.qcow2"))
    for name in local_build.built:
        wrapper = (out / name).read_bytes()
        assert oss_fuzz_local.FUZZER_MARKER in wrapper
        assert (out / f"{name}.pkg").read_bytes()[:4] == b"\x7fELF"  # a PyInstaller bundle
        assert (out / f"{name}.dict").read_bytes() == (REPO / "fuzz" / "qcow2.dict").read_bytes()
        assert (out / f"{name}.options").is_file()
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as archive:
            assert sorted(archive.namelist()) == seeds


def test_local_build_runs_every_fuzzer(local_build: oss_fuzz_local.LocalBuild) -> None:
    assert [run.name for run in local_build.runs] == local_build.built
    for run in local_build.runs:
        assert run.exit_code == 0, f"{run.name} exited {run.exit_code}"
        assert not run.artifacts, f"{run.name} left {run.artifacts}"
        assert run.seeds == len(list(SEEDS.glob("*.qcow2")))
        # More executions than seeds: mutated inputs ran, not just the corpus load.
        assert run.executions > run.seeds, f"{run.name}: {run.executions} executions"
        assert run.coverage > 0, f"{run.name}: no coverage counted (instrumentation lost?)"
        assert run.passed
    assert local_build.passed


def test_a_finding_is_a_libfuzzer_crash(local_build: oss_fuzz_local.LocalBuild,
                                        tmp_path: pathlib.Path) -> None:
    """A time bound of 0 s makes every input `slow`: the packaged fuzzer must stop with a
    non-zero exit, the finding in its output and the input saved as crash-<sha1>, which
    is what OSS-Fuzz takes for a crash."""
    fuzzer = pathlib.Path(local_build.directory) / "out" / "check_fuzzer"
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    (corpus / "seed").write_bytes((SEEDS / "qemu-v3.qcow2").read_bytes())
    env = dict(os.environ, **{SECONDS_VARIABLE: "0"})
    proc = subprocess.run([str(fuzzer), f"-artifact_prefix={artifacts}/", "-runs=10",
                           str(corpus)], env=env, capture_output=True, timeout=300,
                          check=False)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode != 0, output[-2000:]
    assert "FuzzFinding: slow: took" in output, output[-2000:]
    crashes = list(artifacts.glob("crash-*"))
    assert len(crashes) == 1, output[-2000:]
    # libFuzzer names it by content (the first input run, here libFuzzer's empty one).
    assert crashes[0].name == f"crash-{hashlib.sha1(crashes[0].read_bytes()).hexdigest()}"
