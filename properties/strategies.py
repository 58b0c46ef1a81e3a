"""Hypothesis strategies for qcow2 images, reusable from other projects' test suites.

    from hypothesis import given
    from qcow2harness.properties.corruptions import base_image
    from qcow2harness.properties.strategies import targeted_corruptions

    @given(targeted_corruptions())
    def test_my_reader_rejects(drawn):
        corruption, params = drawn
        data = bytearray(base_image(corruption.base, WORKDIR))
        corruption.apply(data, **params)
        ...  # my reader must refuse `data`, or report corruption.clause

Each drawn value is a `Corruption` (which knows the clause it breaks) and a
parameter dict for it: one value per free parameter, drawn from the choices the
corruption declares.

The other strategies:

- `zone_configs()`: zone configurations every writer must accept (the MUST rules and
  ZONE-14, ZONE-17 hold), as ZoneConfig;
- `invalid_zone_geometries()`: create fields with one MUST rule on the geometry broken;
- `zone_operations(config, legal_only=...)`: `qcow2-harness model` trace ops for a config,
  mostly at the write pointer, or deliberately off the rules;
- `image_options()`: qemu-img create options across cluster sizes, refcount widths,
  compat, extended L2 and lazy refcounts;
- `reference_images(workdir)` and `qemu_images(workdir)`: paths of valid images built by
  the reference writer (zoned or not) or by the real qemu-img (snapshots, backing chains).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import Any

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError as exc:  # an optional dependency of the package
    raise ImportError("qcow2harness.properties.strategies needs Hypothesis: "
                      "pip install 'qcow2-harness[properties]'") from exc
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig

from qcow2harness import qemu

from .corruptions import CORRUPTIONS, Corruption

__all__ = [
    "corruption_params",
    "image_options",
    "invalid_zone_geometries",
    "qemu_images",
    "reference_images",
    "targeted_corruptions",
    "zone_configs",
    "zone_operations",
]

SECTOR = 512


def corruption_params(corruption: Corruption) -> st.SearchStrategy[dict[str, Any]]:
    """Parameter dicts for one corruption: each free parameter sampled from its choices."""
    return st.fixed_dictionaries(
        {name: st.sampled_from(tuple(values)) for name, values in corruption.params.items()}
    )


def targeted_corruptions(
    *, clauses: Iterable[str] | None = None, bases: Iterable[str] | None = None,
) -> st.SearchStrategy[tuple[Corruption, dict[str, Any]]]:
    """(corruption, params) pairs, optionally limited to some clauses or base image kinds.

    Shrinks towards the first corruption in spec order and each parameter's default.
    """
    wanted_clauses = None if clauses is None else set(clauses)
    wanted_bases = None if bases is None else set(bases)
    chosen = [
        c for c in CORRUPTIONS
        if (wanted_clauses is None or c.clause in wanted_clauses)
        and (wanted_bases is None or c.base in wanted_bases)
    ]
    if not chosen:
        raise ValueError(
            f"no corruption matches clauses={sorted(wanted_clauses or [])} "
            f"bases={sorted(wanted_bases or [])}"
        )
    return st.sampled_from(chosen).flatmap(
        lambda c: corruption_params(c).map(lambda params: (c, params))
    )


@st.composite
def zone_configs(draw: st.DrawFn, *, max_zones: int = 10) -> ZoneConfig:
    """Zone configurations every writer must accept: the MUST rules (ZONE-6..ZONE-16)
    and the SHOULD rules a writer may enforce (ZONE-14, ZONE-17) all hold."""
    zone_size = draw(st.sampled_from([4096, 8192, 16384, 65536]))
    # ZONE-17 even without append: the capacity exceeds one sector.
    capacity = draw(st.integers(2, zone_size // SECTOR)) * SECTOR
    nr_zones = draw(st.integers(2, max_zones))
    conventional = draw(st.integers(0, min(2, nr_zones - 1)))
    sequential = nr_zones - conventional
    max_active = draw(st.integers(0, sequential))
    max_open = draw(st.integers(0, max_active if max_active else sequential))
    # ZONE-16 and the stricter ZONE-17: max_append_bytes + 512 < zone_capacity.
    max_append = draw(st.integers(0, max(0, capacity - 2 * SECTOR) // SECTOR)) * SECTOR
    config = ZoneConfig(size=nr_zones * zone_size, zone_size=zone_size,
                        zone_capacity=capacity, conventional_zones=conventional,
                        max_open_zones=max_open, max_active_zones=max_active,
                        max_append_bytes=max_append)
    assert not config.should_problems(), config  # drawn inside the rules, by construction
    return config


# One field of a valid configuration, pushed past a MUST rule (reference/zones.py
# config_problems names the clause; these only choose values likely to break one).
GEOMETRY_BREAKS: dict[str, Any] = {
    "zone_size": lambda c: st.sampled_from([c.zone_size + SECTOR, 3 * c.zone_size // 2, 256]),
    "zone_capacity": lambda c: st.sampled_from([0, c.zone_size + SECTOR,
                                                c.zone_capacity - 1]),
    "conventional_zones": lambda c: st.sampled_from([c.nr_zones, c.nr_zones + 1]),
    "max_open_zones": lambda c: st.sampled_from([c.sequential_zones + 1,
                                                 c.max_active_zones + 1]),
    "max_append_bytes": lambda c: st.sampled_from([c.zone_capacity, c.max_append_bytes + 1]),
}


@st.composite
def invalid_zone_geometries(draw: st.DrawFn, *, max_zones: int = 10) -> dict[str, int]:
    """A valid configuration with one field changed so that a MUST rule on the geometry
    (ZONE-6, -7, -11..-13, -16) breaks: the fields as a writer's create options take
    them. reference.zones.config_problems() names what breaks."""
    from qcow2harness.reference.zones import config_problems

    config = draw(zone_configs(max_zones=max_zones))
    field_name = draw(st.sampled_from(sorted(GEOMETRY_BREAKS)))
    fields = {"size": config.size, "zone_size": config.zone_size,
              "zone_capacity": config.zone_capacity,
              "conventional_zones": config.conventional_zones,
              "max_open_zones": config.max_open_zones,
              "max_active_zones": config.max_active_zones,
              "max_append_bytes": config.max_append_bytes}
    fields[field_name] = draw(GEOMETRY_BREAKS[field_name](config))
    assume(config_problems(**fields))
    return fields


def zone_operations(config: ZoneConfig, *, legal_only: bool = False,
                    ) -> st.SearchStrategy[dict[str, Any]]:
    """One op of the model trace protocol for `config`.

    With legal_only, writes start at a zone start and are whole blocks; otherwise
    offsets, lengths and zone numbers may break the rules (the model must refuse them).
    """
    zones = st.integers(0, config.nr_zones - 1)
    if not legal_only:
        zones = st.one_of(zones, st.sampled_from([-1, config.nr_zones]))
    blocks = st.integers(1, max(1, config.zone_capacity // SECTOR))
    lengths = blocks.map(lambda n: n * SECTOR)
    if not legal_only:
        lengths = st.one_of(lengths, st.integers(1, config.zone_size + SECTOR))
    offsets = zones.map(lambda z: z * config.zone_size)
    if not legal_only:
        offsets = st.one_of(offsets, st.integers(-SECTOR, config.size + SECTOR))
    return st.one_of(
        st.builds(lambda o, n: {"op": "write", "offset": o, "length": n}, offsets, lengths),
        st.builds(lambda z, n: {"op": "append", "zone": z, "length": n}, zones, lengths),
        st.builds(lambda op, z: {"op": op, "zone": z},
                  st.sampled_from(["open", "close", "finish", "reset"]), zones),
        st.sampled_from([{"op": "reset_all"}, {"op": "flush"}, {"op": "reopen"},
                         {"op": "report"}]),
    )


def image_options() -> st.SearchStrategy[dict[str, str]]:
    """qemu-img create -o options for a valid qcow2 image."""
    return st.fixed_dictionaries({
        "cluster_size": st.sampled_from(["512", "4096", "65536"]),
        "refcount_bits": st.sampled_from(["1", "4", "16", "64"]),
        "compat": st.sampled_from(["1.1", "1.1", "0.10"]),
        "lazy_refcounts": st.sampled_from(["off", "on"]),
        "extended_l2": st.sampled_from(["off", "on"]),
    }).map(_consistent_options)


def _consistent_options(options: dict[str, str]) -> dict[str, str]:
    """Drop combinations qemu-img refuses (v2 has 16-bit refcounts and no features)."""
    fixed = dict(options)
    if fixed["compat"] == "0.10":
        fixed.update(refcount_bits="16", lazy_refcounts="off", extended_l2="off")
    if int(fixed["cluster_size"]) < 16384:
        fixed["extended_l2"] = "off"
    return fixed


_counter = itertools.count()


def reference_images(workdir: str, *, zoned: bool | None = None) -> st.SearchStrategy[str]:
    """Paths of images written by the reference writer: a drawn config and some writes."""
    @st.composite
    def build(draw: st.DrawFn) -> str:
        is_zoned = draw(st.booleans()) if zoned is None else zoned
        cluster_size = draw(st.sampled_from([512, 4096, 65536]))
        path = os.path.join(workdir, f"reference-{next(_counter)}.qcow2")
        if is_zoned:
            config = draw(zone_configs())
            with ReferenceWriter.create(path, config.size, cluster_size=cluster_size,
                                        zoned=config, fsync=False) as writer:
                for op in draw(st.lists(zone_operations(config, legal_only=True),
                                        max_size=8)):
                    _apply(writer, op)
        else:
            size = draw(st.integers(1, 64)) * 65536
            with ReferenceWriter.create(path, size, cluster_size=cluster_size,
                                        fsync=False) as writer:
                for _ in range(draw(st.integers(0, 6))):
                    offset = draw(st.integers(0, size // SECTOR - 1)) * SECTOR
                    length = min(draw(st.integers(1, 64)) * SECTOR, size - offset)
                    writer.write(offset, bytes([draw(st.integers(1, 255))]) * length)
        return path
    return build()


def _apply(writer: ReferenceWriter, op: dict[str, Any]) -> None:
    if op["op"] != "report":  # a query, not a change to the image
        writer.apply(op)


def qemu_images(workdir: str) -> st.SearchStrategy[str]:
    """Paths of images made by the real qemu-img and qemu-io: options, writes, and
    optionally an internal snapshot or a backing file."""
    @st.composite
    def build(draw: st.DrawFn) -> str:
        options = draw(image_options())
        n = next(_counter)
        path = os.path.join(workdir, f"qemu-{n}.qcow2")
        create = ["create", "-q", "-f", "qcow2", "-o",
                  ",".join(f"{k}={v}" for k, v in options.items())]
        if draw(st.booleans()):
            base = os.path.join(workdir, f"qemu-{n}-base.qcow2")
            qemu.run("qemu-img", "create", "-q", "-f", "qcow2", base, "4M")
            qemu.run("qemu-io", "-c", "write -q -P 0x11 0 256k", base)
            create += ["-b", base, "-F", "qcow2"]
        qemu.run("qemu-img", *create, path, "4M")
        writes = draw(st.integers(0, 4))
        for _ in range(writes):
            offset = draw(st.integers(0, 8191)) * SECTOR
            length = min(draw(st.integers(1, 256)) * SECTOR, (4 << 20) - offset)
            qemu.run("qemu-io", "-c", f"write -q -P {draw(st.integers(1, 255))} "
                     f"{offset} {length}", path)
        # QEMU 7.2 cannot snapshot a refcount_bits=1 image holding data (README Findings 5).
        snapshot_fails = options.get("refcount_bits") == "1" and writes > 0
        if not snapshot_fails and draw(st.booleans()):
            qemu.run("qemu-img", "snapshot", "-c", "snap", path)
        return path
    return build()
