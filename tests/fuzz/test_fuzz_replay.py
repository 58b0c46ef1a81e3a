"""Replay mode: every target runs over a corpus directory without atheris."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from qcow2harness.fuzz.targets import TARGETS, decode_ops, execute, get_target, replay

from qcow2harness.cli import run


@pytest.fixture
def tiny_corpus(tmp_path: pathlib.Path, seed_files: list[pathlib.Path]) -> pathlib.Path:
    for path in seed_files[::4]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "garbage").write_bytes(b"QFI\xfb\x00\x00\x00\x03" + bytes(200))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "manifest.json").write_text("{}")  # skipped by replay
    return tmp_path


def test_check_replay_finds_nothing_on_the_seeds(tiny_corpus: pathlib.Path) -> None:
    results = list(replay(TARGETS["check"], [str(tiny_corpus)]))
    assert len(results) == len(list(tiny_corpus.iterdir())) - 1
    assert [(path, f) for path, f in results if f is not None] == []


def test_model_replay_decodes_any_bytes(tiny_corpus: pathlib.Path) -> None:
    # Corpus images decode to op sequences too; the writer must agree with the model.
    for path, finding in replay(TARGETS["model"], [str(tiny_corpus / "garbage")]):
        assert finding is None, (path, finding)
    config, policy, ops = decode_ops(bytes(range(64)))
    assert config["size"] % config["zone_size"] == 0 and policy and len(ops) == 20


def test_model_target_agrees_on_a_long_history() -> None:
    assert execute(TARGETS["model"], bytes([0, 1]) + bytes(range(256)) * 2) is None


def test_cli_replay_exit_codes(tiny_corpus: pathlib.Path) -> None:
    assert run(["fuzz", "check", "--replay", str(tiny_corpus)]) == 0
    assert run(["fuzz", "external", "--replay", str(tiny_corpus)]) == 1  # no --reader


@pytest.mark.qemu
def test_external_replay_on_qemu_img_info(tiny_corpus: pathlib.Path, qemu_tools: None) -> None:
    target = get_target("external", reader="qemu-img info {}")
    for path, finding in replay(target, [str(tiny_corpus)]):
        assert finding is None, (path, finding)


@pytest.mark.qemu
def test_differential_replay_agrees_on_the_seeds(tiny_corpus: pathlib.Path,
                                                 qemu_tools: None) -> None:
    for path, finding in replay(TARGETS["differential"], [str(tiny_corpus)]):
        assert finding is None, (path, finding)
