"""The seed corpus, built reproducibly by the real qemu-img across its feature matrix.

`build_corpus(DIR)` writes every image plus `manifest.json`, which records for
each image the exact commands that made it, and `skipped.json`: the recipes this
qemu-img cannot make (a build without zstd or a crypto library), with the reason.
Images are kept small: a few MiB of virtual size and a few written clusters.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qcow2harness import qemu
from qcow2harness.errors import WriterError

VIRTUAL_SIZE = "4M"
LUKS_SECRET = "qcow2-harness"


def qemu_img_argv(subcommand: str, path: str, *options: str) -> list[str]:
    """`qemu-img SUBCOMMAND --force-share OPTIONS IMAGE`, naming an encrypted corpus
    image through --image-opts with the corpus secret (qemu-img opens it only so)."""
    from qcow2harness.image import Image

    argv = [qemu.require_tool("qemu-img"), subcommand, "--force-share", *options]
    with Image.open(path) as image:
        encrypted = int(image.header.crypt_method) != 0
    if not encrypted:
        return [*argv, path]
    return [*argv, "--object", f"secret,id=sec0,data={LUKS_SECRET}", "--image-opts",
            f"driver=qcow2,file.filename={path},encrypt.key-secret=sec0"]


@dataclass
class Recipe:
    """How one corpus image is made: qemu-img create options, then steps."""

    name: str
    description: str
    create_options: str = ""
    # Each step is (tool, args...) with {img} and {dir} substituted.
    steps: list[tuple[str, ...]] = field(default_factory=list)
    create: bool = True
    image_opts: bool = False  # qemu-io needs --image-opts (encrypted images)
    virtual_size: str = VIRTUAL_SIZE
    # Optional QEMU build features the recipe needs (keys of FEATURE_PROBES): a qemu-img
    # built without one skips the recipe with the reason instead of failing the corpus.
    needs: tuple[str, ...] = ()

    def commands(self, directory: str) -> list[tuple[str, ...]]:
        img = os.path.join(directory, self.name + ".qcow2")
        cmds: list[tuple[str, ...]] = []
        if self.create:
            args: tuple[str, ...] = ("create", "-q", "-f", "qcow2")
            if "encrypt" in self.create_options:
                args += ("--object", f"secret,id=sec0,data={LUKS_SECRET}")
            if self.create_options:
                args += ("-o", self.create_options)
            cmds.append(("qemu-img", *args, img, self.virtual_size))
        for step in self.steps:
            cmds.append(tuple(part.format(img=img, dir=directory) for part in step))
        return cmds


def _write(img_pattern: str, offset: str, length: str) -> tuple[str, ...]:
    return ("qemu-io", "-c", f"write -q -P {img_pattern} {offset} {length}", "{img}")


# A few writes that allocate clusters in two L2 ranges and leave holes.
STANDARD_WRITES = [
    _write("0x11", "0", "64k"),
    _write("0x22", "1M", "4k"),
    ("qemu-io", "-c", "write -q -z 2M 64k", "{img}"),
]


def qemu_recipes() -> list[Recipe]:
    recipes: list[Recipe] = []
    for compat in ("0.10", "1.1"):
        recipes.append(Recipe(f"qemu-compat-{compat}", f"compat={compat}, default options",
                              f"compat={compat}", list(STANDARD_WRITES)))
    for cluster_size in ("512", "4k", "64k", "2M"):
        recipes.append(Recipe(f"qemu-cluster-{cluster_size}", f"cluster_size={cluster_size}",
                              f"cluster_size={cluster_size}", list(STANDARD_WRITES)))
    for refcount_bits in (1, 2, 4, 8, 16, 32, 64):
        recipes.append(Recipe(f"qemu-refcount-bits-{refcount_bits}",
                              f"refcount_bits={refcount_bits}",
                              f"refcount_bits={refcount_bits}", list(STANDARD_WRITES)))
    recipes.append(Recipe("qemu-lazy-refcounts", "lazy_refcounts=on",
                          "lazy_refcounts=on", list(STANDARD_WRITES)))
    recipes.append(Recipe("qemu-extended-l2", "extended_l2=on with 64 KiB clusters",
                          "extended_l2=on,cluster_size=64k",
                          [_write("0x33", "0", "4k"), _write("0x44", "40k", "8k"),
                           ("qemu-io", "-c", "write -q -z 1M 2k", "{img}")]))
    recipes.append(Recipe("qemu-preallocation-metadata", "preallocation=metadata",
                          "preallocation=metadata"))
    for compression in ("zlib", "zstd"):
        recipes.append(Recipe(
            f"qemu-compressed-{compression}",
            f"compressed clusters ({compression}) written by qemu-io -c 'write -c'",
            f"compression_type={compression}",
            [("qemu-io", "-c", "write -c -q -P 0x55 0 64k", "{img}"),
             ("qemu-io", "-c", "write -c -q -P 0x66 128k 64k", "{img}")],
            needs=("zstd",) if compression == "zstd" else ()))
    recipes.append(Recipe(
        "qemu-convert-compressed", "qemu-img convert -c of a qcow2 with data",
        create=False,
        steps=[("qemu-img", "create", "-q", "-f", "qcow2", "{dir}/convert-src.tmp", VIRTUAL_SIZE),
               ("qemu-io", "-c", "write -q -P 0x77 0 192k", "{dir}/convert-src.tmp"),
               ("qemu-img", "convert", "-c", "-O", "qcow2", "{dir}/convert-src.tmp", "{img}")]))
    recipes.append(Recipe(
        "qemu-backing-base", "base image of a backing chain", "", [_write("0x01", "0", "128k")]))
    recipes.append(Recipe(
        "qemu-backing-overlay", "overlay with a backing file and backing format",
        create=False,
        steps=[("qemu-img", "create", "-q", "-f", "qcow2", "-b", "qemu-backing-base.qcow2",
                "-F", "qcow2", "{img}"),
               _write("0x02", "64k", "4k")]))
    recipes.append(Recipe(
        "qemu-data-file", "external data file (data_file_raw=off)",
        "data_file=qemu-data-file.data",
        [_write("0x88", "0", "64k")]))
    recipes.append(Recipe(
        "qemu-data-file-raw", "external data file with data_file_raw=on",
        "data_file=qemu-data-file-raw.data,data_file_raw=on",
        [_write("0x99", "0", "64k")]))
    recipes.append(Recipe(
        "qemu-snapshot", "an internal snapshot, then more writes",
        "", [_write("0xaa", "0", "64k"), ("qemu-img", "snapshot", "-c", "snap0", "{img}"),
             _write("0xbb", "0", "4k")]))
    recipes.append(Recipe(
        "qemu-bitmap", "a persistent dirty bitmap",
        "", [_write("0xcc", "0", "64k"), ("qemu-img", "bitmap", "--add", "{img}", "bitmap0"),
             ("qemu-img", "bitmap", "--add", "-g", "128k", "{img}", "bitmap1")]))
    recipes.append(Recipe(
        "qemu-luks", "LUKS encryption (secret 'qcow2-harness')",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200", needs=("luks",)))
    return recipes


# Optional features of a QEMU build, each probed by the qemu-img create that needs it: a
# minimal build (--without-default-features) has neither zstd nor a crypto library.
FEATURE_PROBES: dict[str, tuple[str, ...]] = {
    "zstd": ("-o", "compression_type=zstd"),
    "luks": ("--object", f"secret,id=sec0,data={LUKS_SECRET}", "-o",
             "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"),
}


@functools.cache
def _probe(tool: str, feature: str) -> str | None:
    for attempt in range(RETRIES):
        with tempfile.TemporaryDirectory(prefix="qcow2-harness-probe-") as scratch:
            proc = subprocess.run(
                [tool, "create", "-q", "-f", "qcow2", *FEATURE_PROBES[feature],
                 os.path.join(scratch, "probe.qcow2"), "1M"],
                capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0:
            return None
        if not any(t in proc.stderr for t in TRANSIENT_ERRORS):
            break
        _back_off(attempt)
    said = (proc.stderr or proc.stdout).strip().splitlines()
    return f"{tool} refuses to create a {feature} image: {said[-1] if said else 'no message'}"


def missing_feature(feature: str) -> str | None:
    """Why the default qemu-img cannot make images with `feature` (None: it can)."""
    if feature not in FEATURE_PROBES:
        raise ValueError(f"unknown QEMU feature {feature!r}; known: {', '.join(FEATURE_PROBES)}")
    return _probe(qemu.require_tool("qemu-img"), feature)


def recipe_unavailable(recipe: Recipe | str) -> str | None:
    """Why the default qemu-img cannot make this corpus recipe (None: it can, or no recipe
    has that name)."""
    if isinstance(recipe, str):
        found = [r for r in (*qemu_recipes(), *seed_recipes()) if r.name == recipe]
        if not found:
            return None
        recipe = found[0]
    return next(filter(None, map(missing_feature, recipe.needs)), None)


SKIPPED_FILE = "skipped.json"


def skipped_recipes(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The recipes build_corpus left out of `directory`, with the reason, by name."""
    path = os.path.join(os.fspath(directory), SKIPPED_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as stream:
        skipped: dict[str, str] = json.load(stream)
    return skipped


# Seed images for fuzzing: the same feature matrix at kilobyte scale (512-byte clusters
# where QEMU allows it, a 256 KiB disk), so that a fuzzer mutates metadata, not data.
SEED_SIZE = "256K"
SEED_WRITES = [
    _write("0x11", "0", "2k"),
    _write("0x22", "128k", "1k"),
    ("qemu-io", "-c", "write -q -z 192k 1k", "{img}"),
]


def seed_recipes() -> list[Recipe]:
    """Small QEMU-made images for the committed fuzzing seed corpus (corpus/seeds)."""
    def seed(name: str, description: str, options: str,
             steps: list[tuple[str, ...]] | None = None, **kw: Any) -> Recipe:
        return Recipe(f"qemu-{name}", description, options,
                      list(SEED_WRITES if steps is None else steps),
                      virtual_size=kw.pop("virtual_size", SEED_SIZE), **kw)

    recipes = [
        seed("v2", "compat=0.10, 512-byte clusters", "compat=0.10,cluster_size=512"),
        seed("v3", "compat=1.1, 512-byte clusters", "compat=1.1,cluster_size=512"),
        seed("v3-empty", "compat=1.1, nothing written", "cluster_size=512", []),
        seed("cluster-4k", "4 KiB clusters", "cluster_size=4k"),
        seed("lazy-refcounts", "lazy_refcounts=on", "cluster_size=512,lazy_refcounts=on"),
        seed("preallocation-metadata", "preallocation=metadata, 16 KiB disk",
             "cluster_size=512,preallocation=metadata", [], virtual_size="16K"),
        seed("extended-l2", "extended_l2=on (16 KiB clusters, the minimum)",
             "extended_l2=on,cluster_size=16k",
             [_write("0x33", "0", "1k"), _write("0x44", "5k", "2k"),
              ("qemu-io", "-c", "write -q -z 8k 1k", "{img}")], virtual_size="64K"),
        seed("compressed-zlib", "compressed clusters (zlib), 4 KiB clusters",
             "cluster_size=4k,compression_type=zlib",
             [("qemu-io", "-c", "write -c -q -P 0x55 0 4k", "{img}"),
              ("qemu-io", "-c", "write -c -q -P 0x66 8k 4k", "{img}")]),
        seed("compressed-zstd", "compressed clusters (zstd), 4 KiB clusters",
             "cluster_size=4k,compression_type=zstd",
             [("qemu-io", "-c", "write -c -q -P 0x55 0 4k", "{img}")], needs=("zstd",)),
        seed("snapshot", "an internal snapshot, then a write", "cluster_size=512",
             [_write("0xaa", "0", "2k"), ("qemu-img", "snapshot", "-c", "snap0", "{img}"),
              _write("0xbb", "0", "512")]),
        seed("bitmap", "a persistent dirty bitmap", "cluster_size=512",
             [_write("0xcc", "0", "2k"), ("qemu-img", "bitmap", "--add", "{img}", "bitmap0")]),
        seed("data-file", "external data file", "cluster_size=512,data_file=qemu-data-file.data",
             [_write("0x88", "0", "2k")]),
        seed("backing-overlay", "overlay naming a backing file and its format", "",
             [("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b",
               "qemu-v3.qcow2", "-F", "qcow2", "{img}"), _write("0x02", "4k", "1k")],
             create=False),
    ]
    recipes += [seed(f"refcount-bits-{bits}", f"refcount_bits={bits}",
                     f"cluster_size=512,refcount_bits={bits}") for bits in (1, 2, 4, 8, 32, 64)]
    return recipes


# QEMU's LUKS PBKDF benchmark sometimes fails under coarse CPU accounting (seen in
# sandboxes, and in 4-6 of 20 runs on a machine busy with two mutation campaigns); the same
# command then succeeds on a retry. Failures come in bursts, so the retries back off.
TRANSIENT_ERRORS = ("Unable to get accurate CPU usage",)
RETRIES = 10


def _back_off(attempt: int) -> None:
    time.sleep(0.1 * (attempt + 1))


def _run_step(step: tuple[str, ...], directory: str) -> None:
    tool, *args = step
    for attempt in range(RETRIES):
        try:
            # Relative backing and data file names resolve against the image's directory.
            qemu.run(tool, *args, cwd=directory)
            return
        except WriterError as error:
            if attempt + 1 == RETRIES or not any(t in error.message for t in TRANSIENT_ERRORS):
                raise
            _back_off(attempt)


MiB = 1 << 20


def reference_zoned_images(directory: str) -> Iterable[dict[str, Any]]:
    """Zoned images from the reference writer (QEMU 7.2 has no zoned writer)."""
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    def config(**overrides: int) -> ZoneConfig:
        fields = dict(size=16 * MiB, zone_size=1 * MiB, zone_capacity=1 * MiB,
                      conventional_zones=0, max_open_zones=4, max_active_zones=8,
                      max_append_bytes=64 * 1024)
        fields.update(overrides)
        return ZoneConfig(**fields)

    def partly_written(writer: ReferenceWriter) -> None:
        writer.write(0, b"\x21" * 8192)
        writer.append(3, b"\x22" * 4096)

    def full(writer: ReferenceWriter) -> None:
        assert writer.config is not None
        for zone in range(writer.config.nr_zones):
            writer.finish_zone(zone)

    def conventional(writer: ReferenceWriter) -> None:
        writer.write(0, b"\x31" * 65536)  # conventional zone 0, anywhere
        writer.write(2 * MiB, b"\x32" * 4096)  # first sequential zone

    def capacity(writer: ReferenceWriter) -> None:
        writer.write(0, b"\x41" * (768 * 1024))  # fills zone 0 to its capacity

    recipes: list[tuple[str, str, ZoneConfig, Callable[[ReferenceWriter], None] | None]] = [
        ("reference-zoned-empty", "zoned, every zone empty", config(), None),
        ("reference-zoned-partly-written", "zoned, two zones written", config(),
         partly_written),
        ("reference-zoned-full", "zoned, every zone finished", config(max_open_zones=0,
                                                                     max_active_zones=0),
         full),
        ("reference-zoned-capacity", "zoned, capacity 768 KiB of 1 MiB zones",
         config(zone_capacity=768 * 1024), capacity),
        ("reference-zoned-conventional", "zoned, 2 conventional zones first",
         config(conventional_zones=2), conventional),
        ("reference-zoned-no-limits", "zoned, no open/active limits",
         config(max_open_zones=0, max_active_zones=0, max_append_bytes=0), partly_written),
    ]
    for name, description, zone_config, history in recipes:
        path = os.path.join(directory, name + ".qcow2")
        with ReferenceWriter.create(path, zone_config.size, zoned=zone_config,
                                    fsync=False) as writer:
            if history is not None:
                history(writer)
        yield {
            "name": name,
            "file": os.path.basename(path),
            "description": description,
            "made_by": "qcow2-harness reference writer",
            "commands": [f"ReferenceWriter.create(size={zone_config.size}, zoned={zone_config})"],
            "size": os.path.getsize(path),
            "conformant": True,
        }


ExtraBuilder = Callable[[str], Iterable[dict[str, Any]]]
EXTRA_BUILDERS: list[ExtraBuilder] = [reference_zoned_images]


# progress(images built, images to build or None when not known yet)
BuildProgress = Callable[[int, "int | None"], None]


def build_corpus(directory: str, only: Iterable[str] | None = None,
                 progress: BuildProgress | None = None) -> list[dict[str, Any]]:
    """Build every recipe into `directory`; returns (and writes) the manifest."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    wanted = list(only or [])
    manifest: list[dict[str, Any]] = []
    version = str(qemu.qemu_version())
    recipes = [r for r in qemu_recipes() if not wanted or any(w in r.name for w in wanted)]
    skipped: dict[str, str] = {}
    for recipe in recipes:
        reason = recipe_unavailable(recipe)
        if reason is not None:
            skipped[recipe.name] = reason
    recipes = [r for r in recipes if r.name not in skipped]
    for recipe in recipes:
        if progress is not None:
            progress(len(manifest), len(recipes))
        img = os.path.join(directory, recipe.name + ".qcow2")
        for leftover in (img, img.replace(".qcow2", ".data")):
            if os.path.exists(leftover):
                os.unlink(leftover)
        commands = recipe.commands(directory)
        for step in commands:
            _run_step(step, directory)
        manifest.append({
            "name": recipe.name,
            "file": os.path.basename(img),
            "description": recipe.description,
            "made_by": version,
            "commands": [" ".join(c).replace(directory + "/", "") for c in commands],
            "size": os.path.getsize(img),
            "conformant": True,
        })
    for builder in EXTRA_BUILDERS:
        for entry in builder(directory):
            if not wanted or any(w in entry["name"] for w in wanted):
                manifest.append(entry)
            if progress is not None:
                progress(len(manifest), None)
    for tmp in os.listdir(directory):
        if tmp.endswith(".tmp"):
            os.unlink(os.path.join(directory, tmp))
    with open(os.path.join(directory, "manifest.json"), "w") as out:
        json.dump(manifest, out, indent=2)
    with open(os.path.join(directory, SKIPPED_FILE), "w") as out:
        json.dump(skipped, out, indent=2)
    return manifest


def default_corpus_dir() -> str:
    return os.environ.get("QCOW2_HARNESS_CORPUS") or os.path.join(
        tempfile.gettempdir(), "qcow2-harness-corpus"
    )
