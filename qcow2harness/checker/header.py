"""Header and header-extension checks (HDR, EXT, CMP-header, CRYPT, DATA, BMP-1..4)."""

from __future__ import annotations

import struct
from collections import Counter

from qcow2harness.checker.report import Findings
from qcow2harness.errors import ParseError
from qcow2harness.image import ExtensionType, Image

# Implementation limits the registry adopts (HDR-5, HDR-17, HDR-19, HDR-21).
MAX_CLUSTER_BITS = 21
MIN_CLUSTER_BITS = 9
MAX_L1_BYTES = 32 * 1024 * 1024
MAX_REFTABLE_BYTES = 8 * 1024 * 1024
MAX_SNAPSHOTS = 65536
MAX_BACKING_NAME = 1023
KNOWN_INCOMPATIBLE_BITS = 0x3F  # dirty .. zoned (HDR-9)
KNOWN_AUTOCLEAR_BITS = 0x3
KNOWN_COMPATIBLE_BITS = 0x1
LEN_V2_HEADER = 72
MIN_LEN_V3_HEADER = 104
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
    if cluster_bits < MIN_CLUSTER_BITS:
        out.add("HDR-4", f"cluster_bits is {cluster_bits}, below {MIN_CLUSTER_BITS}", 20)
    elif cluster_bits > MAX_CLUSTER_BITS:
        out.add("HDR-5", f"cluster_bits is {cluster_bits}, above {MAX_CLUSTER_BITS}", 20)
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        # Every offset check depends on the cluster size: checking the rest with a
        # size no writer uses would only report consequences of HDR-4/HDR-5.
        return False
    cluster_size = image.cluster_size

    if image.version >= 3:
        len_header = image.len_header
        if len_header < MIN_LEN_V3_HEADER or len_header % 8:
            out.add("HDR-6", f"header_length {len_header} is below 104 or not a multiple of 8",
                    100)
        if len_header > cluster_size:
            out.add("HDR-7", f"header_length {len_header} exceeds the cluster size "
                    f"{cluster_size}", 100)
    header_end = image.len_header
    if image.file_size < header_end:
        out.add("HDR-3", f"the file has {image.file_size} bytes, the header declares "
                f"{header_end}", image.file_size)
        return False

    if image.version == 2:
        _check_v2_defaults(image, out, cluster_size)
    unknown = image.header.unknown_incompatible_features
    if unknown:
        out.add("HDR-9", f"unknown incompatible feature bits {unknown:#x}: a reader must "
                "refuse the image", 72)
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
    if image.refcount_order > 6:
        out.add("HDR-14", f"refcount_order {image.refcount_order} is above 6", 96)
    if image.version == 2 and header.crypt_method not in (0, 1):
        out.add("CRYPT-1", f"crypt_method {int(header.crypt_method)} is not valid in version 2",
                32)
    elif int(header.crypt_method) not in (0, 1, 2):
        out.add("CRYPT-1", f"unknown crypt_method {int(header.crypt_method)}", 32)
    elif int(header.crypt_method) == 1:
        out.add("CRYPT-6", "legacy AES encryption (crypt_method 1) is deprecated and weak", 32)

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
        return
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
    header = image.header
    virtual_size = int(header.virtual_size)
    entries_per_l2 = cluster_size // (16 if header.is_extended_l2 else 8)
    needed_l1 = -(-virtual_size // (cluster_size * entries_per_l2))
    num_l1 = int(header.num_l1_entries)
    if num_l1 < needed_l1:
        out.add("HDR-16", f"l1_size {num_l1} cannot map the virtual size {virtual_size} "
                f"(needs {needed_l1})", 36)
    if num_l1 * 8 > MAX_L1_BYTES:
        out.add("HDR-17", f"l1_size {num_l1} makes the L1 table larger than 32 MiB", 36)
    ofs_l1 = int(header.ofs_l1_table)
    if num_l1 and (ofs_l1 % cluster_size or ofs_l1 == 0
                   or ofs_l1 + num_l1 * 8 > image.file_size):
        out.add("HDR-15", f"L1 table at {ofs_l1:#x} ({num_l1} entries) is not cluster-aligned "
                "or not inside the file", 40)

    reftable_bytes = int(header.num_refcount_table_clusters) * cluster_size
    ofs_reftable = int(header.ofs_refcount_table)
    if reftable_bytes > MAX_REFTABLE_BYTES:
        out.add("HDR-19", f"refcount table of {reftable_bytes} bytes exceeds 8 MiB", 56)
    if (ofs_reftable % cluster_size or ofs_reftable == 0 or reftable_bytes == 0
            or ofs_reftable + reftable_bytes > image.file_size):
        out.add("HDR-18", f"refcount table at {ofs_reftable:#x} ({reftable_bytes} bytes) is "
                "not cluster-aligned, empty, or not inside the file", 48)

    num_snapshots = int(header.num_snapshots)
    if num_snapshots > MAX_SNAPSHOTS:
        out.add("HDR-21", f"nb_snapshots {num_snapshots} exceeds {MAX_SNAPSHOTS}", 60)
    ofs_snapshots = int(header.ofs_snapshot_table)
    if num_snapshots and (ofs_snapshots % cluster_size or ofs_snapshots == 0
                          or ofs_snapshots >= image.file_size):
        out.add("HDR-20", f"snapshot table at {ofs_snapshots:#x} is not cluster-aligned or "
                "not inside the file", 64)


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
    try:
        extensions = image.extensions()
    except ParseError as error:
        # The image model tells a record running past cluster 0 (EXT-2) from a list
        # without an end marker (EXT-1).
        out.add(error.clause or "EXT-1", f"header extension list: {error.message}",
                error.offset)
        return False
    cluster_size = image.cluster_size
    seen: Counter[int] = Counter()
    end_of_area = image.len_header
    for ext in extensions:
        seen[ext.magic] += 1
        end_of_area = ext.offset + 8 + ext.length + (-ext.length % 8)
        if ext.is_known and seen[ext.magic] == 2:
            out.add("EXT-3", f"{ext.name} extension appears more than once", ext.offset)
        if not ext.is_known:
            out.add("EXT-4", f"unknown extension {ext.magic:#010x} ({ext.length} bytes) "
                    "ignored", ext.offset)
        expected = FIXED_EXTENSION_LENGTH.get(ExtensionType(ext.magic) if ext.is_known else -1)
        if expected is not None and ext.length != expected:
            clause = EXTENSION_LENGTH_CLAUSE[ExtensionType(ext.magic)]
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
    # The end marker itself takes 8 bytes.
    if end_of_area + 8 > cluster_size:
        out.add("EXT-2", "header extensions run past the first cluster", end_of_area)
    _check_backing(image, out, end_of_area + 8)
    _check_feature_extensions(image, out)
    return True


def _check_backing(image: Image, out: Findings, extension_area_end: int) -> None:
    header = image.header
    has_backing = header.ofs_backing_file_name != 0
    if has_backing:
        offset = int(header.ofs_backing_file_name)
        length = int(header.len_backing_file_name)
        if (length > MAX_BACKING_NAME or offset < extension_area_end
                or offset + length > image.cluster_size or offset + length > image.file_size):
            out.add("HDR-24", f"backing file name at {offset:#x}, {length} bytes, is longer "
                    "than 1023 bytes or not between the extensions and the end of cluster 0",
                    8)
    backing_format = image.extension(ExtensionType.backing_file_format)
    if backing_format is not None:
        if not backing_format.length:
            out.add("EXT-5", "backing format name is empty", backing_format.offset)
        elif b"\0" in bytes(backing_format.body.value):
            out.add("EXT-5", "backing format name has a NUL byte inside its length",
                    backing_format.offset + 8 + bytes(backing_format.body.value).index(b"\0"))
        if not has_backing:
            out.add("EXT-6", "backing format extension without a backing file",
                    backing_format.offset)
    if has_backing and header.is_data_file_raw:
        out.add("DATA-4", "data_file_raw set on an image with a backing file", 88)


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
    if data_file is not None and data_file.length == 0:
        out.add("DATA-2", "external data file name is empty", data_file.offset)
    elif data_file is not None and b"\0" in bytes(data_file.body.value):
        out.add("DATA-2", "external data file name has a NUL byte inside its length",
                data_file.offset + 8 + bytes(data_file.body.value).index(b"\0"))
    if header.is_data_file_raw and not header.has_external_data_file:
        out.add("DATA-3", "data_file_raw set without an external data file", 88)
    if header.has_external_data_file and int(header.num_snapshots):
        out.add("DATA-7", "internal snapshots in an image with an external data file", 60)
