"""Distribution: `python -m build` makes an sdist and, from it, a wheel; the wheel installs
into a clean virtualenv where `qcow2-harness check` works without Node and gives the same
verdicts as this checkout, and the Hypothesis strategies import with the `properties` extra.

Needs `build` (the `test` extra) and the package index (numpy, zstandard, kaitaistruct,
hypothesis for the virtualenv); about 40 s of wall time, most of it pip.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from typing import Any

import pytest

from qcow2harness.checker import check_path
from qcow2harness.commands.output import versioned
from qcow2harness.errors import HarnessError

REPO = pathlib.Path(__file__).resolve().parent.parent
SEEDS = REPO / "corpus" / "seeds"
# Read at run time by the installed package (importlib.resources / package data).
RUNTIME_DATA = ("qcow2harness/spec/clauses.toml", "qcow2harness/spec/SPEC.md",
                "qcow2harness/fuzz/qcow2.dict",
                *(f"qcow2harness/schema/{p.name}" for p in (REPO / "docs" / "schema").glob(
                    "*.schema.json")))  # docs/schema/, read by `merge`
# What the sdist must carry to rebuild and test without Node or a git checkout.
SDIST_MUST_HAVE = ("pyproject.toml", "MANIFEST.in", "README.md", "Makefile", "tox.ini",
                   "package.json", "package-lock.json", "ksy/qcow2.ksy", "ksy/build.js",
                   "spec/clauses.toml", "spec/SPEC.md", "qcow2harness/parser/qcow2.py",
                   "reference/zones.py", "properties/strategies.py", "fuzz/qcow2.dict",
                   "fuzz/oss_fuzz/check_fuzzer.py", ".clusterfuzzlite/build.sh",
                   "corpus/manifest.json", "tests/conftest.py", "iotests/check")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    pytest.importorskip("build", reason="not run: PyPI `build` missing "
                                         "(pip install 'qcow2-harness[test]')")
    outdir = tmp_path_factory.mktemp("dist")
    # No --sdist/--wheel: build makes the sdist, then the wheel from the unpacked sdist.
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Building wheel from sdist" in proc.stdout + proc.stderr
    sdists, wheels = list(outdir.glob("*.tar.gz")), list(outdir.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in outdir.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_wheel_carries_the_runtime_data(dist: dict[str, pathlib.Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        data = {n for n in names if not n.endswith(".py") and ".dist-info/" not in n}
        assert data == set(RUNTIME_DATA)  # and nothing from the sdist's extra files
        assert wheel.read("qcow2harness/spec/clauses.toml") == \
            (REPO / "spec" / "clauses.toml").read_bytes()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"qcow2harness"}
    assert any(n.startswith("qcow2harness/parser/") for n in names)


def test_sdist_carries_the_sources(dist: dict[str, pathlib.Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for name in SDIST_MUST_HAVE:
        assert name in names, name
    seeds = {f"corpus/seeds/{p.name}" for p in SEEDS.glob("*.qcow2")}
    assert seeds and seeds <= names
    for unwanted in ("node_modules/", ".venv/", ".tox/", "corpus/broken/", "data/"):
        assert not any(n.startswith(unwanted) for n in names), unwanted
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


@pytest.fixture(scope="module")
def venv(dist: dict[str, pathlib.Path],
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clean virtualenv with the wheel (and its `properties` extra), PATH without node."""
    home = tmp_path_factory.mktemp("venv")
    root = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    bin_dir = root / "bin"
    path = [str(bin_dir)] + [d for d in os.environ.get("PATH", "").split(os.pathsep)
                             if d and not (pathlib.Path(d) / "node").exists()]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=os.pathsep.join(path), VIRTUAL_ENV=str(root))
    assert shutil.which("node", path=env["PATH"]) is None
    proc = subprocess.run([str(bin_dir / "pip"), "install", "-q", f"{dist['wheel']}[properties]"],
                          capture_output=True, text=True, env=env, cwd=home, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"bin": bin_dir, "env": env, "cwd": home}


def _run(venv: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=venv["env"],
                          cwd=venv["cwd"], check=False, timeout=120)


def test_installed_package_is_the_wheel_not_this_checkout(venv: dict[str, Any]) -> None:
    proc = _run(venv, str(venv["bin"] / "python"), "-c",
                "import qcow2harness, qcow2harness.spec as s; "
                "print(qcow2harness.__file__); print(s.__file__)")
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        path = pathlib.Path(line).resolve()
        assert "site-packages" in path.parts and REPO not in path.parents, path


def _images(directory: pathlib.Path) -> list[pathlib.Path]:
    """Corpus seeds plus three broken variants (SHOULD, MUST, MUST) and a truncated one."""
    chosen = [SEEDS / "qemu-v3.qcow2", SEEDS / "qemu-extended-l2.qcow2",
              SEEDS / "reference-zoned-partly-written.qcow2", SEEDS / "qemu-bitmap.qcow2"]
    seed = (SEEDS / "qemu-v3.qcow2").read_bytes()
    variants = {
        "dirty-bit": (72, struct.pack(">Q", 1)),  # incompatible features: dirty
        "unknown-incompatible-bit": (72, struct.pack(">Q", 1 << 20)),
        "unaligned-l1": (40, struct.pack(">Q", int.from_bytes(seed[40:48], "big") + 3)),
    }
    for name, (offset, value) in variants.items():
        data = bytearray(seed)
        data[offset:offset + len(value)] = value
        chosen.append(directory / f"{name}.qcow2")
        chosen[-1].write_bytes(bytes(data))
    chosen.append(directory / "truncated.qcow2")
    chosen[-1].write_bytes(seed[:50])
    return chosen


def test_check_in_the_venv_matches_this_checkout(venv: dict[str, Any]) -> None:
    exit_codes = set()
    for image in _images(venv["cwd"]):
        proc = _run(venv, str(venv["bin"] / "qcow2-harness"), "check", "--json", str(image))
        try:
            report = check_path(image)
        except HarnessError as exc:  # the CLI's one-line error, exit 2
            assert proc.returncode == 2 and not proc.stdout, (image.name, proc.stdout)
            assert str(exc) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            exit_codes.add(2)
            continue
        assert proc.returncode == report.exit_code, (image.name, proc.stderr)
        theirs = json.loads(proc.stdout)
        ours = json.loads(json.dumps(versioned("check", report.to_json())))
        for stats in (theirs["stats"], ours["stats"]):
            stats.pop("seconds", None)  # how long the check took
        assert theirs == ours, image.name
        exit_codes.add(report.exit_code)
    assert exit_codes == {0, 2, 3}  # the images cover every verdict


def test_strategies_import_and_draw_in_the_venv(venv: dict[str, Any]) -> None:
    program = (
        "from hypothesis import given, settings\n"
        "from qcow2harness.properties import strategies\n"
        "from qcow2harness.reference.zones import ZoneConfig\n"
        "drawn = []\n"
        "@settings(max_examples=5, database=None)\n"
        "@given(strategies.zone_configs())\n"
        "def draw(config):\n"
        "    assert isinstance(config, ZoneConfig)\n"
        "    drawn.append(config)\n"
        "draw()\n"
        "print(len(drawn), strategies.__file__)\n"
    )
    proc = _run(venv, str(venv["bin"] / "python"), "-c", program)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, where = proc.stdout.split()
    assert int(count) >= 1 and "site-packages" in where


def test_merge_in_the_venv_validates_with_the_shipped_schemas(venv: dict[str, Any]) -> None:
    # `merge` reads docs/schema/ from the wheel (qcow2harness/schema/), not this checkout.
    junk = venv["cwd"] / "junk-fuzz.json"
    junk.write_text('{"kind": "fuzz"}')
    proc = _run(venv, str(venv["bin"] / "qcow2-harness"), "merge", str(junk))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{junk}: /target: missing" in proc.stderr and "Traceback" not in proc.stderr
    result = venv["cwd"] / "crash.json"
    made = _run(venv, str(venv["bin"] / "qcow2-harness"), "crash", "--writer", "reference",
                "--workload", "zones-small", "--json", str(result))
    assert made.returncode == 0, made.stdout + made.stderr
    proc = _run(venv, str(venv["bin"] / "qcow2-harness"), "merge", str(result))
    assert proc.returncode == 0 and "crash states checked" in proc.stdout, proc.stderr
