"""Small helpers the bash iotests call through common.rc (not a test itself).

    tools.py zoned-image IMG [--size 64M] [--zone-size 4M] ... [OP ...]
        A zoned image from the reference writer (reference/writer.py), then the
        operations OP in order: write:OFFSET:LENGTH[:BYTE] append:ZONE:LENGTH
        open:Z close:Z finish:Z reset:Z reset_all flush. Prints one line about
        the image and one line per refused operation.

    tools.py model-session [--strict]
        Feeds stdin to `qcow2-harness model`, echoing "# comments" and blank lines,
        and prints each request ("> ") followed by its answer ("< ").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SUFFIXES = {"k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def size(text: str) -> int:
    """512, 0x200, 64k, 4M, 1G."""
    if text and text[-1] in SUFFIXES:
        return int(text[:-1], 0) * SUFFIXES[text[-1]]
    return int(text, 0)


def human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def zoned_image(argv: list[str]) -> int:
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    from qcow2harness.errors import HarnessError

    p = argparse.ArgumentParser(prog="tools.py zoned-image")
    p.add_argument("image")
    p.add_argument("--size", type=size, default=64 << 20)
    p.add_argument("--zone-size", type=size, default=4 << 20)
    p.add_argument("--capacity", type=size, help="zone capacity (default: zone size)")
    p.add_argument("--conventional", type=int, default=0)
    p.add_argument("--max-open", type=int, default=0)
    p.add_argument("--max-active", type=int, default=0)
    p.add_argument("--max-append", type=size, default=0)
    p.add_argument("--cluster-size", type=size, default=64 << 10)
    p.add_argument("ops", nargs="*")
    a = p.parse_intermixed_args(argv)
    try:
        config = ZoneConfig(
            size=a.size, zone_size=a.zone_size, zone_capacity=a.capacity or a.zone_size,
            conventional_zones=a.conventional, max_open_zones=a.max_open,
            max_active_zones=a.max_active, max_append_bytes=a.max_append,
        )
        writer = ReferenceWriter.create(a.image, a.size, cluster_size=a.cluster_size,
                                        zoned=config)
    except HarnessError as error:
        print(f"zoned-image: {error.one_line()}")
        return 1
    print(f"Zoned image '{a.image}': {human(a.size)}, {config.nr_zones} zones of "
          f"{human(a.zone_size)} (capacity {human(config.zone_capacity)}), "
          f"{a.conventional} conventional")
    with writer:
        for op in a.ops:
            name, *args = op.split(":")
            if name == "write":
                offset, length = size(args[0]), size(args[1])
                byte = int(args[2], 0) if len(args) > 2 else 0x5A
                result = writer.write(offset, bytes([byte]) * length)
            elif name == "append":
                result = writer.append(int(args[0]), b"\xa5" * size(args[1]))
            elif name in ("open", "close", "finish", "reset"):
                result = getattr(writer, f"{name}_zone")(int(args[0]))
            elif name in ("reset_all", "flush"):
                result = getattr(writer, name)()
            else:
                print(f"zoned-image: unknown operation {op!r}")
                return 1
            if not result.ok:
                print(f"{op}: refused ({result.error})")
    return 0


def print_answer(answer: str) -> None:
    """One answer line; a "zones" list is printed one zone per line, still JSON."""
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("zones"), list):
        print(f"< {answer}")
        return
    zones = parsed.pop("zones")
    rest = json.dumps(parsed)[1:-1]
    print(f"< {{{rest}, \"zones\": [")
    for i, zone in enumerate(zones):
        print(f"<     {json.dumps(zone)}{',' if i + 1 < len(zones) else ''}")
    print("< ]}")


def model_session(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tools.py model-session")
    p.add_argument("--strict", action="store_true")
    a = p.parse_args(argv)
    script = sys.stdin.read().splitlines()
    requests = [line for line in script if line.strip() and not line.lstrip().startswith("#")]
    harness = os.environ.get("QCOW2_HARNESS_PROG", "qcow2-harness")
    proc = subprocess.run(
        [harness, "model", *(["--strict"] if a.strict else [])],
        input="".join(r + "\n" for r in requests),
        capture_output=True, text=True, check=False,
    )
    answers = iter(proc.stdout.splitlines())
    for line in script:
        if not line.strip() or line.lstrip().startswith("#"):
            print(line)
            continue
        print(f"> {line}")
        print_answer(next(answers, "(no answer)"))
    for extra in answers:
        print(f"< {extra}  (unexpected extra answer)")
    if proc.stderr:
        print(proc.stderr, end="")
    if proc.returncode:
        print(f"qcow2-harness model: exit {proc.returncode}")
    return 0


def main() -> int:
    commands = {"zoned-image": zoned_image, "model-session": model_session}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: tools.py {{{'|'.join(commands)}}} ...", file=sys.stderr)
        return 1
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
