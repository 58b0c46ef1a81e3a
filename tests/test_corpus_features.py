"""A qemu-img built without zstd or a crypto library makes the corpus without those images,
and says why (corpus.skipped.json), instead of failing the whole corpus."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from qcow2harness import corpus, qemu

pytestmark = pytest.mark.qemu


def refusing_qemu_img(tmp_path: pathlib.Path, option: str, message: str) -> str:
    """A qemu-img that refuses to create images with `option`, as a build without the
    feature does, and is the real one otherwise."""
    real = qemu.find_tool("qemu-img")
    if real is None:
        pytest.skip("not run: qemu-img not found (install qemu-utils or set QEMU_IMG)")
    script = tmp_path / "qemu-img"
    script.write_text(f"""#!/bin/sh
for arg in "$@"; do
    case "$arg" in *{option}*) echo "qemu-img: {message}" >&2; exit 1;; esac
done
exec {real} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_qemu_without_zstd_skips_only_the_zstd_images(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = refusing_qemu_img(tmp_path, "compression_type=zstd",
                             "Parameter 'compression-type' does not accept value 'zstd'")
    monkeypatch.setenv("QEMU_IMG", fake)
    assert "does not accept value 'zstd'" in (corpus.missing_feature("zstd") or "")
    out = tmp_path / "corpus"
    manifest = corpus.build_corpus(str(out), only=["qemu-compressed", "qemu-compat-1.1"])
    assert [e["name"] for e in manifest] == ["qemu-compat-1.1", "qemu-compressed-zlib"]
    skipped = corpus.skipped_recipes(out)
    assert list(skipped) == ["qemu-compressed-zstd"]
    assert "zstd" in skipped["qemu-compressed-zstd"]
    assert not (out / "qemu-compressed-zstd.qcow2").exists()


def test_a_qemu_without_crypto_skips_the_luks_image(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = refusing_qemu_img(tmp_path, "encrypt.format=luks",
                             "Unsupported cipher algorithm aes-256, no crypto library")
    monkeypatch.setenv("QEMU_IMG", fake)
    assert corpus.recipe_unavailable("qemu-luks") is not None
    assert corpus.recipe_unavailable("qemu-compat-1.1") is None
    manifest = corpus.build_corpus(str(tmp_path / "c"), only=["qemu-luks"])
    assert manifest == []
    assert "no crypto library" in corpus.skipped_recipes(tmp_path / "c")["qemu-luks"]


def test_the_default_qemu_img_answers_the_probes(qemu_tools: None) -> None:
    # Debian's 7.2 has both; a minimal build may lack either: the answer is then a reason.
    for feature in corpus.FEATURE_PROBES:
        answer = corpus.missing_feature(feature)
        assert answer is None or qemu.find_tool("qemu-img") in answer
    with pytest.raises(ValueError, match="unknown QEMU feature"):
        corpus.missing_feature("lzo")


def test_a_full_build_records_no_skips(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    manifest = corpus.build_corpus(str(tmp_path), only=["qemu-compat-1.1"])
    assert len(manifest) == 1
    assert corpus.skipped_recipes(tmp_path) == {}
    assert os.path.exists(tmp_path / corpus.SKIPPED_FILE)
