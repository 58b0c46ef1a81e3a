"""ksy/ is the one description of the format: it compiles, it is documented, it is portable."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest

from qcow2harness.image import Image

REPO = pathlib.Path(__file__).resolve().parent.parent
KSY_FILES = sorted((REPO / "ksy").glob("*.ksy"))


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "kaitai-struct-compiler").is_dir():
        pytest.skip("not run: node or node_modules missing (run `make node-deps`)")
    return node


def load_ksy(path: pathlib.Path) -> dict[str, Any]:
    """Read a .ksy with js-yaml, the loader the Kaitai Web IDE uses."""
    node = require_node()
    script = (
        "const y=require('js-yaml');"
        "console.log(JSON.stringify(y.load(require('fs').readFileSync(process.argv[1],'utf8'),"
        "{schema: y.CORE_SCHEMA})))"
    )
    out = subprocess.run([node, "-e", script, str(path)], capture_output=True, text=True,
                         check=True, cwd=REPO)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_generated_parsers_match_ksy() -> None:
    node = require_node()
    proc = subprocess.run([node, "ksy/build.js", "--check"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def _documented_nodes(spec: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    nodes = [(where, spec)]
    for field in spec.get("seq", []):
        nodes.append((f"{where}.seq.{field['id']}", field))
    for name, instance in spec.get("instances", {}).items():
        nodes.append((f"{where}.instances.{name}", instance))
    for name, subtype in spec.get("types", {}).items():
        nodes.extend(_documented_nodes(subtype, f"{where}.types.{name}"))
    return nodes


@pytest.mark.parametrize("path", KSY_FILES, ids=lambda p: p.name)
def test_every_field_has_doc_and_doc_ref(path: pathlib.Path) -> None:
    spec = load_ksy(path)
    assert spec["meta"]["id"] == path.stem
    missing = [
        f"{where}: {key}"
        for where, node in _documented_nodes(spec, path.stem)
        for key in ("doc", "doc-ref")
        if not node.get(key)
    ]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("path", KSY_FILES, ids=lambda p: p.name)
def test_meta_is_in_gallery_order(path: pathlib.Path) -> None:
    keys = list(load_ksy(path)["meta"])
    order = ["id", "title", "application", "file-extension", "xref", "license", "endian",
             "bit-endian", "imports"]
    assert keys == [k for k in order if k in keys]


def test_javascript_parser_agrees_with_python(
    qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]],
) -> None:
    node = require_node()
    directory, manifest = qemu_corpus
    for entry in manifest:
        path = directory / entry["file"]
        proc = subprocess.run([node, "ksy/dump_with_js.js", str(path)], capture_output=True,
                              text=True, cwd=REPO)
        assert proc.returncode == 0, (entry["name"], proc.stderr)
        js = json.loads(proc.stdout)
        with Image.open(path) as image:
            header = image.header
            assert js["header"]["version"] == header.version
            assert js["header"]["clusterBits"] == header.cluster_bits
            assert js["header"]["virtualSize"] == header.virtual_size
            assert js["header"]["ofsL1Table"] == header.ofs_l1_table
            assert js["header"]["ofsRefcountTable"] == header.ofs_refcount_table
            assert js["header"]["numSnapshots"] == header.num_snapshots
            assert [(e["magic"], e["length"]) for e in js["extensions"]] == [
                (ext.magic, ext.length) for ext in image.extensions()
            ]
            # Not compared: bit-masked instances such as l1_entry.ofs_l2_table.
            # Kaitai's JavaScript target does 64-bit masks with 32-bit bitwise
            # operators on doubles, so they are wrong there (see ksy/README.md).
            assert len(js["l1"]) == header.num_l1_entries


@pytest.mark.parametrize("path", KSY_FILES, ids=lambda p: p.name)
def test_doc_refs_name_existing_clauses(path: pathlib.Path) -> None:
    from qcow2harness.spec.registry import load

    registry = load()
    cited = []
    for where, node in _documented_nodes(load_ksy(path), path.stem):
        refs = node.get("doc-ref", [])
        for ref in [refs] if isinstance(refs, str) else refs:
            if ref.startswith("spec/SPEC.md "):
                clause = ref.split()[1]
                assert clause in registry, f"{where}: {clause} is not in spec/clauses.toml"
                cited.append(clause)
    assert cited, "a .ksy that cites no clause"
