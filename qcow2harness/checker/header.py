"""Header and header-extension checks (HDR, EXT, CMP-header, CRYPT, DATA, BMP-1..4)."""

from __future__ import annotations

import struct
from collections import Counter

from qcow2harness.checker.report import Findings
from qcow2harness.image import ExtensionType, Image
from qcow2harness.structure import (
    KNOWN_INCOMPATIBLE_BITS,
    MIN_LEN_V3_HEADER,
    Problem,
    chain_problems,
    cluster_bits_problems,
    extension_problems,
    feature_problems,
    header_length_problems,
    l1_table_problems,
    refcount_order_problems,
    refcount_table_problems,
    snapshot_table_problems,
)

KNOWN_AUTOCLEAR_BITS = 0x3
KNOWN_COMPATIBLE_BITS = 0x1
LEN_V2_HEADER = 72
# Smallest valid body of each fixed-size extension (ZONE-3, BMP-3, CRYPT-3).
FIXED_EXTENSION_LENGTH = {
    ExtensionType.zoned: 56,
    ExtensionType.bitmaps: 24,
    ExtensionType.full_disk_encryption: 16,
}
EXTENSION_LENGTH_CLAUSE = {
    ExtensionType.zoned: "ZONE-3",
    ExtensionType.bitmaps: "BMP-3",
    ExtensionType.full_disk_encryption: "CRYPT-3",
}
FEATURE_NAME_ENTRY = 48


def check_header(image: Image, out: Findings) -> bool:
    """Check the fixed header. Returns False when no structure can be located."""
    header = image.header
    cluster_bits = image.cluster_bits
    if _report(out, cluster_bits_problems(cluster_bits)):
        # Every offset check depends on the cluster size: checking the rest with a
        # size no writer uses would only report consequences of HDR-4/HDR-5.
        return False
    cluster_size = image.cluster_size
    # HDR-6, HDR-7. (Its HDR-3 cannot arise here: Image.open refuses a file that ends
    # inside the header it declares.)
    _report(out, header_length_problems(image))

    if image.version == 2:
        _check_v2_defaults(image, out, cluster_size)
    _report(out, feature_problems(image))
    if image.version >= 3:
        if header.compatible_features & ~KNOWN_COMPATIBLE_BITS:
            out.add("HDR-10", f"unknown compatible feature bits "
                    f"{header.compatible_features & ~KNOWN_COMPATIBLE_BITS:#x}", 80)
        if header.autoclear_features & ~KNOWN_AUTOCLEAR_BITS:
            out.add("HDR-11", f"unknown autoclear feature bits "
                    f"{header.autoclear_features & ~KNOWN_AUTOCLEAR_BITS:#x}", 88)
    if header.is_dirty:
        out.add("HDR-12", "dirty bit set: stored refcounts may lag behind references", 72)
    if header.is_corrupt:
        out.add("HDR-13", "corrupt bit set: a writer found this image corrupt", 72)
    _report(out, refcount_order_problems(image))
    if image.version == 2 and header.crypt_method not in (0, 1):
        out.add("CRYPT-1", f"crypt_method {int(header.crypt_method)} is not valid in version 2",
                32)
    elif int(header.crypt_method) not in (0, 1, 2):
        out.add("CRYPT-1", f"unknown crypt_method {int(header.crypt_method)}", 32)
    elif int(header.crypt_method) == 1:
        out.add("CRYPT-6", "legacy AES encryption (crypt_method 1): valid, but no longer "
                "opened by QEMU's system emulators", 32)

    _check_tables(image, out, cluster_size)
    _check_compression(image, out)
    if header.is_extended_l2 and cluster_bits < 14:
        out.add("EL2-1", f"extended L2 entries need cluster_bits >= 14, not {cluster_bits}", 20)
    if image.version >= 3 and image.len_header > 105:
        padding = header.header_padding
        known_end = 105
        if any(padding[: min(len(padding), 112 - known_end)]):
            out.add("HDR-23", "header padding after compression_type is not zero", known_end)
    return True


def _check_v2_defaults(image: Image, out: Findings, cluster_size: int) -> None:
    """HDR-8: a version 2 header followed by a complete, consistent set of version 3 fields.

    A version 2 reader takes bytes 72-103 as the start of the extension area. When they
    read instead as version 3 fields that mean something (known feature bits only, at
    least one of them set or a refcount width other than 16 bits, a valid header_length),
    the image was written with version 3 features and then labelled version 2: every
    reader ignores those features and misreads what depends on them.
    """
    tail = image.pread(LEN_V2_HEADER, MIN_LEN_V3_HEADER - LEN_V2_HEADER)
    if len(tail) < MIN_LEN_V3_HEADER - LEN_V2_HEADER:
        return  # the file ends first
    incompatible, compatible, autoclear, refcount_order, len_header = struct.unpack(
        ">QQQII", tail)
    looks_v3 = (MIN_LEN_V3_HEADER <= len_header <= cluster_size and len_header % 8 == 0
                and refcount_order <= 6
                and not incompatible & ~KNOWN_INCOMPATIBLE_BITS
                and not compatible & ~KNOWN_COMPATIBLE_BITS
                and not autoclear & ~KNOWN_AUTOCLEAR_BITS)
    if looks_v3 and (incompatible or compatible or autoclear or refcount_order != 4):
        out.add("HDR-8", f"version 2 header, but bytes 72-103 hold version 3 fields "
                f"(incompatible {incompatible:#x}, compatible {compatible:#x}, autoclear "
                f"{autoclear:#x}, refcount_order {refcount_order}, header_length "
                f"{len_header}): features a version 2 reader ignores", 4)


def _check_tables(image: Image, out: Findings, cluster_size: int) -> None:
    _report(out, l1_table_problems(image))
    _report(out, refcount_table_problems(image))
    _report(out, snapshot_table_problems(image))


def _report(out: Findings, problems: list[Problem]) -> bool:
    """Add the shared structural problems (qcow2harness.structure) as findings."""
    for problem in problems:
        out.add(problem.clause, problem.message, problem.offset)
    return bool(problems)


def _check_compression(image: Image, out: Findings) -> None:
    header = image.header
    if image.version < 3:
        return
    compression = getattr(header, "compression_type", None)
    value = int(compression) if compression is not None else 0
    if value not in (0, 1):
        out.add("HDR-22", f"unknown compression_type {value}", 104)
    elif header.has_compression_type and value == 0:
        out.add("HDR-22", "compression type bit set but compression_type is 0 (deflate)", 104)
    elif not header.has_compression_type and value != 0:
        out.add("HDR-22", f"compression_type {value} without the compression type bit", 104)


def check_extensions(image: Image, out: Findings) -> bool:
    """Check the header extension list. Returns False when it cannot be read."""
    # The image model tells a record running past cluster 0 (EXT-2) from a list
    # without an end marker inside cluster 0 (EXT-1).
    if _report(out, extension_problems(image)):
        return False
    seen: Counter[int] = Counter()
    for ext in image.extensions():
        seen[ext.magic] += 1
        if ext.is_known and seen[ext.magic] == 2:
            out.add("EXT-3", f"{ext.name} extension appears more than once", ext.offset)
        if not ext.is_known:
            out.add("EXT-4", f"unknown extension {ext.magic:#010x} ({ext.length} bytes) "
                    "ignored", ext.offset)
        expected = FIXED_EXTENSION_LENGTH.get(ext.magic)  # IntEnum keys match the int
        if expected is not None and ext.length != expected:
            clause = EXTENSION_LENGTH_CLAUSE[ext.magic]
            out.add(clause, f"{ext.name} extension is {ext.length} bytes, not {expected}",
                    ext.offset + 4)
        if ext.magic == ExtensionType.feature_name_table and ext.length % FEATURE_NAME_ENTRY:
            out.add("EXT-7", f"feature name table length {ext.length} is not a multiple of "
                    f"{FEATURE_NAME_ENTRY}", ext.offset + 4)
        if ext.magic == ExtensionType.feature_name_table and ext.is_body_typed:
            for index, entry in enumerate(ext.body.entries):
                if int(entry.feature_type) > 2 or entry.bit > 63:
                    out.add("EXT-7", f"feature name entry {index} has type "
                            f"{int(entry.feature_type)} bit {entry.bit}",
                            ext.offset + 8 + index * FEATURE_NAME_ENTRY)
    _check_backing(image, out)
    _check_feature_extensions(image, out)
    return True


def _check_backing(image: Image, out: Findings) -> None:
    """HDR-24, EXT-5, DATA-4 and DATA-2 (qcow2harness.structure), in that order with
    EXT-6 after EXT-5."""
    chain = chain_problems(image)
    _report(out, [p for p in chain if p.clause in ("HDR-24", "EXT-5")])
    backing_format = image.extension(ExtensionType.backing_file_format)
    if backing_format is not None and image.header.ofs_backing_file_name == 0:
        out.add("EXT-6", "backing format extension without a backing file",
                backing_format.offset)
    _report(out, [p for p in chain if p.clause == "DATA-4"])


def _check_feature_extensions(image: Image, out: Findings) -> None:
    header = image.header
    bitmaps = image.extension(ExtensionType.bitmaps)
    if header.has_bitmaps and bitmaps is None:
        out.add("BMP-1", "autoclear bitmaps bit set without a bitmaps extension", 88)
    if bitmaps is not None and not header.has_bitmaps:
        out.add("BMP-2", "bitmaps extension present but the autoclear bit is clear: its data "
                "is inconsistent", bitmaps.offset)

    fde = image.extension(ExtensionType.full_disk_encryption)
    is_luks = int(header.crypt_method) == 2
    if is_luks != (fde is not None):
        out.add("CRYPT-2", "full disk encryption extension present iff crypt_method is LUKS: "
                f"crypt_method {int(header.crypt_method)}, extension "
                f"{'present' if fde else 'absent'}", fde.offset if fde else 32)

    data_file = image.extension(ExtensionType.external_data_file)
    if data_file is not None and not header.has_external_data_file:
        out.add("DATA-1", "external data file name without incompatible bit 2",
                data_file.offset)
    _report(out, [p for p in chain_problems(image) if p.clause == "DATA-2"])
    if header.is_data_file_raw and not header.has_external_data_file:
        out.add("DATA-3", "data_file_raw set without an external data file", 88)
    if header.has_external_data_file and int(header.num_snapshots):
        out.add("DATA-7", "internal snapshots in an image with an external data file", 60)
