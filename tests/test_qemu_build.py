"""The series build (qcow2harness/qemu_build.py): reading a series, applying it, and the
build it leaves behind."""

from __future__ import annotations

import json
import pathlib

import pytest

from qcow2harness import qemu
from qcow2harness.qemu_build import (
    BuildError,
    Patch,
    apply_series,
    build_key,
    load_series,
    split_mbox,
)

SERIES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "zoned-series"


def diff(path: str, old: str, new: str, *, created: bool = False) -> str:
    before = "/dev/null" if created else f"a/{path}"
    header = f"diff --git a/{path} b/{path}\n" + ("new file mode 100644\n" if created else "")
    hunk = f"@@ -0,0 +1 @@\n+{new}\n" if created else f"@@ -1 +1 @@\n-{old}\n+{new}\n"
    return f"{header}--- {before}\n+++ b/{path}\n{hunk}"


def message(subject: str, body: str) -> str:
    return (f"From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n"
            f"From: A Writer <a@example.org>\nSubject: [PATCH] {subject}\n\n---\n{body}--\n2.0\n\n")


def test_an_mbox_splits_into_its_patches_in_order() -> None:
    mbox = (message("one", diff("a.c", "x", "y")) + message("cover", "no diff here\n")
            + message("two", diff("b.c", "p", "q")))
    patches = split_mbox("series.mbox", mbox.encode())
    assert [p.name for p in patches] == ["series.mbox#1", "series.mbox#2"]
    assert [p.files() for p in patches] == [[("a.c", False)], [("b.c", False)]]


def test_a_new_file_is_known_as_created() -> None:
    patch = Patch("p", diff("docs/new.rst", "", "text", created=True).encode())
    assert patch.files() == [("docs/new.rst", True)]


def test_a_folder_is_read_in_name_order(tmp_path: pathlib.Path) -> None:
    (tmp_path / "0002-b.patch").write_text(message("b", diff("b.c", "p", "q")))
    (tmp_path / "0001-a.patch").write_text(message("a", diff("a.c", "x", "y")))
    (tmp_path / "README.md").write_text("not a patch")
    assert [p.name for p in load_series(tmp_path)] == ["0001-a.patch", "0002-b.patch"]


def test_a_folder_without_patches_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(BuildError, match="no .patch"):
        load_series(tmp_path)


def test_hunks_for_files_the_tree_lacks_are_skipped_and_reported(
        tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.c").write_text("x\n")
    patch = Patch("0001", (diff("a.c", "x", "y") + diff("docs/old.txt", "p", "q")).encode())
    applied = apply_series([patch], tree, tmp_path / "patch.log")
    assert [(a.patch, a.skipped) for a in applied] == [("0001", ["docs/old.txt"])]
    assert (tree / "a.c").read_text() == "y\n"


def test_a_patch_that_does_not_apply_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.c").write_text("something else\n")
    with pytest.raises(BuildError, match="git apply"):
        apply_series([Patch("0001", diff("a.c", "x", "y").encode())], tree,
                     tmp_path / "patch.log")


def test_the_cache_key_follows_the_version_and_every_patch() -> None:
    one, two = Patch("1", b"diff one"), Patch("2", b"diff two")
    keys = {build_key("1:10.2.2+ds-1", [one, two]), build_key("1:10.2.3+ds-1", [one, two]),
            build_key("1:10.2.2+ds-1", [one]), build_key("1:10.2.2+ds-1", [two, one])}
    assert len(keys) == 4


def test_the_shared_series_parses_with_one_documentation_hunk_to_skip() -> None:
    if not SERIES.is_dir():
        pytest.skip(f"not run: {SERIES} is absent")
    patches = load_series(SERIES)
    assert len(patches) == 4
    touched = {path for p in patches for path, _ in p.files()}
    assert "block/qcow2.c" in touched and "docs/interop/qcow2.txt" in touched


@pytest.mark.parametrize("build", ["zoned", "zoned-asan", "stock"])
def test_the_build_has_each_variant_and_only_the_series_knows_zones(build: str) -> None:
    reason = qemu.build_unavailable(build)
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    assert qemu.qemu_version("qemu-img", build).major == 10
    assert qemu.supports_zoned_qcow2(build) == (build != "stock")


def test_the_manifest_records_what_was_built() -> None:
    reason = qemu.build_unavailable("zoned")
    root = qemu.build_root()
    if reason is not None or root is None:
        pytest.skip(f"not run: {reason}")
    manifest_path = pathlib.Path(root) / "manifest.json"
    if not manifest_path.exists():
        pytest.skip(f"not run: {root} is a user's own build (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["source_package"].startswith("qemu 1:10.2.")
    assert [p["name"] for p in manifest["patches"]]
    assert set(manifest["variants"]) >= {"zoned"}
