"""`qcow2-harness corpus build DIR`: the seed corpus."""

from __future__ import annotations

import argparse

from qcow2harness.exitcodes import EXIT_OK

NAME = "corpus"
HELP = "build the seed corpus (real qemu-img feature matrix + reference writer zoned images)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build"])
    parser.add_argument("dir", help="output directory")
    parser.add_argument("--only", action="append", help="build only images whose name has this")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.corpus import build_corpus

    manifest = build_corpus(args.dir, only=args.only)
    for entry in manifest:
        print(f"{entry['name']:<40} {entry['size']:>9} bytes  {entry['description']}")
    makers = sorted({entry["made_by"] for entry in manifest})
    print(f"{len(manifest)} images in {args.dir}, made by: {'; '.join(makers)}")
    return EXIT_OK
