"""`map --output json` against the real `qemu-img map --output=json` (clause L2-6).

The parsed JSON must agree on every field our map models (qemu_json.map_difference; a
key only a newer QEMU prints, such as 10.x's `compressed`, is no difference): on every
QEMU-made corpus image, on backing chains built
with qemu-img/qemu-io (the cases of the qemu:joint-allocation thread and more), and on
images drawn by Hypothesis and written by qemu-io.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcow2harness.properties.strategies import image_options

from qcow2harness import qemu
from qcow2harness.cli import run as cli_run
from qcow2harness.corpus import qemu_img_argv, skipped_recipes
from qcow2harness.errors import ParseError, ResourceLimitError
from qcow2harness.image import Image
from qcow2harness.map import Chain, map_json
from qcow2harness.qemu_json import map_difference

Json = list[dict[str, Any]]


def qemu_map(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    argv = qemu_img_argv("map", str(path), "--output=json")
    return subprocess.run(argv, capture_output=True, text=True, cwd=path.parent, check=False)


def qemu_map_json(path: pathlib.Path) -> Json:
    proc = qemu_map(path)
    assert proc.returncode == 0, proc.stderr
    result: Json = json.loads(proc.stdout)
    return result


def assert_same_map(path: pathlib.Path, context: str = "") -> Json:
    theirs = qemu_map_json(path)
    ours = map_json(str(path))
    difference = map_difference(ours, theirs)
    assert difference is None, (f"{context or path.name}: {difference}\n"
                                f"ours   {ours}\nqemu   {theirs}")
    return ours


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------


def test_corpus_maps_equal_qemu(qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]) -> None:
    directory, manifest = qemu_corpus
    compared = []
    kinds: set[str] = set()
    for entry in manifest:
        if not entry["made_by"].startswith("qemu-img"):
            continue
        ours = assert_same_map(directory / entry["file"], entry["name"])
        compared.append(entry["name"])
        for extent in ours:
            kinds.add(f"depth{min(extent['depth'], 1)}-present{extent['present']}-"
                      f"zero{extent['zero']}-data{extent['data']}-offset{'offset' in extent}")
    # Recipes this QEMU cannot make (no zstd, no crypto library) are listed with the reason.
    assert len(compared) + len(skipped_recipes(directory)) >= 25
    # The corpus exercises data, zero, compressed (no offset), unallocated subclusters
    # with an offset, metadata preallocation (data and zero) and a backing layer.
    for kind in ("depth0-presentTrue-zeroFalse-dataTrue-offsetTrue",
                 "depth0-presentTrue-zeroTrue-dataFalse-offsetFalse",
                 "depth0-presentTrue-zeroFalse-dataTrue-offsetFalse",
                 "depth0-presentFalse-zeroTrue-dataFalse-offsetTrue",
                 "depth0-presentTrue-zeroTrue-dataTrue-offsetTrue",
                 "depth1-presentTrue-zeroFalse-dataTrue-offsetTrue"):
        assert kind in kinds, kind


def zoned_images(corpus: tuple[pathlib.Path, list[dict[str, Any]]]) -> list[pathlib.Path]:
    directory, manifest = corpus
    return [directory / e["file"] for e in manifest if e["name"].startswith("reference-zoned")]


def test_zoned_images_are_mapped(qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]
                                 ) -> None:
    paths = zoned_images(qemu_corpus)
    assert len(paths) >= 5
    written = 0
    for path in paths:
        ours = map_json(str(path))
        with Image.open(path) as image:
            size = int(image.header.virtual_size)
        assert sum(e["length"] for e in ours) == size, path.name
        assert [e["start"] for e in ours] == list(
            itertools.accumulate([0] + [e["length"] for e in ours[:-1]])), path.name
        written += any(e["data"] for e in ours)
    assert written >= 4  # every image but the empty one holds data


def test_zoned_images_compared_with_qemu(qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]
                                         ) -> None:
    refused = []
    for path in zoned_images(qemu_corpus):
        proc = qemu_map(path)
        if proc.returncode != 0:
            assert "incompatible feature" in proc.stderr, proc.stderr
            refused.append(path.name)
            continue
        difference = map_difference(map_json(str(path)), json.loads(proc.stdout))
        assert difference is None, f"{path.name}: {difference}"
    if refused:
        pytest.skip(f"not compared: this qemu-img refuses {len(refused)} zoned images "
                    "(incompatible bit 5, ZONE-2)")


# ---------------------------------------------------------------------------
# Backing chains (the qemu:joint-allocation thread's example and more)
# ---------------------------------------------------------------------------


@dataclass
class ChainCase:
    """Images made in order: (name, create args), then qemu-io commands on each (or one
    qemu-img step, written "!ARGS")."""

    name: str
    images: list[tuple[str, list[str]]]
    writes: list[tuple[str, list[str]]] = field(default_factory=list)
    top: str = "top.qcow2"
    raw_writes: bool = False


def qcow2(name: str, size: str = "", backing: str | None = None, fmt: str = "qcow2",
          options: str = "") -> tuple[str, list[str]]:
    args = ["-f", "qcow2"]
    if options:
        args += ["-o", options]
    if backing:
        args += ["-b", backing, "-F", fmt]
    return name, [*args, name, *([size] if size else [])]


def raw(name: str, size: str) -> tuple[str, list[str]]:
    return name, ["-f", "raw", name, size]


SEED_TOP = ["write -P 69 64k 64k", "write -z 128k 64k"]
MIXED_WRITES = ["write -P 1 0 64k", "write -z 1M 64k", "write -z -u 2M 64k", "discard 3M 64k",
                "discard 0 4k"]
BASE_THREE = ["write -P 65 0 64k", "write -P 66 64k 64k", "write -P 67 128k 64k"]

CHAIN_CASES = [
    ChainCase("thread-raw-base", [raw("base.raw", "256k"),
                                  qcow2("top.qcow2", backing="base.raw", fmt="raw")],
              [("base.raw", BASE_THREE), ("top.qcow2", SEED_TOP)], raw_writes=True),
    ChainCase("thread-raw-base-sparse-tail", [raw("base.raw", "1M"),
                                              qcow2("top.qcow2", backing="base.raw", fmt="raw")],
              [("base.raw", ["write -P 65 0 64k", "write -P 66 512k 4k"]),
               ("top.qcow2", SEED_TOP)], raw_writes=True),
    ChainCase("thread-qcow2-base", [qcow2("base.qcow2", "256k"),
                                    qcow2("top.qcow2", backing="base.qcow2")],
              [("base.qcow2", BASE_THREE), ("top.qcow2", SEED_TOP)]),
    ChainCase("three-deep", [qcow2("base.qcow2", "1M"),
                             qcow2("mid.qcow2", backing="base.qcow2"),
                             qcow2("top.qcow2", backing="mid.qcow2")],
              [("base.qcow2", ["write -P 1 0 512k"]),
               ("mid.qcow2", ["write -P 2 64k 64k", "write -z 192k 64k", "write -P 3 768k 64k"]),
               ("top.qcow2", ["write -P 4 128k 64k", "discard 64k 64k", "write -z -u 0 64k"])]),
    ChainCase("three-deep-raw-bottom", [raw("base.raw", "512k"),
                                        qcow2("mid.qcow2", backing="base.raw", fmt="raw"),
                                        qcow2("top.qcow2", backing="mid.qcow2")],
              [("base.raw", ["write -P 1 0 128k", "write -P 1 384k 64k"]),
               ("mid.qcow2", ["write -z 64k 64k"]),
               ("top.qcow2", ["write -P 4 256k 4k"])], raw_writes=True),
    ChainCase("top-larger-than-base", [qcow2("base.qcow2", "1M"),
                                       qcow2("top.qcow2", "4M", backing="base.qcow2")],
              [("base.qcow2", ["write -P 1 0 1M"]),
               ("top.qcow2", ["write -P 2 512k 4k", "write -P 3 2M 64k"])]),
    ChainCase("top-larger-than-raw-base", [raw("base.raw", "192k"),
                                           qcow2("top.qcow2", "1M", backing="base.raw",
                                                 fmt="raw")],
              [("base.raw", ["write -P 1 0 192k"]), ("top.qcow2", ["write -P 2 512k 64k"])],
              raw_writes=True),
    ChainCase("zero-over-backing-data", [qcow2("base.qcow2", "1M"),
                                         qcow2("top.qcow2", backing="base.qcow2")],
              [("base.qcow2", ["write -P 1 0 1M"]),
               ("top.qcow2", ["write -z 0 64k", "write -z -u 128k 128k", "write -P 2 64k 64k",
                              "write -z 640k 4k"])]),
    ChainCase("discard-over-backing-data", [qcow2("base.qcow2", "1M"),
                                            qcow2("top.qcow2", backing="base.qcow2")],
              [("base.qcow2", ["write -P 1 0 1M"]),
               ("top.qcow2", ["write -P 2 0 512k", "discard 64k 128k", "discard 448k 64k"])]),
    ChainCase("extended-l2-top", [qcow2("base.qcow2", "1M"),
                                  qcow2("top.qcow2", "2M", backing="base.qcow2",
                                        options="extended_l2=on")],
              [("base.qcow2", ["write -P 1 0 768k"]),
               ("top.qcow2", ["write -P 2 0 4k", "write -z 40k 8k", "discard 8k 4k",
                              "write -P 3 1000k 4k", "write -z -u 1536k 8k"])]),
    ChainCase("extended-l2-base", [qcow2("base.qcow2", "1M", options="extended_l2=on"),
                                   qcow2("top.qcow2", backing="base.qcow2",
                                         options="cluster_size=4k")],
              [("base.qcow2", ["write -P 1 0 6k", "write -z 8k 2k"]),
               ("top.qcow2", ["write -P 2 4k 4k"])]),
    ChainCase("compressed-top", [qcow2("base.qcow2", "1M"),
                                 qcow2("top.qcow2", backing="base.qcow2")],
              [("base.qcow2", ["write -P 1 0 1M"]),
               ("top.qcow2", ["write -c -P 2 0 64k", "write -c -P 3 64k 64k"])]),
    # QEMU preallocates over a backing file only with extended L2 entries.
    ChainCase("metadata-preallocated-top",
              [qcow2("base.qcow2", "1M"),
               qcow2("top.qcow2", "2M", backing="base.qcow2",
                     options="preallocation=metadata,extended_l2=on")],
              [("base.qcow2", ["write -P 1 0 1M"]), ("top.qcow2", ["write -P 2 64k 64k"])]),
    # Single images with features the corpus holds only without writes of every kind.
    ChainCase("data-file-metadata-preallocated",
              [qcow2("top.qcow2", "4M", options="data_file=top.data,preallocation=metadata")],
              [("top.qcow2", MIXED_WRITES)]),
    ChainCase("data-file-raw", [qcow2("top.qcow2", "4M",
                                      options="data_file=top.data,data_file_raw=on")],
              [("top.qcow2", MIXED_WRITES)]),
    ChainCase("v2-zero-writes", [qcow2("top.qcow2", "4M", options="compat=0.10")],
              [("top.qcow2", MIXED_WRITES)]),
    ChainCase("extended-l2-2M-compressed",
              [qcow2("top.qcow2", "64M", options="extended_l2=on,cluster_size=2M")],
              [("top.qcow2", ["write -c -P 3 4M 2M", "write -P 1 0 64k", "write -z 10M 100k",
                              "write -z -u 20M 3M"])]),
    ChainCase("snapshot-then-overwrite", [qcow2("top.qcow2", "4M")],
              [("top.qcow2", ["write -P 1 0 1M"]), ("top.qcow2", ["!snapshot -c s1"]),
               ("top.qcow2", ["write -P 2 64k 64k", "discard 128k 64k"])]),
    ChainCase("preallocation-full", [qcow2("top.qcow2", "4M", options="preallocation=full")],
              [("top.qcow2", MIXED_WRITES)]),
    ChainCase("relative-paths-in-subdirectories",
              [qcow2("base.qcow2", "1M"),
               qcow2("a/mid.qcow2", backing="../base.qcow2"),
               qcow2("a/b/top.qcow2", backing="../mid.qcow2")],
              [("base.qcow2", ["write -P 1 0 256k"]), ("a/mid.qcow2", ["write -P 2 128k 256k"]),
               ("a/b/top.qcow2", ["write -z 192k 64k"])], top="a/b/top.qcow2"),
]


def build_chain(case: ChainCase, directory: pathlib.Path) -> pathlib.Path:
    for name, args in case.images:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        qemu.run("qemu-img", "create", "-q", *args, cwd=str(directory))
    for name, commands in case.writes:
        if commands[0].startswith("!"):  # a qemu-img step
            qemu.run("qemu-img", *commands[0][1:].split(), name, cwd=str(directory))
            continue
        fmt = "raw" if name.endswith(".raw") else "qcow2"
        argv = ["-f", fmt]
        for command in commands:
            argv += ["-c", command]
        qemu.run("qemu-io", *argv, name, cwd=str(directory))
    return directory / case.top


@pytest.mark.parametrize("case", CHAIN_CASES, ids=lambda c: c.name)
def test_chain_maps_equal_qemu(qemu_tools: None, tmp_path: pathlib.Path,
                               case: ChainCase) -> None:
    top = build_chain(case, tmp_path)
    ours = assert_same_map(top, case.name)
    assert max(e["depth"] for e in ours) == len(case.images) - 1


def test_thread_example_shows_each_status(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    """The thread's four clusters: backing data, local data, local zero, a raw hole."""
    ours = map_json(str(build_chain(CHAIN_CASES[0], tmp_path)))
    assert [(e["depth"], e["zero"], e["data"], e["present"]) for e in ours] == [
        (1, False, True, True), (0, False, True, True), (0, True, False, True),
        (1, True, False, True)]


def test_relative_names_resolve_against_the_naming_image(qemu_tools: None,
                                                         tmp_path: pathlib.Path) -> None:
    top = build_chain(CHAIN_CASES[-1], tmp_path)
    with Chain(str(top)) as chain:
        assert [layer.name for layer in chain.layers] == [
            str(top), str(tmp_path / "a/b/../mid.qcow2"), str(tmp_path / "a/b/../../base.qcow2")]


# ---------------------------------------------------------------------------
# Bad chains: one line, a documented exit code
# ---------------------------------------------------------------------------


def test_missing_backing_file_exits_1(qemu_tools: None, tmp_path: pathlib.Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    top = build_chain(CHAIN_CASES[2], tmp_path)
    (tmp_path / "base.qcow2").unlink()
    assert cli_run(["map", str(top)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "base.qcow2" in err and "Traceback" not in err


def test_backing_loop_exits_2(qemu_tools: None, tmp_path: pathlib.Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    build_chain(CHAIN_CASES[2], tmp_path)
    top = tmp_path / "top.qcow2"
    # base names top: a loop of two images.
    qemu.run("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2",
             "base.qcow2", cwd=str(tmp_path))
    with pytest.raises(ParseError, match="loops"):
        map_json(str(top))
    assert cli_run(["map", "--output", "json", str(top)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[L2-6]" in err


def test_chain_length_is_bounded(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "l0.qcow2", "1M", cwd=str(tmp_path))
    for depth in range(1, 5):
        qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", f"l{depth - 1}.qcow2",
                 "-F", "qcow2", f"l{depth}.qcow2", cwd=str(tmp_path))
    with pytest.raises(ResourceLimitError):
        Chain(str(tmp_path / "l4.qcow2"), max_length=4)
    with Chain(str(tmp_path / "l4.qcow2"), max_length=5) as chain:
        assert len(chain.layers) == 5
        assert [e.depth for e in chain.extents()] == [4]


# ---------------------------------------------------------------------------
# Hypothesis: random options, random qemu-io writes, ours == qemu-img's
# ---------------------------------------------------------------------------

SIZE_UNIT = 4096
_counter = itertools.count()


@st.composite
def io_commands(draw: st.DrawFn, size: int, compressed_ok: bool,
                unit: int) -> list[str]:
    """qemu-io commands on a `size`-byte image: writes, zero writes (with and without
    -u), discards and compressed writes (whole clusters, first: QEMU compresses only into
    clusters that hold nothing yet)."""
    commands = []
    compressed: dict[int, str] = {}
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["write", "zero", "zero-unmap", "discard", "compressed"]))
        if kind == "compressed" and (not compressed_ok or size < unit):
            kind = "write"
        step = unit if kind == "compressed" else 512
        start = draw(st.integers(0, size // step - 1)) * step
        length = draw(st.integers(1, max(1, min(size - start, 256 * 1024) // step))) * step
        length = min(length, size - start)
        if kind == "compressed":
            length = step
        if kind == "compressed":
            compressed[start] = f"write -c -P 7 {start} {length}"
            continue
        commands.append({
            "write": f"write -P {draw(st.integers(1, 255))} {start} {length}",
            "zero": f"write -z {start} {length}",
            "zero-unmap": f"write -z -u {start} {length}",
            "discard": f"discard {start} {length}",
        }[kind])
    return list(compressed.values()) + commands


@st.composite
def drawn_images(draw: st.DrawFn, workdir: str) -> tuple[pathlib.Path, list[str]]:
    """A drawn image (maybe over a qcow2 or raw base), written by qemu-io; returns the
    top and the commands that made it (for the failure message)."""
    number = next(_counter)
    directory = pathlib.Path(workdir) / f"case-{number}"
    directory.mkdir()
    options = draw(image_options())
    cluster = int(options["cluster_size"])
    size = draw(st.integers(1, 48)) * SIZE_UNIT * 4
    made: list[str] = []

    def run(tool: str, *args: str) -> None:
        made.append(" ".join((tool, *args)))
        qemu.run(tool, *args, cwd=str(directory))

    backing = draw(st.sampled_from([None, "qcow2", "raw"]))
    create = ["create", "-q", "-f", "qcow2", "-o",
              ",".join(f"{k}={v}" for k, v in sorted(options.items()))]
    if backing is not None:
        base = f"base.{backing}"
        base_size = draw(st.integers(1, 64)) * SIZE_UNIT
        run("qemu-img", "create", "-q", "-f", backing, base, str(base_size))
        base_commands = draw(io_commands(base_size, False, 4096))
        if base_commands:
            run("qemu-io", "-f", backing, *itertools.chain.from_iterable(
                ("-c", c) for c in base_commands), base)
        create += ["-b", base, "-F", backing]
    run("qemu-img", *create, "top.qcow2", str(size))
    commands = draw(io_commands(size, options["compat"] != "0.10"
                                and options["extended_l2"] == "off", cluster))
    if commands:
        run("qemu-io", "-f", "qcow2", *itertools.chain.from_iterable(
            ("-c", c) for c in commands), "top.qcow2")
    return directory / "top.qcow2", made


HYPOTHESIS_EXAMPLES = max(10, (settings.default.max_examples or 100) // 4)


def test_drawn_images_map_equal_qemu(qemu_tools: None,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = str(tmp_path_factory.mktemp("drawn"))
    examples: list[int] = []

    @settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(drawn_images(workdir))
    def ours_equal_qemus(drawn: tuple[pathlib.Path, Sequence[str]]) -> None:
        top, made = drawn
        examples.append(1)
        assert_same_map(top, "\n".join(made))

    ours_equal_qemus()
    assert examples


HUMAN_CASES = [c for c in CHAIN_CASES if "compressed" not in c.name]


@pytest.mark.parametrize("case", HUMAN_CASES[:6], ids=lambda c: c.name)
def test_human_output_equals_qemu_img_map(qemu_tools: None, tmp_path: pathlib.Path,
                                          case: ChainCase,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    top = build_chain(case, tmp_path)
    theirs = qemu.run("qemu-img", "map", str(top)).stdout
    assert cli_run(["map", str(top)]) == 0
    assert capsys.readouterr().out == theirs
