"""Zoned seed images made by the zoned series itself, for fuzzing it as a reader.

    build_series_seeds(DIR, build="zoned") -> the manifest (also DIR/manifest.json)

The committed zoned seeds (corpus/seeds/reference-zoned-*) are the reference writer's
(a big-endian table, WP-1). These are what the series writes (a host-endian table,
WP-2), through its own qemu-img create options and qemu-io zone commands, so that
mutants start from images the series opens without complaint. Each entry records
the exact commands; a second call with every image present does nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from qcow2harness import qemu
from qcow2harness.errors import HarnessError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SeriesSeed:
    name: str
    description: str
    size: str
    options: str
    qemu_io: tuple[str, ...]


ZONED_OPTIONS = ("zone.mode=host-managed,zone.size={size},zone.capacity={capacity},"
                 "zone.conventional_zones={conventional},zone.max_open_zones={open},"
                 "zone.max_active_zones={active},zone.max_append_bytes={append}")

SERIES_SEEDS = (
    SeriesSeed("series-zoned-8m",
               "1 MiB zones, zone 0 conventional, open/active limits 2/3, 64 KiB appends; "
               "a write in zone 1, an append in zone 2 (the issue's image)",
               "8M", ZONED_OPTIONS.format(size="1M", capacity="1M", conventional=1, open=2,
                                          active=3, append=65536),
               ("write -P 0xaa 1M 64k", "zap -p 2M 4096")),
    SeriesSeed("series-zoned-512b-clusters",
               "512-byte clusters, 4 KiB zones, zone 0 conventional, limits 2/3, 2 KiB "
               "appends; written conventional and sequential zones, an append, a FULL zone",
               "32k", "cluster_size=512," + ZONED_OPTIONS.format(
                   size="4k", capacity="4k", conventional=1, open=2, active=3, append=2048),
               ("write -P 0x11 0 1k", "write -P 0x22 4k 1k", "zap -p 8k 512", "zf 12k 4k")),
    SeriesSeed("series-zoned-capacity",
               "4 KiB clusters, 64 KiB zones of 48 KiB capacity, no conventional zone, no "
               "limits; an implicitly open, a FULL and an explicitly opened then closed zone",
               "512k", "cluster_size=4k," + ZONED_OPTIONS.format(
                   size="64k", capacity="48k", conventional=0, open=0, active=0,
                   append=4096),
               ("write -P 0x33 0 8k", "zap -p 64k 4k", "zf 128k 64k", "zo 192k 64k",
                "write -P 0x44 192k 512", "zc 192k 64k")),
)


def seed_commands(seed: SeriesSeed, path: str, build: str) -> list[list[str]]:
    """The commands that make one seed (tool paths of the build)."""
    img, io = qemu.require_tool("qemu-img", build), qemu.require_tool("qemu-io", build)
    commands = [[img, "create", "-q", "-f", "qcow2", "-o", seed.options, path, seed.size]]
    if seed.qemu_io:
        script = [arg for line in seed.qemu_io for arg in ("-c", line)]
        commands.append([io, "-f", "qcow2", *script, path])
    return commands


def build_series_seeds(directory: str, build: str = "zoned") -> list[dict[str, object]]:
    """Make the series seeds in `directory` (kept when all are there already)."""
    reason = qemu.build_unavailable(build)
    if reason is not None:
        raise HarnessError(reason)
    os.makedirs(directory, exist_ok=True)
    manifest_path = os.path.join(directory, MANIFEST)
    paths = [os.path.join(directory, seed.name + ".qcow2") for seed in SERIES_SEEDS]
    if os.path.exists(manifest_path) and all(os.path.exists(p) for p in paths):
        with open(manifest_path) as f:
            kept: list[dict[str, object]] = json.load(f)
        return kept
    manifest: list[dict[str, object]] = []
    for seed, path in zip(SERIES_SEEDS, paths, strict=True):
        if os.path.exists(path):
            os.unlink(path)
        commands = seed_commands(seed, path, build)
        for argv in commands:
            qemu.run(os.path.basename(argv[0]), *argv[1:], build=build)
        manifest.append({"file": os.path.basename(path), "description": seed.description,
                         "build": build, "version": str(qemu.qemu_version("qemu-img", build)),
                         "commands": [[os.path.basename(a) if i == 0 or a == path else a
                                       for i, a in enumerate(argv)] for argv in commands]})
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


__all__ = ["SERIES_SEEDS", "SeriesSeed", "build_series_seeds", "seed_commands"]
