meta:
  id: qcow2
  title: QEMU Copy-On-Write disk image, version 2 and 3, with the proposed zoned extension
  application: QEMU and other qcow2 readers and writers
  file-extension: qcow2
  xref:
    mime: application/x-qemu-disk
    wikidata: Q1052562
  license: CC0-1.0
  endian: be
  imports:
    - qcow2_zoned
    - qcow2_bitmaps
doc: |
  A qcow2 image is organised in clusters of 1 << cluster_bits bytes. The
  header sits in the first cluster, followed by header extensions. Every other
  structure (L1/L2 tables, refcount table and blocks, snapshot table, bitmap
  directory, zoned write-pointer table) is reached by an offset and is
  described here as a lazily parsed instance, so opening any image parses only
  the header.

  Hard invariants (magic, version) use `valid:`. Every other rule is left to
  the conformance checker (`qcow2-harness check`) so that parsing can go on
  and report everything; the rules are numbered clauses in spec/SPEC.md.

  Sample files: `qcow2-harness corpus build` makes them with qemu-img across
  its feature matrix, and zoned ones with the reference writer.
doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst
seq:
  - id: header
    type: header
    doc: The image header (72 bytes for v2, header_length bytes for v3).
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header
instances:
  cluster_size:
    value: 1 << header.cluster_bits
    doc: Cluster size in bytes. Only meaningful once cluster_bits is checked (HDR clauses).
    doc-ref: spec/SPEC.md HDR-4
  len_header:
    value: 'header.version >= 3 ? header.len_header : 72'
    doc: Effective header length; v2 headers are always 72 bytes.
    doc-ref: spec/SPEC.md HDR-6
  refcount_order:
    value: 'header.version >= 3 ? header.refcount_order : 4'
    doc: Effective refcount order; v2 images always use 16-bit refcounts.
    doc-ref: spec/SPEC.md HDR-14
  refcount_bits:
    value: 1 << refcount_order
    doc: Width of one refcount block entry in bits.
    doc-ref: spec/SPEC.md HDR-14
  len_l2_entry:
    value: 'header.is_extended_l2 ? 16 : 8'
    doc: Size of one L2 entry; 16 bytes with extended L2 entries.
    doc-ref: spec/SPEC.md EL2-1
  num_l2_entries:
    value: cluster_size / len_l2_entry
    doc: Entries per L2 table (an L2 table is one cluster).
    doc-ref: spec/SPEC.md HDR-16
  len_header_extension_area:
    value: '(cluster_size < _io.size ? cluster_size : _io.size) - len_header'
    doc: |
      Header extensions must fit in the first cluster; the area is clipped to
      the file so a short file reads as truncated, not as a huge request.
    doc-ref: spec/SPEC.md EXT-2
  header_extensions:
    pos: len_header
    size: len_header_extension_area
    type: header_extension_list
    doc: The header extension list, up to the end marker.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
  backing_file_name:
    pos: header.ofs_backing_file_name
    size: header.len_backing_file_name
    if: header.ofs_backing_file_name != 0
    doc: Backing file name bytes; not NUL-terminated, at most 1023 bytes.
    doc-ref: spec/SPEC.md HDR-24
  l1_table:
    pos: header.ofs_l1_table
    size: header.num_l1_entries * 8
    type: l1_table
    doc: The active L1 table.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
  refcount_table:
    pos: header.ofs_refcount_table
    size: header.num_refcount_table_clusters * cluster_size
    type: refcount_table
    doc: The refcount table, refcount_table_clusters clusters long.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
  snapshot_table:
    pos: header.ofs_snapshot_table
    type: snapshot_table_entry
    repeat: expr
    repeat-expr: header.num_snapshots
    if: header.num_snapshots > 0
    doc: Internal snapshot table entries, each padded to 8 bytes.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
types:
  header:
    doc: The qcow2 header. Fields from incompatible_features on exist in v3 only.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header
    seq:
      - id: magic
        contents: [0x51, 0x46, 0x49, 0xfb]
        doc: '"QFI\xfb".'
        doc-ref: spec/SPEC.md HDR-1
      - id: version
        type: u4
        valid:
          any-of: [2, 3]
        doc: Format version, 2 or 3.
        doc-ref: spec/SPEC.md HDR-2
      - id: ofs_backing_file_name
        type: u8
        doc: Image file offset of the backing file name; 0 = no backing file.
        doc-ref: spec/SPEC.md HDR-24
        -orig-id: backing_file_offset
      - id: len_backing_file_name
        type: u4
        doc: Length of the backing file name, at most 1023.
        doc-ref: spec/SPEC.md HDR-24
        -orig-id: backing_file_size
      - id: cluster_bits
        type: u4
        doc: log2 of the cluster size; at least 9 (QEMU accepts at most 21).
        doc-ref: spec/SPEC.md HDR-4
      - id: virtual_size
        type: u8
        doc: Guest-visible disk size in bytes.
        doc-ref: spec/SPEC.md HDR-16
        -orig-id: size
      - id: crypt_method
        type: u4
        enum: crypt_method
        doc: 0 none, 1 AES (legacy), 2 LUKS.
        doc-ref: spec/SPEC.md CRYPT-1
      - id: num_l1_entries
        type: u4
        doc: Number of entries in the active L1 table.
        doc-ref: spec/SPEC.md HDR-16
        -orig-id: l1_size
      - id: ofs_l1_table
        type: u8
        doc: Cluster-aligned image file offset of the active L1 table.
        doc-ref: spec/SPEC.md HDR-15
        -orig-id: l1_table_offset
      - id: ofs_refcount_table
        type: u8
        doc: Cluster-aligned image file offset of the refcount table.
        doc-ref: spec/SPEC.md HDR-18
        -orig-id: refcount_table_offset
      - id: num_refcount_table_clusters
        type: u4
        doc: Number of clusters the refcount table occupies.
        doc-ref: spec/SPEC.md HDR-19
        -orig-id: refcount_table_clusters
      - id: num_snapshots
        type: u4
        doc: Number of internal snapshots.
        doc-ref: spec/SPEC.md HDR-21
        -orig-id: nb_snapshots
      - id: ofs_snapshot_table
        type: u8
        doc: Cluster-aligned image file offset of the snapshot table.
        doc-ref: spec/SPEC.md HDR-20
        -orig-id: snapshots_offset
      - id: incompatible_features
        type: u8
        if: version >= 3
        doc: Incompatible feature bits; an unknown set bit means refuse the image.
        doc-ref: spec/SPEC.md HDR-9
      - id: compatible_features
        type: u8
        if: version >= 3
        doc: Compatible feature bits; unknown bits may be ignored.
        doc-ref: spec/SPEC.md HDR-10
      - id: autoclear_features
        type: u8
        if: version >= 3
        doc: Autoclear feature bits; a writer clears the bits it does not know.
        doc-ref: spec/SPEC.md HDR-11
      - id: refcount_order
        type: u4
        if: version >= 3
        doc: refcount_bits = 1 << refcount_order; at most 6.
        doc-ref: spec/SPEC.md HDR-14
      - id: len_header
        type: u4
        if: version >= 3
        doc: Header length in bytes; at least 104 and a multiple of 8.
        doc-ref: spec/SPEC.md HDR-6
        -orig-id: header_length
      - id: compression_type
        type: u1
        enum: compression_type
        if: version >= 3 and len_header > 104
        doc: Compression type of compressed clusters; present when header_length > 104.
        doc-ref: spec/SPEC.md HDR-22
      - id: header_padding
        size: len_header - 105
        if: version >= 3 and len_header > 105
        doc: Padding and unknown additional fields up to header_length.
        doc-ref: spec/SPEC.md HDR-23
    instances:
      is_dirty:
        value: version >= 3 and incompatible_features & 1 != 0
        doc: Incompatible bit 0, refcounts may be inconsistent (lazy refcounts).
        doc-ref: spec/SPEC.md HDR-12
      is_corrupt:
        value: version >= 3 and incompatible_features & 2 != 0
        doc: Incompatible bit 1, the image is known to be corrupt.
        doc-ref: spec/SPEC.md HDR-13
      has_external_data_file:
        value: version >= 3 and incompatible_features & 4 != 0
        doc: Incompatible bit 2, guest data lives in an external data file.
        doc-ref: spec/SPEC.md DATA-1
      has_compression_type:
        value: version >= 3 and incompatible_features & 8 != 0
        doc: Incompatible bit 3, compression_type is present and non-zero.
        doc-ref: spec/SPEC.md HDR-22
      is_extended_l2:
        value: version >= 3 and incompatible_features & 16 != 0
        doc: Incompatible bit 4, L2 entries are 128 bits with subcluster bitmaps.
        doc-ref: spec/SPEC.md EL2-1
      is_zoned:
        value: version >= 3 and incompatible_features & 32 != 0
        doc: Incompatible bit 5 (proposed), the zoned extension is present.
        doc-ref: spec/SPEC.md ZONE-1
      unknown_incompatible_features:
        value: 'version >= 3 ? incompatible_features & 0xffffffffffffffc0 : 0'
        doc: Incompatible bits 6-63, which no implementation knows.
        doc-ref: spec/SPEC.md HDR-9
      has_lazy_refcounts:
        value: version >= 3 and compatible_features & 1 != 0
        doc: Compatible bit 0, refcount updates may be postponed.
        doc-ref: spec/SPEC.md HDR-12
      has_bitmaps:
        value: version >= 3 and autoclear_features & 1 != 0
        doc: Autoclear bit 0, the bitmaps extension is consistent.
        doc-ref: spec/SPEC.md BMP-1
      is_data_file_raw:
        value: version >= 3 and autoclear_features & 2 != 0
        doc: Autoclear bit 1, the external data file is a valid raw image.
        doc-ref: spec/SPEC.md DATA-3
  header_extension_list:
    doc: Header extensions, each padded to 8 bytes, ended by magic 0.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
    seq:
      - id: entries
        type: header_extension
        repeat: until
        repeat-until: _.magic == header_extension_type::end
        doc: The extensions in file order; the last one is the end marker.
        doc-ref: spec/SPEC.md EXT-1
  header_extension:
    doc: |
      One header extension. The body is typed by magic when it is long enough
      for that type; a short known extension and any unknown magic stay raw.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
    seq:
      - id: magic
        type: u4
        enum: header_extension_type
        doc: Extension type; unknown values are kept and ignored.
        doc-ref: spec/SPEC.md EXT-4
      - id: len_body
        type: u4
        doc: Length of the extension data, without padding.
        doc-ref: spec/SPEC.md EXT-1
        -orig-id: length
      - id: body
        size: len_body
        type:
          switch-on: 'len_body >= len_body_min ? magic : header_extension_type::end'
          cases:
            header_extension_type::backing_file_format: string_body
            header_extension_type::external_data_file: string_body
            header_extension_type::feature_name_table: feature_name_table
            header_extension_type::bitmaps: qcow2_bitmaps
            header_extension_type::full_disk_encryption: full_disk_encryption_pointer
            header_extension_type::zoned: qcow2_zoned
        doc: Extension data, typed by magic.
        doc-ref: spec/SPEC.md EXT-1
        -orig-id: data
      - id: padding
        size: (8 - len_body % 8) % 8
        doc: Pads the extension to a multiple of 8 bytes.
        doc-ref: spec/SPEC.md EXT-1
    instances:
      len_body_min:
        value: |
          magic == header_extension_type::zoned ? 56 :
          magic == header_extension_type::bitmaps ? 24 :
          magic == header_extension_type::full_disk_encryption ? 16 : 0
        doc: Smallest body that can be decoded as this extension type.
        doc-ref: spec/SPEC.md EXT-1
      is_body_typed:
        value: len_body >= len_body_min
        doc: True when the body was decoded by type (false for a short known extension).
        doc-ref: spec/SPEC.md EXT-1
      zonedmeta:
        io: _root._io
        pos: body.as<qcow2_zoned>.ofs_zonedmeta
        size: body.as<qcow2_zoned>.num_zones * 8
        type: qcow2_zoned::zonedmeta_table(body.as<qcow2_zoned>.num_zones)
        if: magic == header_extension_type::zoned and is_body_typed
        doc: The zoned write-pointer table (zonedmeta).
        doc-ref: spec/SPEC.md WP-1
      bitmap_directory:
        io: _root._io
        pos: body.as<qcow2_bitmaps>.ofs_bitmap_directory
        size: body.as<qcow2_bitmaps>.len_bitmap_directory
        type: qcow2_bitmaps::bitmap_directory(_root._io)
        if: magic == header_extension_type::bitmaps and is_body_typed
        doc: The bitmap directory.
        doc-ref: spec/SPEC.md BMP-5
      crypt_header:
        io: _root._io
        pos: body.as<full_disk_encryption_pointer>.ofs_crypt_header
        size: body.as<full_disk_encryption_pointer>.len_crypt_header
        if: magic == header_extension_type::full_disk_encryption and is_body_typed
        doc: The encryption (LUKS) header bytes.
        doc-ref: spec/SPEC.md CRYPT-3
  string_body:
    doc: A string extension; its length is the extension length, no terminator.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#string-header-extensions
    seq:
      - id: value
        size-eos: true
        doc: The string bytes (backing format or external data file name).
        doc-ref: spec/SPEC.md EXT-5
  feature_name_table:
    doc: Names for feature bits, for tools that do not know them.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table
    seq:
      - id: entries
        type: feature_name
        repeat: expr
        repeat-expr: _io.size / 48
        doc: One 48-byte entry per named feature.
        doc-ref: spec/SPEC.md EXT-7
  feature_name:
    doc: One feature name table entry.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table
    seq:
      - id: feature_type
        type: u1
        enum: feature_type
        doc: Which feature bitmap the bit is in.
        doc-ref: spec/SPEC.md EXT-7
        -orig-id: type
      - id: bit
        type: u1
        doc: Bit number, 0-63.
        doc-ref: spec/SPEC.md EXT-7
      - id: name
        size: 46
        doc: Feature name, zero-padded, not always NUL-terminated.
        doc-ref: spec/SPEC.md EXT-7
  full_disk_encryption_pointer:
    doc: Where the encryption header is in the image file.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#full-disk-encryption-header-pointer
    seq:
      - id: ofs_crypt_header
        type: u8
        doc: Cluster-aligned offset of the encryption header.
        doc-ref: spec/SPEC.md CRYPT-3
        -orig-id: offset
      - id: len_crypt_header
        type: u8
        doc: Length of the encryption header in bytes.
        doc-ref: spec/SPEC.md CRYPT-3
        -orig-id: length
  l1_table:
    doc: An L1 table (active or a snapshot's).
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
    seq:
      - id: entries
        type: l1_entry
        repeat: eos
        doc: One entry per L2 table's worth of guest clusters.
        doc-ref: spec/SPEC.md L1-2
  l1_entry:
    doc: An L1 entry; points at an L2 table.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
    seq:
      - id: raw
        type: u8
        doc: The entry as stored.
        doc-ref: spec/SPEC.md L1-1
    instances:
      ofs_l2_table:
        value: raw & 0x00fffffffffffe00
        doc: Bits 9-55, L2 table offset; 0 = unallocated.
        doc-ref: spec/SPEC.md L1-2
      is_copied:
        value: raw >> 63 == 1
        doc: Bit 63, set iff the L2 table's refcount is exactly 1.
        doc-ref: spec/SPEC.md L1-3
      reserved_bits:
        value: raw & 0x7f000000000001ff
        doc: Bits 0-8 and 56-62; must be zero.
        doc-ref: spec/SPEC.md L1-1
      l2_table:
        io: _root._io
        pos: ofs_l2_table
        size: _root.cluster_size
        type: l2_table
        if: ofs_l2_table != 0
        doc: The L2 table this entry points at.
        doc-ref: spec/SPEC.md L1-2
  l2_table:
    doc: An L2 table, one cluster of L2 entries.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
    seq:
      - id: entries
        type: l2_entry
        repeat: eos
        doc: One entry per guest cluster.
        doc-ref: spec/SPEC.md L2-6
  l2_entry:
    doc: |
      An L2 entry: a standard or compressed cluster descriptor, followed by a
      subcluster bitmap when the image has extended L2 entries.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
    seq:
      - id: raw
        type: u8
        doc: The cluster descriptor as stored.
        doc-ref: spec/SPEC.md L2-6
      - id: subcluster_bitmap
        type: u8
        if: _root.header.is_extended_l2
        doc: Bits 0-31 allocated, bits 32-63 reads-as-zero, one bit per subcluster.
        doc-ref: spec/SPEC.md EL2-3
    instances:
      is_copied:
        value: raw >> 63 == 1
        doc: Bit 63, set iff the data cluster's refcount is exactly 1.
        doc-ref: spec/SPEC.md L2-3
      is_compressed:
        value: (raw >> 62) & 1 == 1
        doc: Bit 62, the descriptor is a compressed cluster descriptor.
        doc-ref: spec/SPEC.md CMP-1
      is_zero:
        value: not is_compressed and raw & 1 == 1
        doc: Bit 0 of a standard descriptor, the cluster reads as zeros.
        doc-ref: spec/SPEC.md L2-4
      ofs_host_cluster:
        value: 'is_compressed ? 0 : raw & 0x00fffffffffffe00'
        doc: Bits 9-55 of a standard descriptor, host cluster offset; 0 = unallocated.
        doc-ref: spec/SPEC.md L2-2
      reserved_bits:
        value: 'is_compressed ? 0 : raw & 0x3f000000000001fe'
        doc: Bits 1-8 and 56-61 of a standard descriptor; must be zero.
        doc-ref: spec/SPEC.md L2-1
      num_compressed_offset_bits:
        value: 62 - (_root.header.cluster_bits - 8)
        doc: Width x of the host offset field of a compressed descriptor.
        doc-ref: spec/SPEC.md CMP-1
      ofs_compressed_data:
        value: 'is_compressed ? raw & ((1 << num_compressed_offset_bits) - 1) : 0'
        doc: Bits 0 to x-1, host byte offset of the compressed data.
        doc-ref: spec/SPEC.md CMP-1
      num_compressed_sectors:
        value: |
          is_compressed ?
            ((raw >> num_compressed_offset_bits) & ((1 << (_root.header.cluster_bits - 8)) - 1)) + 1 : 0
        doc: Bits x to 61 plus one, 512-byte sectors holding the compressed data.
        doc-ref: spec/SPEC.md CMP-2
      allocated_subclusters:
        value: 'subcluster_bitmap & 0xffffffff'
        if: _root.header.is_extended_l2
        doc: Bitmap of subclusters with data in the host cluster.
        doc-ref: spec/SPEC.md EL2-3
      zero_subclusters:
        value: subcluster_bitmap >> 32
        if: _root.header.is_extended_l2
        doc: Bitmap of subclusters that read as zeros.
        doc-ref: spec/SPEC.md EL2-3
  refcount_table:
    doc: The refcount table; each entry points at a refcount block.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
    seq:
      - id: entries
        type: refcount_table_entry
        repeat: eos
        doc: One entry per refcount block's worth of host clusters.
        doc-ref: spec/SPEC.md RC-1
  refcount_table_entry:
    doc: A refcount table entry.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
    seq:
      - id: raw
        type: u8
        doc: The entry as stored.
        doc-ref: spec/SPEC.md RC-1
    instances:
      ofs_refcount_block:
        value: raw & 0xfffffffffffffe00
        doc: Bits 9-63, refcount block offset; 0 = not allocated.
        doc-ref: spec/SPEC.md RC-1
      reserved_bits:
        value: raw & 0x1ff
        doc: Bits 0-8; must be zero.
        doc-ref: spec/SPEC.md RC-1
      refcount_block:
        io: _root._io
        pos: ofs_refcount_block
        size: _root.cluster_size
        type: refcount_block
        if: ofs_refcount_block != 0
        doc: The refcount block this entry points at.
        doc-ref: spec/SPEC.md RC-2
  refcount_block:
    doc: |
      One cluster of refcounts, refcount_bits each. Sub-byte refcounts are
      packed least significant bit first.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
    seq:
      - id: entries
        type:
          switch-on: _root.refcount_order
          cases:
            0: refcount_1
            1: refcount_2
            2: refcount_4
            3: refcount_8
            4: refcount_16
            5: refcount_32
            6: refcount_64
        repeat: eos
        doc: Refcount of each host cluster this block covers.
        doc-ref: spec/SPEC.md RC-3
  refcount_1:
    doc: A 1-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: b1le
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_2:
    doc: A 2-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: b2le
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_4:
    doc: A 4-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: b4le
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_8:
    doc: An 8-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: u1
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_16:
    doc: A 16-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: u2
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_32:
    doc: A 32-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: u4
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  refcount_64:
    doc: A 64-bit refcount.
    doc-ref: spec/SPEC.md RC-3
    seq:
      - id: value
        type: u8
        doc: Reference count.
        doc-ref: spec/SPEC.md RC-3
  snapshot_table_entry:
    doc: One internal snapshot, padded to a multiple of 8 bytes.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
    seq:
      - id: ofs_l1_table
        type: u8
        doc: Cluster-aligned offset of the snapshot's L1 table.
        doc-ref: spec/SPEC.md SNAP-3
        -orig-id: l1_table_offset
      - id: num_l1_entries
        type: u4
        doc: Number of entries in the snapshot's L1 table.
        doc-ref: spec/SPEC.md SNAP-4
        -orig-id: l1_size
      - id: len_id_str
        type: u2
        doc: Length of the unique ID string.
        doc-ref: spec/SPEC.md SNAP-2
        -orig-id: id_str_size
      - id: len_name
        type: u2
        doc: Length of the name.
        doc-ref: spec/SPEC.md SNAP-2
        -orig-id: name_size
      - id: date_sec
        type: u4
        doc: Creation time, seconds since the epoch.
        doc-ref: spec/SPEC.md SNAP-1
      - id: date_nsec
        type: u4
        doc: Creation time, nanoseconds part.
        doc-ref: spec/SPEC.md SNAP-1
      - id: vm_clock_nsec
        type: u8
        doc: Guest clock at snapshot time, in nanoseconds.
        doc-ref: spec/SPEC.md SNAP-1
      - id: len_vm_state_32
        type: u4
        doc: Size of saved VM state; see len_vm_state_64 in the extra data.
        doc-ref: spec/SPEC.md SNAP-5
        -orig-id: vm_state_size
      - id: len_extra_data
        type: u4
        doc: Size of the extra data; at least 16 for images written by QEMU >= 5.0.
        doc-ref: spec/SPEC.md SNAP-6
        -orig-id: extra_data_size
      - id: extra_data
        size: len_extra_data
        type: snapshot_extra_data
        doc: Optional extra fields, known by length.
        doc-ref: spec/SPEC.md SNAP-5
      - id: id_str
        size: len_id_str
        doc: Unique ID string, not NUL-terminated.
        doc-ref: spec/SPEC.md SNAP-2
      - id: name
        size: len_name
        doc: Snapshot name, not NUL-terminated.
        doc-ref: spec/SPEC.md SNAP-2
      - id: padding
        size: (8 - (40 + len_extra_data + len_id_str + len_name) % 8) % 8
        doc: Pads the entry to a multiple of 8 bytes.
        doc-ref: spec/SPEC.md SNAP-2
    instances:
      l1_table:
        io: _root._io
        pos: ofs_l1_table
        size: num_l1_entries * 8
        type: l1_table
        doc: The snapshot's L1 table.
        doc-ref: spec/SPEC.md SNAP-7
  snapshot_extra_data:
    doc: Snapshot extra data; fields are present when the extra data is long enough.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
    seq:
      - id: len_vm_state_64
        type: u8
        if: _io.size >= 8
        doc: Size of the saved VM state (64-bit).
        doc-ref: spec/SPEC.md SNAP-5
        -orig-id: vm_state_size_large
      - id: disk_size
        type: u8
        if: _io.size >= 16
        doc: Virtual disk size at snapshot time.
        doc-ref: spec/SPEC.md SNAP-5
      - id: icount
        type: u8
        if: _io.size >= 24
        doc: Instruction count at snapshot time, or -1 when not recorded.
        doc-ref: spec/SPEC.md SNAP-5
      - id: unknown
        size-eos: true
        doc: Extra data this description does not know; must be preserved.
        doc-ref: spec/SPEC.md SNAP-6
enums:
  crypt_method:
    0: none
    1: aes
    2: luks
  compression_type:
    0: deflate
    1: zstd
  header_extension_type:
    0x00000000: end
    0xe2792aca: backing_file_format
    0x6803f857: feature_name_table
    0x23852875: bitmaps
    0x0537be77: full_disk_encryption
    0x44415441: external_data_file
    0x007a6264: zoned
  feature_type:
    0: incompatible
    1: compatible
    2: autoclear
