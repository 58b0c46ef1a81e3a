"""`qcow2-harness merge RESULT.json...`: one report from the shards of a campaign.

    qcow2-harness crash --workload allocation --shard 0/3 --json s0.json   # and 1/3, 2/3
    qcow2-harness merge s0.json s1.json s2.json --json merged.json

Exit 0 when the merged run found nothing, 2 when it found something (the unsharded
run's code), 1 when the results do not belong together, a shard is missing (unless
--allow-partial) or a file is not a result: each is read only if it is a regular file
of at most 64 MiB, and validated against its kind's schema (docs/schema/crash, fuzz,
properties, mutation.schema.json) before it is used; the message names the file and the
first field (a JSON pointer) that is wrong.
"""

from __future__ import annotations

import argparse

from qcow2harness.commands.output import write_json

NAME = "merge"
HELP = ("merge the --json results of crash/fuzz/nightly/mutation shards into one report "
        "(exit 0/2)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcow2harness.merge import MAX_RESULT_BYTES

    parser.add_argument("results", nargs="+", metavar="RESULT.json",
                        help="shard results (crash, fuzz, properties or mutation; one "
                        f"kind): regular files of at most {MAX_RESULT_BYTES // (1024 * 1024)} "
                        "MiB, each valid against docs/schema/KIND.schema.json")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="the merged report, on stdout or into FILE")
    parser.add_argument("--allow-partial", action="store_true",
                        help="merge even when shards are missing (listed in the report)")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.merge import load, merge

    merged = merge(load(args.results), allow_partial=args.allow_partial)
    if args.json:
        write_json(args.json, merged.to_json())
    if args.json != "-":
        print(merged.summary)
        for part in merged.missing:
            print(f"missing: {part}")
    return merged.exit_code
