"""Build the writer under test: Debian's QEMU 10.2 source with a patch series applied.

`make zoned-qemu SERIES=DIR` runs `python -m qcow2harness.qemu_build --series DIR`:

1. fetch Debian's `qemu` source package through a private apt state (its own sources
   list, lists and cache under the build cache), so the system's apt configuration is
   never touched; `dpkg-source -x` applies Debian's own patches;
2. configure a tools-only build (qemu-img, qemu-io), build it: that is **stock**;
3. apply DIR's patches in order (numbered .patch files, or mbox files); a hunk for a
   file the tree does not have is reported and skipped; rebuild: that is **zoned**;
4. build the patched tree again with AddressSanitizer: **zoned-asan**.

Everything lives in the cache (`$QCOW2_HARNESS_CACHE`, else `$XDG_CACHE_HOME` or
~/.cache, then `qcow2-harness/`), under a key made of the source version, the patch
digests and the configure flags, so a second run with the same inputs does nothing.
The build root holds one folder per variant with `qemu-img` and `qemu-io`, and
`manifest.json`. Point QCOW2_HARNESS_ZONED_QEMU at it (qcow2harness.qemu.zoned_build).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcow2harness.errors import HarnessError
from qcow2harness.qemu import tool_environment

SOURCE_PACKAGE = "qemu"
# The base the series' build facts were established on (shared/zoned-series/README.md).
DEFAULT_SOURCE_VERSION = "1:10.2.2+ds-1"
SOURCE_SERIES = "10.2."  # another 10.2.x is taken when the pinned one is gone
VARIANTS = ("stock", "zoned", "zoned-asan")
TOOLS = ("qemu-img", "qemu-io")
CONFIGURE_FLAGS = (
    "--target-list=", "--disable-system", "--disable-user", "--enable-tools",
    "--without-default-features", "--disable-docs", "--disable-werror", "--disable-rust",
    # Debian's +ds tarball drops the firmware blobs that an install would copy.
    "--disable-install-blobs",
    "--enable-zstd",
)
ASAN_FLAGS = ("--enable-asan",)
BUILD_PACKAGES = ("dpkg-dev", "ninja-build", "pkg-config", "libglib2.0-dev", "flex", "bison",
                  "libzstd-dev", "zlib1g-dev", "python3-venv", "git", "xz-utils")
# Bumped when the recipe changes in a way the key's other parts do not show.
RECIPE = 1


class BuildError(HarnessError):
    """The series could not be fetched, patched or built."""


def cache_root() -> Path:
    explicit = os.environ.get("QCOW2_HARNESS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qcow2-harness"


def log(message: str) -> None:
    print(f"zoned-qemu: {message}", file=sys.stderr, flush=True)


def run(args: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
        logfile: Path | None = None) -> str:
    """Run a step; its output goes to `logfile` when given. BuildError on failure."""
    shown = " ".join(str(a) for a in args)
    if logfile is not None:
        with open(logfile, "ab") as out:
            out.write(f"$ {shown}\n".encode())
            out.flush()
            proc = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  check=False)
        if proc.returncode != 0:
            tail = logfile.read_text(errors="replace").splitlines()[-25:]
            raise BuildError(f"{shown} failed (exit {proc.returncode}); last lines of "
                             f"{logfile}:\n" + "\n".join(tail))
        return ""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{shown} failed (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


# ----- the patch series ------------------------------------------------------------------

MBOX_SEPARATOR = re.compile(rb"^From \S+ .*\d{4}\s*$", re.MULTILINE)
DIFF_HEADER = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Patch:
    name: str
    text: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text).hexdigest()

    def files(self) -> list[tuple[str, bool]]:
        """(path in the tree, created by this patch) of each file the patch touches."""
        text = self.text.decode("utf-8", errors="replace")
        found: list[tuple[str, bool]] = []
        for match in DIFF_HEADER.finditer(text):
            following = text[match.end():match.end() + 400]
            created = "\nnew file mode" in following.split("\n---", 1)[0] or \
                "--- /dev/null" in following.split("\n@@", 1)[0]
            found.append((match.group(2), created))
        return found


def split_mbox(name: str, data: bytes) -> list[Patch]:
    """The messages of an mbox (or one git format-patch file) that carry a diff."""
    starts = [m.start() for m in MBOX_SEPARATOR.finditer(data)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    bounds = list(zip(starts, starts[1:] + [len(data)], strict=True))
    messages = [data[a:b] for a, b in bounds]
    patches = [m for m in messages if b"\ndiff --git " in m or m.startswith(b"diff --git ")]
    if len(patches) == 1:
        return [Patch(name, patches[0])]
    return [Patch(f"{name}#{i + 1}", m) for i, m in enumerate(patches)]


def load_series(series: Path) -> list[Patch]:
    """The patches of a series folder (numbered .patch/.diff files, then .mbox files, in
    name order) or of one mbox/patch file."""
    if series.is_file():
        return split_mbox(series.name, series.read_bytes())
    if not series.is_dir():
        raise BuildError(f"{series}: no such folder or file")
    files = sorted(p for p in series.iterdir()
                   if p.is_file() and p.suffix in (".patch", ".diff", ".mbox", ".mbx"))
    patches = [patch for path in files for patch in split_mbox(path.name, path.read_bytes())]
    if not patches:
        raise BuildError(f"{series}: no .patch, .diff or .mbox file with a diff in it")
    return patches


@dataclass
class Applied:
    patch: str
    skipped: list[str] = field(default_factory=list)  # files the tree does not have


def apply_series(patches: Sequence[Patch], tree: Path, logfile: Path) -> list[Applied]:
    """Apply each patch in order with `git apply`; hunks for files the tree does not have
    are excluded and reported."""
    results = []
    for patch in patches:
        skipped = [path for path, created in patch.files()
                   if not created and not (tree / path).exists()]
        for path in skipped:
            log(f"{patch.name}: skipping its hunks for {path}: the tree has no such file")
        patch_file = logfile.parent / "current.patch"
        patch_file.write_bytes(patch.text)
        run(["git", "apply", "--whitespace=nowarn", *(f"--exclude={p}" for p in skipped),
             str(patch_file)], cwd=tree, logfile=logfile)
        results.append(Applied(patch.name, skipped))
        log(f"applied {patch.name}")
    return results


# ----- Debian's source package ------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian archive the system's apt already uses (deb822 or one-line sources)."""
    explicit = os.environ.get("QCOW2_HARNESS_DEBIAN_MIRROR")
    if explicit:
        return explicit.rstrip("/")
    candidates: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in (".sources", ".list") or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
            elif line.startswith(("deb ", "deb-src ")):
                candidates += [w for w in line.split()[1:] if "://" in w][:1]
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise BuildError("cannot find a Debian archive in /etc/apt (set QCOW2_HARNESS_DEBIAN_MIRROR)")


class SourceFetcher:
    """apt-get source through a private state: the system's apt files stay as they are."""

    def __init__(self, root: Path) -> None:
        self.root = root / "apt"
        self.sources = self.root / "sources.list"
        self.updated = False

    def _options(self) -> list[str]:
        return ["-o", f"Dir::Etc::SourceList={self.sources}",
                "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={self.root / 'lists'}",
                "-o", f"Dir::Cache={self.root / 'cache'}", "-o", "APT::Sandbox::User=root"]

    def update(self) -> None:
        """Read Debian unstable's source index (once per run)."""
        if self.updated:
            return
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        signed = f" [signed-by={keyring}]" if os.path.exists(keyring) else ""
        self.sources.write_text(f"deb-src{signed} {debian_mirror()} unstable main\n")
        log("reading Debian unstable's source index (private apt state)")
        run(["apt-get", *self._options(), "-q", "update"])
        self.updated = True

    def versions(self) -> list[str]:
        out = run(["apt-cache", *self._options(), "showsrc", SOURCE_PACKAGE])
        return re.findall(r"^Version: (\S+)$", out, re.MULTILINE)

    def choose(self, wanted: str | None) -> str:
        available = self.versions()
        if wanted:
            if wanted not in available:
                raise BuildError(f"qemu {wanted} is not in Debian unstable's source index "
                                 f"(it has {', '.join(available) or 'none'})")
            return wanted
        if DEFAULT_SOURCE_VERSION in available:
            return DEFAULT_SOURCE_VERSION
        series = [v for v in available if v.split(":", 1)[-1].startswith(SOURCE_SERIES)]
        if not series:
            raise BuildError(f"no qemu {SOURCE_SERIES}x source in Debian unstable "
                             f"(it has {', '.join(available) or 'none'})")
        return sorted(series, key=_version_key)[-1]

    def unpack(self, version: str, into: Path) -> None:
        """The pristine tree (Debian's patches applied) of `version` at `into`."""
        stamp = into / ".qcow2-harness-unpacked"
        if stamp.exists():
            return
        download = self.root / "download"
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        log(f"fetching the qemu {version} source package")
        run(["apt-get", *self._options(), "-q", "source", "--download-only",
             f"{SOURCE_PACKAGE}={version}"], cwd=download)
        dsc = next(download.glob("*.dsc"))
        shutil.rmtree(into, ignore_errors=True)
        into.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-source", "--no-check", "-x", str(dsc), str(into)])
        shutil.rmtree(download, ignore_errors=True)
        stamp.write_text(version + "\n")


def _version_key(version: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", version.split(":", 1)[-1])]


# ----- the build ---------------------------------------------------------------------------

def build_key(version: str, patches: Sequence[Patch]) -> str:
    material = json.dumps({"version": version, "patches": [p.digest for p in patches],
                           "configure": CONFIGURE_FLAGS, "asan": ASAN_FLAGS, "recipe": RECIPE})
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def meson_python(root: Path, tree: Path) -> Path:
    """A venv with the meson the tree asks for (Debian's +ds tarball drops QEMU's wheels)."""
    wanted = tomllib.loads((tree / "pythondeps.toml").read_text())["meson"]["meson"]["installed"]
    venv = root / f"meson-{wanted}"
    python = venv / "bin" / "python3"
    if not (venv / "bin" / "meson").exists():
        log(f"installing meson {wanted} into {venv}")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", f"meson=={wanted}"])
    return python


def _configure(tree: Path, build: Path, python: Path, extra: Sequence[str],
               logfile: Path) -> None:
    if (build / "build.ninja").exists():
        return
    build.mkdir(parents=True, exist_ok=True)
    run([str(tree / "configure"), f"--python={python}", *CONFIGURE_FLAGS, *extra],
        cwd=build, logfile=logfile)


def missing_build_tools() -> list[str]:
    needed = {"dpkg-source": "dpkg-dev", "ninja": "ninja-build", "pkg-config": "pkg-config",
              "flex": "flex", "bison": "bison", "git": "git", "apt-get": "apt"}
    gone = sorted({pkg for tool, pkg in needed.items() if shutil.which(tool) is None})
    if shutil.which("pkg-config") and subprocess.run(
            ["pkg-config", "--exists", "glib-2.0", "libzstd"], check=False).returncode != 0:
        gone += ["libglib2.0-dev", "libzstd-dev"]
    return gone


def build(series: Path, *, variants: Sequence[str] = VARIANTS, source_version: str | None = None,
          root: Path | None = None, jobs: int | None = None) -> Path:
    """Build (or find in the cache) the variants; returns the build root."""
    root = root or cache_root()
    patches = load_series(series)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise BuildError(f"unknown variant(s) {sorted(unknown)}; choose from {VARIANTS}")
    if missing := missing_build_tools():
        raise BuildError("missing build tools; install them with apt-get install "
                         + " ".join(missing))
    fetcher = SourceFetcher(root)
    index = root / "builds" / "index.json"
    # The source index is read once; the version chosen then is kept for these inputs.
    series_id = hashlib.sha256(b"".join(p.text for p in patches)).hexdigest()[:16]
    known = json.loads(index.read_text()) if index.exists() else {}
    version = source_version or known.get(series_id)
    if version is None:
        fetcher.update()
        version = fetcher.choose(source_version)
    key = build_key(version, patches)
    out = root / "builds" / key
    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) \
        if manifest_path.exists() else {
        "source_package": f"{SOURCE_PACKAGE} {version}", "series": str(series.resolve()),
        "patches": [{"name": p.name, "sha256": p.digest} for p in patches],
        "configure": list(CONFIGURE_FLAGS), "asan": list(ASAN_FLAGS), "variants": {}}
    todo = [v for v in variants if not (out / v / "qemu-img").exists()
            or not (out / v / "qemu-io").exists()]
    if not todo:
        log(f"cached: {out} ({', '.join(variants)})")
        return out

    work = root / "work" / key
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pristine = root / "src" / f"qemu-{version.replace(':', '_')}"
    if not (pristine / ".qcow2-harness-unpacked").exists():
        fetcher.update()
        fetcher.unpack(version, pristine)
    python = meson_python(root, pristine)
    tree = work / "src"
    patched = work / "patched"
    if not (tree / "configure").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log(f"copying the source tree to {tree}")
        shutil.copytree(pristine, tree, symlinks=True)

    def make(variant: str, build_dir: Path, extra: Sequence[str] = ()) -> None:
        started = time.monotonic()
        logfile = logs / f"{variant}.log"
        log(f"building {variant} (log: {logfile})")
        _configure(tree, build_dir, python, extra, logfile)
        run(["ninja", "-C", str(build_dir), *TOOLS], logfile=logfile)
        (out / variant).mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            shutil.copy2(build_dir / tool, out / variant / tool)
        manifest["variants"][variant] = {"seconds": round(time.monotonic() - started, 1)}

    # stock is built before the series touches the tree; the same build directory then
    # rebuilds only what the patches change.
    if "stock" in todo:
        if patched.exists():
            raise BuildError(f"{work} is already patched; remove it to rebuild stock")
        make("stock", work / "build")
    if not patched.exists():
        manifest["applied"] = [vars(a) for a in apply_series(patches, tree, logs / "patch.log")]
        patched.touch()
    if "zoned" in todo:
        make("zoned", work / "build")
    if "zoned-asan" in todo:
        make("zoned-asan", work / "build-asan", ASAN_FLAGS)
    for variant in variants:
        proc = subprocess.run([str(out / variant / "qemu-img"), "--version"], capture_output=True,
                              text=True, check=False, env=tool_environment(variant))
        manifest["variants"].setdefault(variant, {})["version"] = proc.stdout.splitlines()[0] \
            if proc.stdout else f"exit {proc.returncode}"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    known[series_id] = version
    index.write_text(json.dumps(known, indent=2) + "\n")
    log(f"built: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qcow2harness.qemu_build",
        description="Build Debian's QEMU 10.2 tools with a patch series applied (stock, "
                    "zoned and zoned-asan), cached by source version and patch digests.")
    parser.add_argument("--series", required=True, type=Path,
                        help="folder of numbered .patch files or mbox files, or one mbox")
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="build only this variant (repeatable; default all)")
    parser.add_argument("--source-version", help=f"Debian source version "
                                                 f"(default {DEFAULT_SOURCE_VERSION})")
    parser.add_argument("--print-dir", action="store_true",
                        help="print only the build root on stdout (for QCOW2_HARNESS_ZONED_QEMU)")
    args = parser.parse_args(argv)
    try:
        out = build(args.series, variants=args.variant or VARIANTS,
                    source_version=args.source_version)
    except BuildError as error:
        print(f"zoned-qemu: error: {error}", file=sys.stderr)
        return 1
    if args.print_dir:
        print(out)
    else:
        print(f"built into {out}\nexport QCOW2_HARNESS_ZONED_QEMU={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
