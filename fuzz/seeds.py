"""The committed seed corpus (corpus/), built reproducibly by one command:

    qcow2-harness corpus build corpus --seeds

    corpus/seeds/   small conformant images: QEMU-made across its feature matrix
                    (qcow2harness.corpus.seed_recipes) and zoned ones from the reference
                    writer (empty, partly written, full, capacity < size, conventional
                    zones, no limits)
    corpus/broken/  labelled non-conformant images: one targeted corruption
                    (properties/corruptions.py) per clause, applied to a small seed;
                    kept only when `check` reports that clause
    corpus/manifest.json   every file, how it was made, and for broken ones "breaks"

Naming rule (tests/fuzz/test_corpus_naming.py): seeds are `qemu-<feature>.qcow2` or
`reference-zoned-<shape>.qcow2`; broken images are `<clause-lower>--<corruption>.qcow2`,
e.g. `l2-3--copied-flag-cleared.qcow2`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from qcow2harness import corpus

K = 1024
SEEDS = "seeds"
BROKEN = "broken"
NAME_RULE = re.compile(r"^(qemu-[a-z0-9.-]+|reference-zoned-[a-z0-9-]+)\.qcow2$")
BROKEN_RULE = re.compile(r"^([a-z][a-z0-9]*-\d+)--([a-z0-9-]+)\.qcow2$")

# Corruption base kinds (properties.corruptions.BASE_KINDS) -> the small seed standing in.
SMALL_BASES = {
    "qemu-default": "qemu-v3",
    "qemu-v2": "qemu-v2",
    "qemu-snapshot": "qemu-snapshot",
    "qemu-bitmap": "qemu-bitmap",
    "qemu-extended-l2": "qemu-extended-l2",
    "qemu-compressed-zstd": "qemu-compressed-zstd",
    "qemu-compressed-4k": "qemu-compressed-zlib",
    "qemu-data-file": "qemu-data-file",
    "qemu-backing-overlay": "qemu-backing-overlay",
    "reference-zoned": "reference-zoned-base",
}


def _zoned_seeds() -> list[tuple[str, str, dict[str, int], int, Callable[[Any], None] | None]]:
    """(name, description, config, cluster size, history) for small zoned images."""

    def config(**overrides: int) -> dict[str, int]:
        fields = dict(size=64 * K, zone_size=8 * K, zone_capacity=8 * K, conventional_zones=0,
                      max_open_zones=2, max_active_zones=3, max_append_bytes=2 * K)
        fields.update(overrides)
        return fields

    def partly_written(writer: Any) -> None:
        writer.write(0, b"\x21" * 1024)
        writer.append(3, b"\x22" * 512)

    def full(writer: Any) -> None:
        for zone in range(writer.config.nr_zones):
            writer.finish_zone(zone)

    def conventional(writer: Any) -> None:
        writer.write(0, b"\x31" * 2048)
        writer.write(16 * K, b"\x32" * 512)

    def capacity(writer: Any) -> None:
        writer.write(0, b"\x41" * (4 * K))

    def base(writer: Any) -> None:
        # The shape of properties.corruptions' zoned base, scaled down: zones 0-1
        # conventional, 2 CLOSED, 3 FULL, 4 CLOSED off a cluster boundary, 5-7 EMPTY.
        for offset, pattern, length in [(0, 0x11, 512), (9 * K, 0x12, 512), (16 * K, 0x22, K),
                                        (24 * K, 0x33, 4 * K), (32 * K, 0x44, K + 512)]:
            result = writer.write(offset, bytes([pattern]) * length)
            assert result.ok, result

    return [
        ("reference-zoned-empty", "zoned, every zone empty", config(), 512, None),
        ("reference-zoned-partly-written", "zoned, two zones written", config(), 512,
         partly_written),
        ("reference-zoned-full", "zoned, every zone finished",
         config(max_open_zones=0, max_active_zones=0), 512, full),
        ("reference-zoned-capacity", "zoned, capacity 4 KiB of 8 KiB zones",
         config(zone_capacity=4 * K), 512, capacity),
        ("reference-zoned-conventional", "zoned, 2 conventional zones first",
         config(conventional_zones=2), 512, conventional),
        ("reference-zoned-no-limits", "zoned, no open/active/append limits",
         config(max_open_zones=0, max_active_zones=0, max_append_bytes=0), 512, partly_written),
        ("reference-zoned-base", "zoned, every zone state (the base of zoned corruptions)",
         config(zone_capacity=4 * K, conventional_zones=2, max_append_bytes=K), 1024, base),
    ]


def build_zoned_seeds(directory: str) -> list[dict[str, Any]]:
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    entries = []
    for name, description, fields, cluster, history in _zoned_seeds():
        config = ZoneConfig(**fields)
        path = os.path.join(directory, name + ".qcow2")
        with ReferenceWriter.create(path, config.size, cluster_size=cluster, zoned=config,
                                    fsync=False) as writer:
            if history is not None:
                history(writer)
        entries.append({
            "name": name, "file": f"{SEEDS}/{name}.qcow2", "description": description,
            "made_by": "qcow2-harness reference writer",
            "commands": [f"ReferenceWriter.create(size={config.size}, cluster_size={cluster}, "
                         f"zoned={config})"],
            "size": os.path.getsize(path), "conformant": True,
        })
    return entries


def build_qemu_seeds(directory: str,
                     progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    from qcow2harness import qemu

    version = str(qemu.qemu_version())
    entries = []
    for recipe in corpus.seed_recipes():
        img = os.path.join(directory, recipe.name + ".qcow2")
        if os.path.exists(img):
            os.unlink(img)
        commands = recipe.commands(directory)
        for step in commands:
            corpus._run_step(step, directory)
        entries.append({
            "name": recipe.name, "file": f"{SEEDS}/{recipe.name}.qcow2",
            "description": recipe.description, "made_by": version,
            "commands": [" ".join(c).replace(directory + "/", "") for c in commands],
            "size": os.path.getsize(img), "conformant": True,
        })
        normalize_snapshot_dates(img)
        if progress is not None:
            progress(len(entries))
    for leftover in os.listdir(directory):
        if leftover.endswith((".data", ".tmp")):
            os.unlink(os.path.join(directory, leftover))
    return entries


def normalize_snapshot_dates(path: str) -> None:
    """Zero each snapshot's date (qemu-img stamps the wall clock), so rebuilding the corpus
    gives the same bytes. A date of 0 is as valid as any other."""
    from qcow2harness.properties.corruptions import SNAPSHOT_FIELDS, SNAPSHOT_FIXED

    with open(path, "r+b") as f:
        data = bytearray(f.read())
        count = int.from_bytes(data[60:64], "big")
        offset = int.from_bytes(data[64:72], "big")
        for _ in range(count):
            for name in ("date_sec", "date_nsec"):
                at, width = SNAPSHOT_FIELDS[name]
                data[offset + at:offset + at + width] = bytes(width)
            extra_at, extra_width = SNAPSHOT_FIELDS["len_extra_data"]
            extra = int.from_bytes(data[offset + extra_at:offset + extra_at + extra_width], "big")
            id_at, _ = SNAPSHOT_FIELDS["len_id_str"]
            name_at, _ = SNAPSHOT_FIELDS["len_name"]
            id_len = int.from_bytes(data[offset + id_at:offset + id_at + 2], "big")
            name_len = int.from_bytes(data[offset + name_at:offset + name_at + 2], "big")
            length = SNAPSHOT_FIXED + extra + id_len + name_len
            offset += length + (-length % 8)
        f.seek(0)
        f.write(data)


def build_broken(seeds_dir: str, directory: str, progress: Callable[[int], None] | None = None,
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """One corruption per clause on a small base; kept when check reports its clause.
    Returns the manifest entries and the clauses that got no image (with why)."""
    from qcow2harness.properties.corruptions import CORRUPTIONS

    from qcow2harness.checker import check_image
    from qcow2harness.errors import ParseError
    from qcow2harness.image import Image

    entries: list[dict[str, Any]] = []
    done: set[str] = set()
    missing: dict[str, str] = {}
    for corruption in CORRUPTIONS:
        if corruption.clause in done:
            continue
        seed = SMALL_BASES.get(corruption.base)
        if seed is None:
            missing.setdefault(corruption.clause, f"no small base for {corruption.base}")
            continue
        with open(os.path.join(seeds_dir, seed + ".qcow2"), "rb") as f:
            base = f.read()
        try:
            broken = corruption.broken(base)
            try:
                reported = check_image(Image.from_bytes(broken)).clauses()
            except ParseError as error:  # as check_path: the header itself is the finding
                reported = {error.clause or "HDR-1"}
        except Exception as error:  # noqa: BLE001 - a corruption that needs a bigger base
            missing.setdefault(corruption.clause, f"{corruption.name}: {error}"[:120])
            continue
        if corruption.clause not in reported:
            missing.setdefault(corruption.clause, f"{corruption.name}: not reported")
            continue
        name = f"{corruption.clause.lower()}--{corruption.name}"
        with open(os.path.join(directory, name + ".qcow2"), "wb") as out:
            out.write(broken)
        done.add(corruption.clause)
        missing.pop(corruption.clause, None)
        entries.append({
            "name": name, "file": f"{BROKEN}/{name}.qcow2", "description": corruption.description,
            "made_by": f"properties.corruptions {corruption.id} on {SEEDS}/{seed}.qcow2",
            "size": len(broken), "conformant": False, "breaks": corruption.clause,
        })
        if progress is not None:
            progress(len(entries))
    return entries, [f"{clause}: {why}" for clause, why in sorted(missing.items())]


def build_seed_corpus(directory: str, *, broken: bool = True,
                      progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Build corpus/seeds (and corpus/broken) plus manifest.json; returns the manifest.
    `progress(images built)` is called as they are."""
    directory = os.path.abspath(directory)
    seeds_dir = os.path.join(directory, SEEDS)
    os.makedirs(seeds_dir, exist_ok=True)
    images = build_qemu_seeds(seeds_dir, progress)
    if progress is not None:
        progress(len(images))
    images += build_zoned_seeds(seeds_dir)
    not_built: list[str] = []
    if broken:
        broken_dir = os.path.join(directory, BROKEN)
        os.makedirs(broken_dir, exist_ok=True)
        for stale in os.listdir(broken_dir):
            os.unlink(os.path.join(broken_dir, stale))
        made, not_built = build_broken(seeds_dir, broken_dir, progress=None if progress is None
                                       else lambda built: progress(len(images) + built))
        images += made
    manifest = {
        "built_by": "qcow2-harness corpus build DIR --seeds",
        "images": images,
        "clauses_without_broken_image": not_built,
    }
    with open(os.path.join(directory, "manifest.json"), "w") as out:
        json.dump(manifest, out, indent=1)
        out.write("\n")
    return manifest
