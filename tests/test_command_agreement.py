"""check, info, map and report give one verdict per structure.

=== corruptions ===  every targeted corruption of properties/corruptions.py goes through the
                     four commands (cli.run, the CLI's own code path): report exits as check
                     and names the same clauses; info and map either accept the image or
                     refuse it (exit 2) naming a clause check reports, with check's exit 2.
                     When check exits 2 but info or map accepts the image, the command does
                     not look at the broken structure: NOT_LOOKED_AT says so, with a reason.
                     A clause of the shared structural validation (qcow2harness.structure)
                     is never accepted by info or map.
=== regression ===   corpus/regressions/hdr-20--*: snapshots_offset not cluster-aligned with
                     no snapshots is HDR-20 for every command, and qemu-img refuses it too.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
from collections.abc import Callable

import pytest
from qcow2harness.properties import corruptions as corr
from qcow2harness.properties.corruptions import CORRUPTIONS, Corruption

from qcow2harness import cli, qemu
from qcow2harness.checker.zoned import BLOCKING_CLAUSES
from qcow2harness.corpus import recipe_unavailable
from qcow2harness.report_html import gather
from qcow2harness.structure import CLAUSES as STRUCTURAL_CLAUSES

REPO = pathlib.Path(__file__).resolve().parents[1]
REGRESSION = (REPO / "corpus" / "regressions"
              / "hdr-20--snapshot-offset-unaligned-no-snapshots.qcow2")
# What info and map must refuse, as check does: the one shared validation.
SHARED = STRUCTURAL_CLAUSES | BLOCKING_CLAUSES

# Where info or map accepts an image that check calls invalid: the structure it does not
# read, by clause (or clause family, "L2-"), and why. Every row must be needed.
NOT_LOOKED_AT: dict[str, dict[str, str]] = {
    "info": {
        "HDR-": "feature bits, crypt_method, compression_type, padding and the v2 tail are "
                "shown as found; only the header's layout and table placement are judged",
        "EXT-": "extension bodies are shown as found; only the list's walk is judged",
        "DATA-": "the data file and data_file_raw are shown as found",
        "CRYPT-": "the encryption header is not read",
        "ZONE-": "the zone geometry's soft limits and the extension length are shown as "
                 "found; only what makes the wp table unreadable is judged",
        "WP-": "wp entries are shown as stored (the zone report names their states)",
        "L1-": "L1 entries are counted, not followed",
        "L2-": "no L2 table is read", "EL2-": "no L2 table is read",
        "CMP-": "no L2 table or compressed data is read",
        "RC-": "no refcount block is read", "OVL-": "no cluster ownership is computed",
        "SNAP-": "snapshot L1 tables are not read; entries are shown as found",
        "BMP-": "bitmap tables are not read; directory entries are shown as found",
    },
    "map": {
        "HDR-": "feature bits, crypt_method, compression_type and padding do not change "
                "the guest map",
        "EXT-": "extension bodies other than the data file and backing names are not read",
        "DATA-": "data_file_raw and the data file name's bytes do not change the map",
        "CRYPT-": "the encryption header is not read (encrypted data has no offset)",
        "ZONE-": "the zone geometry does not change the guest map",
        "WP-": "the wp table is not read", "RC-": "refcounts do not change the map",
        "OVL-": "cluster ownership does not change the map",
        "SNAP-": "snapshots are not part of the guest map", "BMP-": "bitmaps are not read",
        "L1-": "COPIED flags and reserved bits do not change the map",
        "L2-": "COPIED flags, reserved bits and entries past the end of the file (read as "
               "zeros, as QEMU does) do not change the map",
        "EL2-": "only the subclusters of the range being read are judged",
        "CMP-": "compressed data is not decoded",
    },
}
# Where map cannot run (exit 1) on a corruption, by corruption id, and why.
CANNOT_RUN: dict[tuple[str, str], str] = {
    ("map", "ZONE-23/zoned-with-backing"): "the corruption names a backing file that does "
    "not exist; ZONE-23 is a SHOULD, so map follows the name and cannot open the chain, as "
    "qemu-img map cannot",
}
EXIT_CLASS = {0: "ok", 1: "could not run", 2: "invalid", 3: "SHOULD only"}
CLAUSE_IN_ERROR = re.compile(r"\[([A-Z][A-Z0-9]*-\d+)\]")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(argv))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def check_verdict(path: pathlib.Path) -> tuple[int, list[str]]:
    """check's exit code and the clauses it reports, in its order."""
    code, out, err = run_cli("check", "--json", str(path))
    assert code in EXIT_CLASS, err
    # One image: one JSON document (indented or on one line).
    record = json.loads(out)
    clauses = [f["clause"] for f in record["violations"] + record.get("notes", [])]
    return code, clauses + sorted(set(record.get("suppressed", {})) - set(clauses))


def refusal(command: str, path: pathlib.Path, tmp: pathlib.Path) -> tuple[int, str | None]:
    """(exit code, clause named on stderr) of info, map or report."""
    if command == "info":
        code, _, err = run_cli("info", "--json", str(path))
    elif command == "map":
        code, _, err = run_cli("map", "--output", "json", str(path))
    else:
        code, _, err = run_cli("report", str(path), "--html", str(tmp / "page.html"))
    named = CLAUSE_IN_ERROR.search(err)
    return code, named.group(1) if named else None


def exemption(command: str, clause: str) -> str | None:
    table = NOT_LOOKED_AT[command]
    return table.get(clause) or next(
        (reason for key, reason in table.items() if key.endswith("-")
         and clause.startswith(key)), None)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("agreement-bases")


@pytest.fixture(scope="module")
def base(base_dir: pathlib.Path) -> Callable[[str], bytes]:
    def get(kind: str) -> bytes:
        if kind.startswith("qemu-"):
            for tool in ("qemu-img", "qemu-io"):
                if qemu.find_tool(tool) is None:
                    pytest.skip(f"not run: {tool} not found (base image {kind} is made by "
                                f"QEMU; install qemu-utils or set {qemu.TOOL_ENV[tool]})")
            why = recipe_unavailable(corr.QEMU_KINDS[kind][0]) if kind in corr.QEMU_KINDS \
                else None
            if why is not None:
                pytest.skip(f"not run: base image {kind}: {why}")
        return corr.base_image(kind, base_dir)

    return get


used_exemptions: set[tuple[str, str]] = set()
cases_run: set[str] = set()


@pytest.mark.parametrize("c", CORRUPTIONS, ids=lambda c: c.id)
def test_every_command_names_checks_clause(c: Corruption, base: Callable[[str], bytes],
                                           base_dir: pathlib.Path,
                                           tmp_path: pathlib.Path) -> None:
    broken = c.broken(base(c.base))
    # Beside the base, so that backing and data file names resolve as they do for it.
    path = base_dir / f"broken-{c.clause}-{c.name}.qcow2"
    path.write_bytes(broken)
    try:
        check_code, check_clauses = check_verdict(path)
        report_code, _ = refusal("report", path, tmp_path)
        assert report_code == check_code, (
            f"{c.id}: report exits {report_code}, check {check_code}")
        # The page's findings come from the same check (report_html.gather, as the CLI).
        page = gather(path).report
        listed = check_clauses[:len(page.findings)]  # the findings, suppressed ones after
        assert sorted(f.clause for f in page.findings) == sorted(listed), c.id
        assert page.exit_code == check_code
        for command in ("info", "map"):
            code, named = refusal(command, path, tmp_path)
            if (command, c.id) in CANNOT_RUN:
                assert code == 1, f"{c.id}: {command} exits {code}; CANNOT_RUN says 1"
                used_exemptions.add((command, c.id))
                continue
            assert code in (0, 2), f"{c.id}: {command} exits {code} ({EXIT_CLASS.get(code)})"
            if code == 2:
                assert named is not None, f"{c.id}: {command} refuses without a clause"
                assert named in check_clauses and check_code == 2, (
                    f"{c.id}: {command} names {named}; check exits {check_code} with "
                    f"{check_clauses}")
                if named in SHARED:  # one validation: the first problem check reports
                    first = next(clause for clause in check_clauses if clause in SHARED)
                    assert named == first, f"{c.id}: {command} names {named}, check {first}"
                continue
            assert c.clause not in SHARED, (
                f"{c.id}: {command} accepts an image whose {c.clause} the shared "
                "validation judges")
            if check_code == 2:
                reason = exemption(command, c.clause)
                assert reason, (f"{c.id}: check exits 2 ({check_clauses}) but "
                                f"{command} accepts the image, and NOT_LOOKED_AT says nothing")
                key = c.clause if c.clause in NOT_LOOKED_AT[command] else \
                    c.clause.split("-")[0] + "-"
                used_exemptions.add((command, key))
    finally:
        path.unlink()
    cases_run.add(c.id)


def test_every_exemption_is_needed() -> None:
    """Runs after the corruptions (file order): a row no corruption used is stale."""
    if len(cases_run) < len(CORRUPTIONS):
        pytest.skip(f"not run: {len(CORRUPTIONS) - len(cases_run)} corruption case(s) did "
                    "not run or failed (no QEMU, or deselected)")
    stale = [(command, key) for command, table in NOT_LOOKED_AT.items() for key in table
             if (command, key) not in used_exemptions]
    stale += [key for key in CANNOT_RUN if key not in used_exemptions]
    assert not stale, f"NOT_LOOKED_AT rows no corruption needs: {stale}"


def test_the_shared_validation_judges_must_clauses_only() -> None:
    """info and map refuse what it finds: a SHOULD or MAY finding must not stop them."""
    from qcow2harness.spec.registry import load

    registry = load()
    assert {clause: registry[clause].level for clause in SHARED
            if registry[clause].level != "MUST"} == {}


# === regression ===


def test_unaligned_snapshot_offset_without_snapshots_is_hdr_20(tmp_path: pathlib.Path) -> None:
    code, clauses = check_verdict(REGRESSION)
    assert code == 2 and "HDR-20" in clauses
    for command in ("info", "map"):
        assert refusal(command, REGRESSION, tmp_path) == (2, "HDR-20")
    assert refusal("report", REGRESSION, tmp_path)[0] == 2


@pytest.mark.qemu
@pytest.mark.parametrize("subcommand", ["info", "check"])
def test_qemu_img_refuses_the_hdr_20_regression(subcommand: str, qemu_tools: None) -> None:
    done = qemu.run("qemu-img", subcommand, str(REGRESSION), check=False)
    assert done.returncode != 0, done.stdout
    assert "snapshot table offset invalid" in (done.stderr + done.stdout).lower()
