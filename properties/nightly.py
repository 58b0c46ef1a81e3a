"""The nightly property campaign: the stateful suites, again and again, for a set time.

    python -m qcow2harness.properties.nightly --minutes 30

Alternates the model-vs-real-QEMU, QEMU-maintenance-tools and model-vs-reference-writer
suites under the `nightly` settings (random seeds, example database in data/hypothesis)
until the time is up. Exit 0 when no run failed, 2 on the first failure (its shrunk
sequence printed).
"""

from __future__ import annotations

import argparse
import sys
import time

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from qcow2harness import qemu

from .stateful import QemuGuestMachine, zoned_writer_machine
from .tools import QemuToolsMachine

NIGHTLY = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    database=DirectoryBasedExampleDatabase("data/hypothesis"),
    suppress_health_check=list(HealthCheck),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args(argv)
    suites: list[tuple[str, type[RuleBasedStateMachine]]] = [
        ("reference writer", zoned_writer_machine())]
    if qemu.find_tool("qemu-img") and qemu.find_tool("qemu-io"):
        suites.append(("real QEMU", QemuGuestMachine))
        suites.append(("QEMU maintenance tools", QemuToolsMachine))
    else:
        print("nightly: not run against QEMU: qemu-img/qemu-io not found", flush=True)
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < args.minutes * 60:
        for name, machine in suites:
            round_started = time.monotonic()
            try:
                run_state_machine_as_test(machine, settings=NIGHTLY)
            except BaseException as error:  # noqa: BLE001 - report any failure, then stop
                print(f"nightly: FAILED against {name} after {rounds} rounds:\n{error}",
                      flush=True)
                return 2
            print(f"nightly: {name}: {NIGHTLY.max_examples} examples of up to "
                  f"{NIGHTLY.stateful_step_count} steps passed in "
                  f"{time.monotonic() - round_started:.0f} s", flush=True)
        rounds += 1
    total = time.monotonic() - started
    print(f"nightly: {rounds} rounds over {len(suites)} suites in {total / 60:.1f} min, "
          "no failure", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
