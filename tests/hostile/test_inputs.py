"""Hostile inputs the commands must refuse cleanly (issue #18), through the real CLI.

=== image paths ===  check, info, map and report take a regular file or a block device:
                     a FIFO (which used to block open() for ever), a directory, a socket
                     or /dev/zero is exit 1 with one line naming the path and what it is;
                     so are a FIFO as a backing file or an external data file (map).
=== merge ===        a result file is a regular file of at most 64 MiB, JSON, valid
                     against its kind's schema (docs/schema/); otherwise exit 1 naming the
                     file and the first wrong field, never "0 crash states checked" and
                     never an internal error.
=== schemas ===      every kind merge reads has a schema, and what the campaigns really
                     write is valid against it.
=== make crash ===   the crash env lets exit 2 (findings) through and fails on exit 1.

Every command runs in a subprocess with a timeout, so a hang fails instead of hanging
the suite.
"""

from __future__ import annotations

import configparser
import copy
import json
import os
import pathlib
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SEEDS = REPO / "corpus" / "seeds"
SCHEMAS = REPO / "docs" / "schema"
HARNESS = shutil.which("qcow2-harness", path=os.path.dirname(sys.executable))
TIMEOUT = 120  # seconds; the refusals take well under one, a hang takes for ever
IMAGE_COMMANDS = ["info", "check", "map", "report"]


def harness(*argv: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    if HARNESS is None:
        pytest.skip("not run: the qcow2-harness console script is not installed")
    try:
        return subprocess.run([HARNESS, *argv], capture_output=True, text=True, cwd=cwd,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qcow2-harness {' '.join(argv)}: still running after {TIMEOUT} s")


def command_line(command: str, path: pathlib.Path | str, tmp_path: pathlib.Path) -> list[str]:
    extra = ["--html", str(tmp_path / "page.html")] if command == "report" else []
    return [command, str(path), *extra]


def assert_refused(done: subprocess.CompletedProcess[str], path: pathlib.Path | str,
                   what: str) -> None:
    """Exit 1, one line on stderr naming the path and what it is, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"{path}: is {what}" in lines[0], lines[0]


# ---------------------------------------------------------------------------
# === image paths ===
# ---------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "image.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_a_fifo_is_refused_not_waited_on(command: str, fifo: pathlib.Path,
                                         tmp_path: pathlib.Path) -> None:
    done = harness(*command_line(command, fifo, tmp_path))
    assert_refused(done, fifo, "a FIFO")
    assert not (tmp_path / "page.html").exists()


@pytest.mark.parametrize("command", ["info", "map"])
def test_a_directory_is_refused(command: str, tmp_path: pathlib.Path) -> None:
    # `check DIR` and `report DIR` take the images in it (a collection): their business.
    directory = tmp_path / "not-an-image"
    directory.mkdir()
    assert_refused(harness(*command_line(command, directory, tmp_path)), directory,
                   "a directory")


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_dev_zero_is_refused_not_read(command: str, tmp_path: pathlib.Path) -> None:
    if not os.path.exists("/dev/zero") or not stat.S_ISCHR(os.stat("/dev/zero").st_mode):
        pytest.skip("not run: no /dev/zero character device here")
    assert_refused(harness(*command_line(command, "/dev/zero", tmp_path)), "/dev/zero",
                   "a character device")


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_a_socket_is_refused(command: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "image.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        assert_refused(harness(*command_line(command, path, tmp_path)), path, "a socket")


def test_a_regular_image_still_opens(tmp_path: pathlib.Path) -> None:
    # The refusals above are not a refusal of everything: the same commands on a seed.
    image = SEEDS / "qemu-v3.qcow2"
    for command in IMAGE_COMMANDS:
        done = harness(*command_line(command, image, tmp_path))
        assert done.returncode == 0, (command, done.stderr)


def test_fuzz_replay_passes_over_a_fifo_in_a_corpus_folder(tmp_path: pathlib.Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEEDS / "qemu-v3.qcow2", corpus / "unit")
    os.mkfifo(corpus / "pipe")
    done = harness("fuzz", "check", "--replay", str(corpus))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replayed 1 inputs" in done.stdout + done.stderr


def test_fuzz_replay_refuses_an_input_past_its_bound_unread(tmp_path: pathlib.Path) -> None:
    from qcow2harness.fuzz.targets import MAX_REPLAY_BYTES

    unit = tmp_path / "huge-unit"
    with open(unit, "wb") as f:
        f.truncate(MAX_REPLAY_BYTES + 1)  # sparse: costs no disk
    done = harness("fuzz", "check", "--replay", str(unit))
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"{unit}: {MAX_REPLAY_BYTES + 1} bytes, more than the" in done.stderr
    assert "Traceback" not in done.stderr


def _overlay_naming_a_fifo(tmp_path: pathlib.Path, backing_format: bytes | None
                           ) -> pathlib.Path:
    """The backing-overlay seed beside a FIFO of its backing file's name; its backing
    format extension says qcow2, raw, or (None) is renamed away so the format is probed."""
    data = bytearray((SEEDS / "qemu-backing-overlay.qcow2").read_bytes())
    ext = data.index(bytes.fromhex("e2792aca"))  # the backing file format extension
    if backing_format is None:
        data[ext:ext + 4] = bytes.fromhex("7e57ab1e")  # unknown: ignored, format probed
    else:
        data[ext + 4:ext + 8] = len(backing_format).to_bytes(4, "big")
        data[ext + 8:ext + 16] = backing_format.ljust(8, b"\0")
    overlay = tmp_path / "overlay.qcow2"
    overlay.write_bytes(bytes(data))
    os.mkfifo(tmp_path / "qemu-v3.qcow2")  # the name the overlay's header gives
    return overlay


@pytest.mark.parametrize("backing_format", [b"qcow2", b"raw", None],
                         ids=["qcow2", "raw", "probed"])
def test_map_refuses_a_fifo_as_backing_file(backing_format: bytes | None,
                                            tmp_path: pathlib.Path) -> None:
    overlay = _overlay_naming_a_fifo(tmp_path, backing_format)
    assert_refused(harness("map", str(overlay)), tmp_path / "qemu-v3.qcow2", "a FIFO")


def test_map_refuses_a_fifo_as_external_data_file(tmp_path: pathlib.Path) -> None:
    seed = SEEDS / "qemu-data-file.qcow2"
    info = json.loads(harness("info", "--json", str(seed)).stdout)
    image = tmp_path / "image.qcow2"
    shutil.copyfile(seed, image)
    os.mkfifo(tmp_path / info["data_file"])
    assert_refused(harness("map", str(image)), tmp_path / info["data_file"], "a FIFO")


# ---------------------------------------------------------------------------
# === merge ===
# ---------------------------------------------------------------------------


def assert_merge_refuses(tmp_path: pathlib.Path, name: str, content: str | bytes,
                         expected: str) -> str:
    """Merge one file holding `content`: exit 1, one line naming the file and `expected`
    (a regex); the line is returned."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    done = harness("merge", str(path))
    assert done.returncode == 1, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "crash states checked" not in done.stdout, done.stdout
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"merge: {path}: " in line and re.search(expected, line), line
    return line


def required_fields(name: str) -> set[str]:
    """Every property name a `required` anywhere in docs/schema/NAME.schema.json lists."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(node.get("required", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
    return found


@pytest.mark.parametrize("kind", ["crash", "fuzz", "properties"])
def test_merge_refuses_a_bare_kind(kind: str, tmp_path: pathlib.Path) -> None:
    # {"kind":"crash"} merged to "0 crash states checked", exit 0; fuzz and properties
    # to an internal KeyError.
    line = assert_merge_refuses(tmp_path, f"{kind}.json", json.dumps({"kind": kind}),
                                r": /\w+: missing \(required\)")
    field = re.search(r": /(\w+): missing", line)
    assert field and field.group(1) in required_fields(kind), line
    assert f"docs/schema/{kind}.schema.json" in line


def test_merge_refuses_a_truncated_file(tmp_path: pathlib.Path) -> None:
    whole = json.dumps({"kind": "fuzz", "target": "check", "shard": {"index": 0}})
    assert_merge_refuses(tmp_path, "truncated.json", whole[:len(whole) // 2],
                         r"not JSON: .*char \d+")


def test_merge_refuses_non_json(tmp_path: pathlib.Path) -> None:
    assert_merge_refuses(tmp_path, "text.json", "hello, not JSON\n", r"not JSON")
    assert_merge_refuses(tmp_path, "latin1.json", b"\xff\xfe\x00{", r"not JSON")
    assert_merge_refuses(tmp_path, "array.json", "[1, 2]", r": /: not a shard result")
    assert_merge_refuses(tmp_path, "deep.json", "[" * 100_000, r"not JSON")
    assert_merge_refuses(tmp_path, "digits.json", '{"kind": "fuzz", "execs": ' +
                         "9" * 5000 + "}", r"not JSON")
    assert_merge_refuses(tmp_path, "kind.json", '{"kind": ["crash"]}',
                         r": /kind: unknown result kind")


def test_merge_refuses_a_huge_line_unread(tmp_path: pathlib.Path) -> None:
    from qcow2harness.merge import MAX_RESULT_BYTES

    path = tmp_path / "huge.json"
    with open(path, "wb") as out:  # one line past the cap, sparse on disk
        out.write(b'{"kind": "crash", "pad": "')
        out.seek(MAX_RESULT_BYTES)
        out.write(b'"}\n')
    done = harness("merge", str(path))
    assert done.returncode == 1, done.stderr
    assert f"{path}: {MAX_RESULT_BYTES + 3} bytes, more than the 64 MiB read" in done.stderr


@pytest.mark.parametrize("what", ["a FIFO", "a character device", "a directory"])
def test_merge_refuses_what_is_not_a_regular_file(what: str, tmp_path: pathlib.Path) -> None:
    path: pathlib.Path | str
    if what == "a FIFO":
        path = tmp_path / "result.fifo"
        os.mkfifo(path)
    elif what == "a directory":
        path = tmp_path
    else:
        path = "/dev/zero"  # read 1.9 GB in 2.6 s before this was refused
        if not os.path.exists(path):
            pytest.skip("not run: no /dev/zero here")
    done = harness("merge", str(path))
    assert done.returncode == 1, done.stderr
    assert f"{path}: is {what}" in done.stderr and "not a regular file" in done.stderr


@pytest.fixture(scope="module")
def crash_shards() -> list[dict[str, Any]]:
    """Two real shards of a reference-writer campaign with a mutant (so with violations
    and findings), as `crash --json` writes them."""
    from qcow2harness.commands.output import versioned
    from qcow2harness.crash.campaign import CampaignSpec, run_campaign
    from qcow2harness.sharding import Shard

    spec = CampaignSpec("reference", "zones-small", ("wp-before-data",))
    return [versioned("crash", run_campaign(spec, shard=Shard(i, 2)).to_json())
            for i in range(2)]


def merge_files(tmp_path: pathlib.Path, documents: list[dict[str, Any]]
                ) -> subprocess.CompletedProcess[str]:
    files = []
    for number, document in enumerate(documents):
        files.append(tmp_path / f"shard-{number}.json")
        files[-1].write_text(json.dumps(document))
    return harness("merge", *map(str, files))


def test_real_crash_shards_still_merge(crash_shards: list[dict[str, Any]],
                                       tmp_path: pathlib.Path) -> None:
    done = merge_files(tmp_path, crash_shards)
    assert done.returncode == 2, done.stdout + done.stderr  # the mutant's violations
    states = sum(s["states_checked"] for s in crash_shards)
    assert f"{states} crash states checked" in done.stdout


def _set(document: dict[str, Any], pointer: str, value: Any) -> None:
    *parents, last = pointer.strip("/").split("/")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


# (pointer, value: KeyError deletes the field, the message expected after the pointer)
DAMAGE = [
    ("/seed", KeyError, r"missing \(required\)"),
    ("/violations/0/state", 7, r"is not of type 'string'"),
    ("/violations/0/state", "tomorrow", r"does not match"),
    ("/states_digest", "not hex", r"does not match"),
    ("/shard/index", -1, r"less than the minimum"),
    ("/shard/index", 5, r"shard 5 of 2 does not exist"),
    ("/shard/count", 10**12, r"more than the \d+ parts merge enumerates"),
    ("/command", "qcow2-harness crash 'unclosed", r"not a shell command line"),
    ("/kind", "fuzz", r"missing \(required\)"),
    ("/schema_version", "2.0", r"does not match"),
]


@pytest.mark.parametrize("pointer, value, expected", DAMAGE,
                         ids=[f"{p}={v!r}"[:40] for p, v, _ in DAMAGE])
def test_merge_names_the_damaged_field(pointer: str, value: Any, expected: str,
                                       crash_shards: list[dict[str, Any]],
                                       tmp_path: pathlib.Path) -> None:
    documents = copy.deepcopy(crash_shards)
    assert documents[1]["violations"], "the mutant's shard 1/2 has violations to damage"
    _set(documents[1], pointer, value)
    done = merge_files(tmp_path, documents)
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stderr.strip()
    assert "internal error" not in line and len(line.splitlines()) == 1, line
    if pointer == "/kind":  # a fuzz result now, so its own first missing field
        assert re.search(rf"shard-1\.json: /\w+: {expected}", line), line
    else:
        assert re.search(rf"shard-1\.json: {re.escape(pointer)}: .*{expected}", line), line


def test_a_hostile_state_range_is_not_expanded(crash_shards: list[dict[str, Any]],
                                               tmp_path: pathlib.Path) -> None:
    # A finding's state is parsed to rank it; expanding 0:0-999999999999 would exhaust
    # memory. The range is valid for the schema, so the merge goes through.
    documents = copy.deepcopy(crash_shards)
    finding = dict(documents[0]["findings"][0], state="0:0-999999999999")
    documents[1]["findings"] = [finding, *documents[1].get("findings", [])]
    done = merge_files(tmp_path, documents)
    assert done.returncode == 2, done.stdout + done.stderr


# ---------------------------------------------------------------------------
# === schemas ===
# ---------------------------------------------------------------------------


def test_every_kind_merge_reads_has_a_schema() -> None:
    from qcow2harness.merge import MERGERS, SCHEMA_OF_KIND

    assert set(SCHEMA_OF_KIND) == set(MERGERS)
    for name in SCHEMA_OF_KIND.values():
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
        assert schema["$id"] == f"urn:qcow2-harness:schema:{name}"


def test_real_crash_results_are_valid(crash_shards: list[dict[str, Any]]) -> None:
    from qcow2harness.merge import schema_problem

    for shard in crash_shards:
        assert schema_problem("crash", shard, "campaign") is None


def test_real_nightly_results_are_valid(tmp_path: pathlib.Path) -> None:
    from qcow2harness.properties import nightly

    from qcow2harness.merge import read_result

    schema = json.loads((SCHEMAS / "properties.schema.json").read_text())
    assert set(schema["$defs"]["suite"]["enum"]) == set(nightly.SUITES)
    out = tmp_path / "nightly.json"
    nightly.main(["--suite", "reference", "--rounds", "7", "--examples", "4", "--steps", "8",
                  "--no-database", "--no-shrink", "--mutant", "wp-before-data",
                  "--json", str(out)])
    result = read_result(str(out))  # raises UsageError naming the field when invalid
    assert result["failures"], "the mutant is caught, so failures are validated too"


def test_real_fuzz_results_are_valid(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("atheris", reason="not run: atheris is not installed (fuzz extra)")
    from qcow2harness.merge import read_result

    out = tmp_path / "fuzz.json"
    done = harness("fuzz", "external", "--reader", "sh -c 'kill -SEGV $$' {}", "--seed", "1",
                   "--runs", "5", "--seeds", str(SEEDS), "--minimize-time", "0",
                   "--regressions", str(tmp_path / "regressions"), "--json", str(out),
                   cwd=tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    result = read_result(str(out))
    assert result["findings"], "the crashing reader is a finding, validated too"


# ---------------------------------------------------------------------------
# === make crash ===
# ---------------------------------------------------------------------------


def crash_env_commands() -> list[str]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "tox.ini")
    lines = config["testenv:crash"]["commands"].strip().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_the_crash_env_ignores_no_exit_code() -> None:
    commands = crash_env_commands()
    assert commands and not [c for c in commands if c.startswith("-")], commands


@pytest.mark.parametrize("code", [0, 1, 2, 3])
def test_the_crash_env_passes_findings_and_fails_on_could_not_run(
        code: int, tmp_path: pathlib.Path) -> None:
    # Each campaign line, run by sh as tox runs it, with a stand-in qcow2-harness
    # that exits `code`: 0 and 2 (findings) pass, 1 (could not run) and 3 fail.
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("not run: no sh")
    fake = tmp_path / "bin" / "qcow2-harness"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexit {code}\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    campaigns = [c for c in crash_env_commands() if "qcow2-harness crash" in c]
    assert campaigns
    for command in campaigns:
        argv = [word.replace("{posargs:--json}", "--json") for word in
                shlex.split(command)]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert (done.returncode == 0) == (code in (0, 2)), (code, argv, done.stderr)
        assert ("findings" in done.stderr) == (code == 2), done.stderr
