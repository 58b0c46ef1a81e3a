"""The zoned series as QEMU speaks it: the create options and qemu-io's zone commands.

Shared by every adapter that drives a zoned QEMU (the zoned tools suite, the crash
engine, the back-compat and differential campaigns); none of it needs Hypothesis.
The options and the command syntax are the series' (shared/zoned-series/README.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from qcow2harness import qemu
from qcow2harness.reference.zones import ZoneConfig, ZoneState

SECTOR = 512
# qemu-io's zap takes no pattern: every append writes this byte.
ZAP_FILL = 0xCD

# qemu-io `zrp` prints each zone's condition as its ZBC code, and sizes in sectors.
ZBC_CONDITIONS = {0x0: ZoneState.NOT_WRITE_POINTER, 0x1: ZoneState.EMPTY,
                  0x2: ZoneState.IMPLICIT_OPEN, 0x3: ZoneState.EXPLICIT_OPEN,
                  0x4: ZoneState.CLOSED, 0xD: ZoneState.READ_ONLY, 0xE: ZoneState.FULL,
                  0xF: ZoneState.OFFLINE}
ZONE_REPORT_LINE = re.compile(r"start: 0x([0-9a-f]+), len 0x([0-9a-f]+), cap 0x([0-9a-f]+),"
                              r"\s*wptr 0x([0-9a-f]+), zcond:(\d+)")
APPEND_SECTOR = re.compile(r"append sector is 0x([0-9a-f]+)")  # zap -p
ZONE_COMMANDS = {"open": "zo", "close": "zc", "finish": "zf", "reset": "zrs"}


def parse_zone_report(text: str) -> list[tuple[ZoneState, int]]:
    """(state, wp in bytes) of each zone in qemu-io `zrp` output."""
    return [(ZBC_CONDITIONS.get(int(m.group(5)), ZoneState.OFFLINE), int(m.group(4), 16) * SECTOR)
            for m in ZONE_REPORT_LINE.finditer(text)]


def zone_create_options(geometry: Mapping[str, int] | ZoneConfig, cluster_size: int) -> str:
    """qemu-img create options of the v10 series for a zoned image (ZoneConfig's fields)."""
    fields = dataclasses.asdict(geometry) if isinstance(geometry, ZoneConfig) else geometry
    return ",".join([
        f"cluster_size={cluster_size}", "zone.mode=host-managed",
        f"zone.size={fields['zone_size']}", f"zone.capacity={fields['zone_capacity']}",
        f"zone.conventional_zones={fields['conventional_zones']}",
        f"zone.max_open_zones={fields['max_open_zones']}",
        f"zone.max_active_zones={fields['max_active_zones']}",
        f"zone.max_append_bytes={fields['max_append_bytes']}",
    ])


def zoned_qemu_build() -> str | None:
    """The QEMU build the zoned suites drive: the series build (qemu.BUILDS "zoned") when
    QCOW2_HARNESS_ZONED_QEMU names one, else the default QEMU (None)."""
    return "zoned" if qemu.build_unavailable("zoned") is None else None
