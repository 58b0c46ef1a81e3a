"""QEMU's own maintenance tools as rules of the model-vs-QEMU stateful suite.

`QemuToolsMachine` is `QemuGuestMachine` (guest writes through one long-running qemu-io,
the GuestData model) plus one rule per qemu-img maintenance step, each run with qemu-io
closed and the image reopened after it:

- repair: `qemu-img check -r leaks|all`; a `crash` rule SIGKILLs qemu-io after a few
  unflushed writes, leaving leaks (or, with lazy refcounts, a dirty image that the next
  read-write open must repair by itself);
- amend: compat 0.10 <-> 1.1, refcount_bits 1..64, lazy_refcounts on/off;
- convert: to qcow2 with other options (cluster size, -c, refcount_bits, extended L2,
  preallocation), and to raw and back;
- internal snapshots (inherited rules; the model copy taken at create is what apply
  must bring back);
- external snapshot, commit, rebase (safe and -u);
- resize (grow, and shrink with --shrink);
- persistent bitmaps: `qemu-img bitmap --add/--remove/--clear/--enable/--disable`.

Each tool step predicts whether QEMU accepts it. A refusal must exit non-zero and leave
the file byte-identical; an accepted step must leave an image our `check` calls clean,
whose header and bitmap directory (read by our parser) say what the model says, and whose
guest bytes read back through QEMU as the model says (the inherited invariants).

A failure prints the qemu-io script with the tool steps as comments, and the run as data
after REGRESSION_TAG: `replay_tools_regression` runs it again
(tests/properties/regressions/qemu-tools/).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from qcow2harness import qemu
from qcow2harness.checker.metadata import new_walk, read_stored_refcounts
from qcow2harness.checker.report import Findings, Report
from qcow2harness.image import Image
from qcow2harness.info import describe_bitmaps, describe_header

from .qemu_io import QemuIO
from .stateful import GUEST_SIZE, REGRESSION_TAG, SECTOR, QemuGuestMachine, check_is_clean
from .strategies import image_options

BITMAP_NAMES = ("b0", "b1", "b2")
REFCOUNT_WIDTHS = tuple(str(1 << order) for order in range(7))
AMENDS = (
    ("compat", "0.10"), ("compat", "1.1"), ("lazy_refcounts", "on"), ("lazy_refcounts", "off"),
    *(("refcount_bits", bits) for bits in REFCOUNT_WIDTHS),
)
Step = TypeVar("Step", bound=Callable[..., None])
Result = TypeVar("Result")


def recorded(method: Step) -> Step:
    """Keep each rule call (name and arguments) so that a failing run can be replayed."""
    @functools.wraps(method)
    def run(self: QemuToolsMachine, **kwargs: Any) -> None:
        self.steps.append({"rule": method.__name__, "args": kwargs})
        method(self, **kwargs)
    return run  # type: ignore[return-value]


@dataclass
class BitmapModel:
    granularity: int | None  # None: QEMU's default, learnt from the directory after --add
    enabled: bool
    inconsistent: bool = False  # in_use on disk after a crash: only --remove still works


@dataclass
class Backing:
    path: str
    fmt: str
    view: np.ndarray  # the backing file's guest bytes, one pattern byte a sector
    leaks_allowed: bool = False  # it was the machine's image after a crash or finding 5


def digest(path: str) -> str:
    with open(path, "rb") as image:
        return hashlib.sha256(image.read()).hexdigest()


def max_stored_refcount(path: str) -> int:
    """The highest refcount stored in the image (read with our parser)."""
    with Image.open(path) as image:
        walk = new_walk(image, Findings(Report(path=path)))
        read_stored_refcounts(walk)
        stored = walk.stored
        return int(stored.max()) if stored is not None and stored.size else 0


class QemuToolsMachine(QemuGuestMachine):
    """Guest writes through qemu-io, and qemu-img maintenance steps between them."""

    # Known QEMU 7.2 findings are not searched again (README "Findings"); the regression
    # replay turns this off to assert the right behaviour (xfail while QEMU has the bug).
    SKIP_KNOWN_FINDINGS = True

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, Any]] = []
        self.bitmaps: dict[str, BitmapModel] = {}
        self.backing: Backing | None = None
        self.files = itertools.count()
        self.may_hold_compressed = False  # after `convert -c`

    # -- replay -------------------------------------------------------------------------

    @initialize(options=image_options())
    @recorded
    def create(self, options: dict[str, str]) -> None:
        super().create(options)

    def _fail(self, message: str) -> None:
        run = json.dumps({"steps": self.steps})
        try:
            super()._fail(message)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{REGRESSION_TAG}{run}") from None

    def _run(self, command: str) -> str:
        out = self._io().command(command)
        if "error" in out.lower() or "failed" in out.lower():
            self._fail(f"qemu-io {command!r} failed: {out.strip()}")
        return out

    # -- the inherited guest rules, recorded (and with a backing file in mind) -------------

    sectors = st.integers(0, 4 * GUEST_SIZE // SECTOR)
    counts = QemuGuestMachine.counts

    @rule(sector=sectors, count=counts, pattern=st.integers(1, 255))
    @recorded
    def write(self, sector: int, count: int, pattern: int) -> None:
        super().write(sector, count, pattern)

    @rule(sector=sectors, count=counts)
    @recorded
    def write_zeroes(self, sector: int, count: int) -> None:
        super().write_zeroes(sector, count)

    @rule(cluster=st.integers(0, 63), clusters=st.integers(1, 4))
    @recorded
    def discard(self, cluster: int, clusters: int) -> None:
        super().discard(cluster, clusters)

    def discarded(self, sector: int, count: int) -> int | np.ndarray:
        # A v3 image marks discarded clusters as reading zeros. v2 has no zero flag: over a
        # backing file QEMU leaves the clusters as they are (a discard may do nothing).
        if self.backing is not None and self.options.get("compat") == "0.10":
            return self.data.sectors[sector:sector + count].copy()
        return 0

    @rule()
    @recorded
    def flush(self) -> None:
        super().flush()

    @rule()
    @recorded
    def reopen(self) -> None:
        super().reopen()

    @rule(name=st.sampled_from(("s0", "s1", "s2")))
    @recorded
    def snapshot_create(self, name: str) -> None:
        if name in self.snapshots:
            return
        # Each cluster the active image references gains one reference: that fits in
        # refcount_bits when twice the highest refcount does; otherwise QEMU may refuse.
        highest = self._closed(lambda: max_stored_refcount(self.image))
        fits = 2 * highest < 1 << int(self.options.get("refcount_bits", "16"))

        def refused() -> None:
            # Known QEMU 7.2 finding 5 (README): the refused snapshot leaks clusters.
            self.leaks_allowed = True
        if self._tool_step("snapshot", "-c", name, self.image, expect_ok=True if fits else None,
                           on_refusal=refused):
            self.snapshots[name] = self.data.copy()

    @precondition(lambda self: bool(self.snapshots))
    @rule(index=st.integers(0, 2))
    @recorded
    def snapshot_apply(self, index: int) -> None:
        names = sorted(self.snapshots)
        name = names[index % len(names)]
        # QEMU refuses to load a snapshot while the image has any persistent bitmap.
        def applied() -> None:  # v3 snapshots keep their disk size: it comes back too
            self.data.sectors = self.snapshots[name].copy()
        self._tool_step("snapshot", "-a", name, self.image, expect_ok=not self.bitmaps,
                        on_success=applied)

    @precondition(lambda self: bool(self.snapshots))
    @rule(index=st.integers(0, 2))
    @recorded
    def snapshot_delete(self, index: int) -> None:
        names = sorted(self.snapshots)
        name = names[index % len(names)]
        self._tool_step("snapshot", "-d", name, self.image, expect_ok=True)
        del self.snapshots[name]

    # -- running one tool step -------------------------------------------------------------

    def _tool_step(self, *args: str, expect_ok: bool | None, post_check: bool = True,
                   on_success: Callable[[], None] | None = None,
                   on_refusal: Callable[[], None] | None = None) -> bool:
        """Run `qemu-img ARGS` with qemu-io closed; True when it succeeded.

        expect_ok None: either outcome is legal. A refusal must leave the image unchanged.
        on_success updates the model when the step was taken.
        """
        io = self._io()
        io.command("close")
        shown = " ".join("IMG" if a == self.image else os.path.basename(a) or "''"
                         for a in args)
        io.script.append(f"# qemu-img {shown}")
        try:
            before = digest(self.image)
            proc = qemu.run("qemu-img", *args, check=False)
            answer = (proc.stderr or proc.stdout).strip().replace("\n", " ")[:300]
            io.script.append(f"#   exit {proc.returncode}: {answer}")
            ok = proc.returncode == 0
            if expect_ok is True and not ok:
                self._fail(f"qemu-img {shown} refused a legal step: {answer}")
            if expect_ok is False and ok:
                self._fail(f"qemu-img {shown} accepted a step it must refuse")
            if not ok and on_refusal is not None and self.SKIP_KNOWN_FINDINGS:
                on_refusal()
            elif not ok and digest(self.image) != before:
                if not (self.bitmaps and self.SKIP_KNOWN_FINDINGS):
                    self._fail(f"qemu-img {shown} refused ({answer}) but changed the image")
                # Known QEMU 7.2 behaviour (README Findings): a refused step that opened
                # the image read-write still stores its bitmaps again, elsewhere in the
                # file. The post-check below still holds it to a clean, unchanged image.
                io.script.append("#   refused, but the bitmap directory was rewritten")
            if ok and on_success is not None:
                on_success()
            if post_check:
                self._check_closed(f"after qemu-img {shown}")
            return ok
        finally:
            io.command(f"open -t {io.cache} -o driver=qcow2 {self.image}")

    def _check_closed(self, where: str) -> None:
        """With the image closed: `check` clean, header and bitmaps as the model says."""
        problems = check_is_clean(self.image, leaks_allowed=self.leaks_allowed)
        if problems:
            self._fail(f"check {where}: " + "; ".join(problems))
        with Image.open(self.image) as image:
            version = image.version
            refcount_bits = 1 << image.refcount_order
            header = describe_header(image)
            lazy = bool(header["compatible_features"] & 1)
            size = int(header["virtual_size"])
            bitmaps = describe_bitmaps(image)
        want = (2 if self.options.get("compat") == "0.10" else 3,
                int(self.options.get("refcount_bits", "16")),
                self.options.get("lazy_refcounts") == "on", self.data.sectors.size * SECTOR)
        if (version, refcount_bits, lazy, size) != want:
            self._fail(f"header {where}: version {version}, refcount_bits {refcount_bits}, "
                       f"lazy {lazy}, size {size}; the model says {want}")
        self._check_bitmap_directory(bitmaps, where)

    def _check_bitmap_directory(self, bitmaps: list[dict[str, Any]], where: str) -> None:
        found = {b["name"]: b for b in bitmaps}
        if set(found) != set(self.bitmaps):
            self._fail(f"bitmaps {where}: {sorted(found)}; the model has {sorted(self.bitmaps)}")
        for name, model in self.bitmaps.items():
            flags = set(found[name]["flags"])
            want = {"auto"} if model.enabled else set()
            if model.inconsistent:
                want.add("in_use")
            if flags != want:
                self._fail(f"bitmap {name} {where}: flags {sorted(flags)}, expected {sorted(want)}")
            if model.granularity is None:
                model.granularity = found[name]["granularity"]
            elif found[name]["granularity"] != model.granularity:
                self._fail(f"bitmap {name} {where}: granularity {found[name]['granularity']}, "
                           f"expected {model.granularity}")

    def _replace_image(self, new: str) -> None:
        """Make `new` the machine's image (qemu-io reopens it)."""
        io = self._io()
        io.command("close")
        os.replace(new, self.image)
        io.command(f"open -t {io.cache} -o driver=qcow2 {self.image}")

    def _new_file(self, suffix: str) -> str:
        return os.path.join(self.workdir, f"file-{next(self.files)}.{suffix}")

    def _read_raw(self, raw: str) -> np.ndarray:
        """One pattern byte per sector of a raw image; fails on a sector of mixed bytes."""
        data = np.fromfile(raw, dtype=np.uint8)
        if data.size != self.data.sectors.size * SECTOR:
            self._fail(f"raw image of {data.size} bytes, the model has "
                       f"{self.data.sectors.size * SECTOR}")
        sectors = data.reshape(-1, SECTOR)
        mixed = np.flatnonzero((sectors != sectors[:, :1]).any(axis=1))
        if mixed.size:
            self._fail(f"guest sector {int(mixed[0])} holds mixed bytes")
        return sectors[:, 0].copy()

    # -- crash and repair ------------------------------------------------------------------

    @rule(ops=st.lists(st.tuples(st.sampled_from(["write", "zero", "discard"]), sectors,
                                 counts, st.integers(1, 255)), min_size=1, max_size=4))
    @recorded
    def crash(self, ops: list[tuple[str, int, int, int]]) -> None:
        """A few writes, no flush, then SIGKILL: every sector must read as one of the
        values it held since the last flush; `check` may find leaks (or, with lazy
        refcounts, a dirty image), nothing worse."""
        self.data.history = [self.data.sectors.copy()]
        for kind, sector, count, pattern in ops:
            if kind == "write":
                QemuGuestMachine.write(self, sector, count, pattern)
            elif kind == "zero":
                QemuGuestMachine.write_zeroes(self, sector, count)
            else:
                QemuGuestMachine.discard(self, sector % 64, 1 + count % 4)
                if self.may_hold_compressed and self.SKIP_KNOWN_FINDINGS:
                    # Known QEMU 7.2 bug (README Findings): a crash after discarding
                    # compressed clusters leaves L2 entries on punched data (EIO).
                    self._run("flush")
                    self.data.history = [self.data.sectors.copy()]
        history, self.data.history = np.stack(self.data.history), None
        io = self._io()
        io.kill()
        raw = self._new_file("raw")
        qemu.run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", self.image, raw)
        after = self._read_raw(raw)
        os.unlink(raw)
        held = (history == after).any(axis=0)
        if not held.all():
            first = int(np.flatnonzero(~held)[0])
            self._fail(f"after a crash guest sector {first} reads {after[first]:#x}, a value "
                       f"it never held since the last flush {sorted(set(history[:, first]))}")
        self.data.sectors = after
        lazy = self.options.get("lazy_refcounts") == "on"
        problems = check_is_clean(self.image, dirty_allowed=lazy, leaks_allowed=True)
        if problems:
            self._fail("check after a crash: " + "; ".join(problems))
        for bitmap in self.bitmaps.values():
            bitmap.inconsistent = True  # they were in use by the killed process
        # A freed cluster's refcount may not have reached the file: a leak, which is safe.
        self.leaks_allowed = True
        with Image.open(self.image) as image:
            dirty = bool(describe_header(image)["incompatible_features"] & 1)
        # The next read-write open repairs a dirty image by itself (lazy refcounts).
        self.io = QemuIO(self.image)
        self.io.script = [*io.script, "# qemu-io restarted on IMG"]
        if dirty:
            self.io.command("close")
            problems = check_is_clean(self.image)
            if problems:
                self._fail("check after the automatic repair of a dirty image on open: "
                           + "; ".join(problems))
            self.leaks_allowed = False
            self.io.command(f"open -t {self.io.cache} -o driver=qcow2 {self.image}")

    @rule(mode=st.sampled_from(["leaks", "all"]))
    @recorded
    def repair(self, mode: str) -> None:
        """`qemu-img check -r`: afterwards no leaks; the guest sees nothing change."""
        self.leaks_allowed = False
        self._tool_step("check", "-q", "-r", mode, self.image, expect_ok=True)

    # -- amend --------------------------------------------------------------------------------

    @rule(change=st.sampled_from(AMENDS))
    @recorded
    def amend(self, change: tuple[str, str]) -> None:
        option, value = change
        v2 = self.options.get("compat") == "0.10"
        bits = int(self.options.get("refcount_bits", "16"))
        if option == "compat" and value == "0.10":
            if self.bitmaps and self.SKIP_KNOWN_FINDINGS:
                # Known QEMU 7.2 bug: the downgrade keeps the bitmaps, which a v2 image
                # cannot flag, and leaks their clusters (README Findings; regression
                # tests/properties/regressions/qemu-tools/amend-downgrade-with-bitmaps).
                return
            legal = bits == 16 and self.options.get("extended_l2") != "on"
        elif option == "lazy_refcounts":
            legal = value == "off" or not v2
        elif option == "refcount_bits":
            highest = self._closed(lambda: max_stored_refcount(self.image))
            legal = (not v2 or value == "16") and highest < 1 << int(value)
        else:
            legal = True
        # Downgrading with bitmaps (the replay of the known finding): refusing is as
        # right as dropping them cleanly.
        expect: bool | None = legal
        if option == "compat" and value == "0.10" and self.bitmaps:
            expect = None
        def amended() -> None:
            self.options[option] = value
            if option == "compat" and value == "0.10":
                self.options["lazy_refcounts"] = "off"
                self.bitmaps.clear()
        self._tool_step("amend", "-o", f"{option}={value}", self.image, expect_ok=expect,
                        on_success=amended)

    # -- convert --------------------------------------------------------------------------------

    @rule(options_to=image_options(), compress=st.booleans(),
          preallocation=st.sampled_from(["off", "metadata", "falloc", "full"]),
          copy_bitmaps=st.booleans())
    @recorded
    def convert(self, options_to: dict[str, str], compress: bool, preallocation: str,
                copy_bitmaps: bool) -> None:
        """Convert to a qcow2 image with other options, and continue on that image."""
        options = dict(options_to, preallocation="off" if compress else preallocation)
        new = self._new_file("qcow2")
        args = ["convert", "-f", "qcow2", "-O", "qcow2",
                "-o", ",".join(f"{k}={v}" for k, v in options.items())]
        if compress:
            args.append("-c")
        copied = copy_bitmaps and bool(self.bitmaps)
        if copied:
            args.append("--bitmaps")
        legal = not copied or (options_to["compat"] != "0.10" and not any(
            b.inconsistent for b in self.bitmaps.values()))
        if not self._tool_step(*args, self.image, new, expect_ok=legal, post_check=False):
            if os.path.exists(new):
                os.unlink(new)
            return
        self.options = options_to
        self.may_hold_compressed = compress
        self.snapshots.clear()
        self.backing = None
        if not copied:
            self.bitmaps.clear()
        self._replace_image(new)
        self._closed_check("after convert")

    @rule(options_to=image_options(), compress=st.booleans())
    @recorded
    def convert_raw_and_back(self, options_to: dict[str, str], compress: bool) -> None:
        """To raw (its bytes must be the model's guest bytes) and back to qcow2."""
        raw, new = self._new_file("raw"), self._new_file("qcow2")
        self._tool_step("convert", "-f", "qcow2", "-O", "raw", self.image, raw,
                        expect_ok=True, post_check=False)
        if not np.array_equal(self._read_raw(raw), self.data.sectors):
            first = int(np.flatnonzero(self._read_raw(raw) != self.data.sectors)[0])
            self._fail(f"convert to raw: guest sector {first} differs from the model")
        args = ["convert", "-f", "raw", "-O", "qcow2",
                "-o", ",".join(f"{k}={v}" for k, v in options_to.items())]
        if compress:
            args.append("-c")
        qemu.run("qemu-img", *args, raw, new)
        self._io().script.append(f"# qemu-img {' '.join(args)} RAW IMG")
        os.unlink(raw)
        self.options = options_to
        self.may_hold_compressed = compress
        self.snapshots.clear()
        self.bitmaps.clear()
        self.backing = None
        self._replace_image(new)
        self._closed_check("after convert from raw")

    def _closed_check(self, where: str) -> None:
        self._closed(lambda: self._check_closed(where))

    def _closed(self, action: Callable[[], Result]) -> Result:
        """action() with qemu-io's image closed (no cached metadata, no lock)."""
        io = self._io()
        io.command("close")
        try:
            return action()
        finally:
            io.command(f"open -t {io.cache} -o driver=qcow2 {self.image}")

    # -- external snapshot, commit, rebase ---------------------------------------------------

    @precondition(lambda self: self.backing is None)
    @rule()
    @recorded
    def external_snapshot(self) -> None:
        """The image becomes the backing file of a new, empty overlay."""
        base = self._new_file("qcow2")
        io = self._io()
        io.command("close")
        os.replace(self.image, base)
        create = ["create", "-q", "-f", "qcow2", "-o",
                  ",".join(f"{k}={v}" for k, v in self.options.items()),
                  "-b", base, "-F", "qcow2"]
        io.script.append(f"# mv IMG BASE; qemu-img {' '.join(create)} IMG")
        qemu.run("qemu-img", *create, self.image)
        io.command(f"open -t {io.cache} -o driver=qcow2 {self.image}")
        self.backing = Backing(base, "qcow2", self.data.sectors.copy(), self.leaks_allowed)
        self.leaks_allowed = False  # a new file
        self.may_hold_compressed = False  # the new overlay holds nothing yet
        self.snapshots.clear()  # they stay in the backing file
        self.bitmaps.clear()
        self._closed_check("after the external snapshot")

    @precondition(lambda self: self.backing is not None and not self.snapshots)
    @rule()
    @recorded
    def commit(self) -> None:
        """The overlay's data goes down into the backing file; the guest sees no change."""
        assert self.backing is not None
        self._tool_step("commit", "-q", self.image, expect_ok=True)
        self.backing.view = self.data.sectors.copy()
        if self.backing.fmt == "qcow2":
            problems = check_is_clean(self.backing.path, leaks_allowed=self.backing.leaks_allowed)
            if problems:
                self._fail("check of the backing file after commit: " + "; ".join(problems))

    @precondition(lambda self: self.backing is not None and not self.snapshots)
    @rule(onto=st.sampled_from(["none", "new"]), sector=sectors, count=counts,
          pattern=st.integers(1, 255))
    @recorded
    def rebase_safe(self, onto: str, sector: int, count: int, pattern: int) -> None:
        """Safe rebase: onto no backing file at all, or onto a new file with other data;
        the guest sees no change either way."""
        if onto == "none":
            self._tool_step("rebase", "-q", "-b", "", self.image, expect_ok=True)
            self.backing = None
            return
        new = self._new_file("qcow2")
        qemu.run("qemu-img", "create", "-q", "-f", "qcow2", new, str(self.data.sectors.size
                                                                      * SECTOR))
        sector %= self.data.sectors.size
        count = min(count, self.data.sectors.size - sector)
        qemu.run("qemu-io", "-f", "qcow2", "-c",
                 f"write -P {pattern:#x} {sector * SECTOR} {count * SECTOR}", new)
        self._io().script.append(f"# qemu-img create -f qcow2 NEWBASE; qemu-io -c 'write -P "
                                 f"{pattern:#x} {sector * SECTOR} {count * SECTOR}' NEWBASE")
        self._tool_step("rebase", "-q", "-b", new, "-F", "qcow2", self.image, expect_ok=True)
        view = np.zeros_like(self.data.sectors)
        view[sector:sector + count] = pattern
        self.backing = Backing(new, "qcow2", view)

    @precondition(lambda self: self.backing is not None)
    @rule()
    @recorded
    def rebase_unsafe(self) -> None:
        """The backing file moved (here: converted to raw): `rebase -u` points at the copy."""
        assert self.backing is not None
        copy = self._new_file("raw")
        qemu.run("qemu-img", "convert", "-f", self.backing.fmt, "-O", "raw",
                 self.backing.path, copy)
        self._io().script.append("# qemu-img convert -O raw BASE BASE.raw")
        self._tool_step("rebase", "-u", "-b", copy, "-F", "raw", self.image, expect_ok=True)
        self.backing = Backing(copy, "raw", self.backing.view)

    # -- resize ------------------------------------------------------------------------------

    @precondition(lambda self: self.backing is None)
    @rule(sectors=st.integers(2048, 12288), shrink_flag=st.booleans())
    @recorded
    def resize(self, sectors: int, shrink_flag: bool) -> None:
        """Grow (new sectors read zeros) or shrink (the tail is gone)."""
        current = self.data.sectors.size
        legal = not (
            (sectors < current and not shrink_flag)
            or (self.options.get("compat") == "0.10" and self.snapshots)
            or any(b.inconsistent for b in self.bitmaps.values()))
        if sectors == current:
            legal = True
        args = ["resize", "-q", *(["--shrink"] if shrink_flag else []), "-f", "qcow2"]
        if legal:
            resized = np.zeros(sectors, dtype=np.uint8)
            kept = min(sectors, current)
            resized[:kept] = self.data.sectors[:kept]
            self.data.sectors = resized
        self._tool_step(*args, self.image, str(sectors * SECTOR), expect_ok=legal)

    # -- bitmaps ---------------------------------------------------------------------------

    @rule(action=st.sampled_from(["add", "remove", "clear", "enable", "disable"]),
          name=st.sampled_from(BITMAP_NAMES),
          granularity=st.sampled_from([None, 512, 65536, 1 << 20]), disabled=st.booleans())
    @recorded
    def bitmap(self, action: str, name: str, granularity: int | None, disabled: bool) -> None:
        model = self.bitmaps.get(name)
        args = ["bitmap", f"--{action}"]
        if action == "add":
            legal = model is None and self.options.get("compat") != "0.10"
            if granularity is not None:
                args += ["-g", str(granularity)]
            if disabled:
                args.append("--disable")
        elif action == "remove":
            legal = model is not None
        else:
            legal = model is not None and not model.inconsistent
        if legal:
            if action == "add":
                self.bitmaps[name] = BitmapModel(granularity, enabled=not disabled)
            elif action == "remove":
                del self.bitmaps[name]
            elif action in ("enable", "disable"):
                assert model is not None
                model.enabled = action == "enable"
        self._tool_step(*args, "-f", "qcow2", self.image, name, expect_ok=legal)


def replay_tools_regression(run: dict[str, Any],
                            machine_class: type[QemuToolsMachine] = QemuToolsMachine) -> None:
    """Run recorded steps again, with the invariants after each; raises AssertionError as
    the suite would."""
    machine = machine_class()
    try:
        for step in run["steps"]:
            args = dict(step["args"])
            if step["rule"] == "crash":
                args["ops"] = [tuple(op) for op in args["ops"]]
            getattr(machine, step["rule"])(**args)
            machine.check_is_clean_after_flush()
            machine.guest_data_reads_back_through_qemu()
    finally:
        machine.teardown()


# ----- the same tools on a zoned image (QEMU without zoned qcow2 must refuse) ----------

ZONED_IMAGE = "ZONED"  # stands for the zoned image in the steps below
# The one step that succeeds: it writes a pointer to the zoned image and never opens it.
ZONED_STEPS_ACCEPTED = frozenset({"rebase -u onto it"})
ZONED_TOOL_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("check", ("check", ZONED_IMAGE)),
    ("repair leaks", ("check", "-r", "leaks", ZONED_IMAGE)),
    ("repair all", ("check", "-r", "all", ZONED_IMAGE)),
    ("amend compat=1.1", ("amend", "-o", "compat=1.1", ZONED_IMAGE)),
    ("amend refcount_bits=64", ("amend", "-o", "refcount_bits=64", ZONED_IMAGE)),
    ("amend lazy_refcounts=on", ("amend", "-o", "lazy_refcounts=on", ZONED_IMAGE)),
    ("convert to qcow2", ("convert", "-O", "qcow2", ZONED_IMAGE, "OUT")),
    ("convert -c to qcow2", ("convert", "-c", "-O", "qcow2", ZONED_IMAGE, "OUT")),
    ("convert to raw", ("convert", "-O", "raw", ZONED_IMAGE, "OUT")),
    ("snapshot -c", ("snapshot", "-c", "s", ZONED_IMAGE)),
    ("snapshot -l", ("snapshot", "-l", ZONED_IMAGE)),
    ("external snapshot (create -b)", ("create", "-f", "qcow2", "-b", ZONED_IMAGE, "-F", "qcow2",
                                       "OUT")),
    ("commit of an overlay into it", ("commit", "OVERLAY")),
    # -u never opens the new backing file: it succeeds, and PLAIN then cannot be opened.
    ("rebase -u onto it", ("rebase", "-u", "-b", ZONED_IMAGE, "-F", "qcow2", "PLAIN")),
    ("open the overlay rebased onto it", ("info", "--backing-chain", "REBASED")),
    ("rebase (safe) onto it", ("rebase", "-b", ZONED_IMAGE, "-F", "qcow2", "PLAIN")),
    ("rebase it (safe) onto nothing", ("rebase", "-b", "", ZONED_IMAGE)),
    ("rebase -u it onto nothing", ("rebase", "-u", "-b", "", ZONED_IMAGE)),
    ("resize grow", ("resize", ZONED_IMAGE, "+1M")),
    ("resize --shrink", ("resize", "--shrink", ZONED_IMAGE, "-64K")),
    ("bitmap --add", ("bitmap", "--add", ZONED_IMAGE, "b0")),
    ("info", ("info", ZONED_IMAGE)),
    ("map", ("map", ZONED_IMAGE)),
    ("measure", ("measure", "-O", "qcow2", ZONED_IMAGE)),
)


@dataclass
class ZonedToolOutcome:
    step: str
    command: str
    exit_code: int
    unchanged: bool  # the zoned file is byte-identical afterwards
    message: str


def zoned_tool_outcomes(zoned_image: str, workdir: str) -> list[ZonedToolOutcome]:
    """Run every step of ZONED_TOOL_STEPS on (a fresh copy of) a zoned image."""
    outcomes = []
    for number, (step, template) in enumerate(ZONED_TOOL_STEPS):
        image = os.path.join(workdir, f"zoned-{number}.qcow2")
        with open(zoned_image, "rb") as src, open(image, "wb") as dst:
            dst.write(src.read())
        out = os.path.join(workdir, f"out-{number}")
        overlay = os.path.join(workdir, f"overlay-{number}.qcow2")
        plain = os.path.join(workdir, f"plain-{number}.qcow2")
        size = str(os.path.getsize(image))
        if "OVERLAY" in template:  # -u: made without opening the zoned backing file
            qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", image, "-F", "qcow2",
                     overlay, "4M")
        if "PLAIN" in template or "REBASED" in template:
            qemu.run("qemu-img", "create", "-q", "-f", "qcow2", plain, size)
        if "REBASED" in template:
            qemu.run("qemu-img", "rebase", "-u", "-b", image, "-F", "qcow2", plain)
        names = {ZONED_IMAGE: image, "OUT": out, "OVERLAY": overlay, "PLAIN": plain,
                 "REBASED": plain}
        args = [names.get(a, a) for a in template]
        before = digest(image)
        proc = qemu.run("qemu-img", *args, check=False)
        message = (proc.stderr or proc.stdout).strip().splitlines()
        outcomes.append(ZonedToolOutcome(
            step, "qemu-img " + " ".join(template), proc.returncode, digest(image) == before,
            message[0] if message else ""))
    return outcomes
