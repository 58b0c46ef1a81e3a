meta:
  id: qcow2_bitmaps
  title: qcow2 bitmaps header extension, bitmap directory and bitmap tables
  application: QEMU (persistent dirty bitmaps)
  license: CC0-1.0
  endian: be
doc: |
  Body of the qcow2 header extension with magic 0x23852875. The directory and
  tables it points at are reached from the main qcow2 description through the
  extension's `bitmap_directory` instance, which passes the file stream.
  Sample images: `qemu-img bitmap --add` on any qcow2 v3 image.
doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmaps-extension
seq:
  - id: num_bitmaps
    type: u4
    doc: Number of bitmaps in the directory; at least 1.
    doc-ref: spec/SPEC.md BMP-3
    -orig-id: nb_bitmaps
  - id: reserved
    type: u4
    doc: Must be zero.
    doc-ref: spec/SPEC.md BMP-3
  - id: len_bitmap_directory
    type: u8
    doc: Size of the bitmap directory in bytes.
    doc-ref: spec/SPEC.md BMP-4
    -orig-id: bitmap_directory_size
  - id: ofs_bitmap_directory
    type: u8
    doc: Cluster-aligned image file offset of the bitmap directory.
    doc-ref: spec/SPEC.md BMP-5
    -orig-id: bitmap_directory_offset
types:
  bitmap_directory:
    doc: All bitmap directory entries, back to back.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory
    params:
      - id: file_io
        type: io
        doc: The image file stream, where the bitmap tables are.
    seq:
      - id: entries
        type: bitmap_directory_entry
        repeat: eos
        doc: One entry per bitmap.
        doc-ref: spec/SPEC.md BMP-5
  bitmap_directory_entry:
    doc: One bitmap's directory entry, padded to a multiple of 8 bytes.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory
    seq:
      - id: ofs_bitmap_table
        type: u8
        doc: Cluster-aligned image file offset of this bitmap's table.
        doc-ref: spec/SPEC.md BMP-11
        -orig-id: bitmap_table_offset
      - id: num_bitmap_table_entries
        type: u4
        doc: Number of entries in the bitmap table.
        doc-ref: spec/SPEC.md BMP-11
        -orig-id: bitmap_table_size
      - id: flags
        type: u4
        doc: Bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible; others reserved.
        doc-ref: spec/SPEC.md BMP-6
      - id: bitmap_type
        type: u1
        doc: 1 = dirty tracking bitmap; no other type is defined.
        doc-ref: spec/SPEC.md BMP-6
        -orig-id: type
      - id: granularity_bits
        type: u1
        doc: Each bit covers 1 << granularity_bits bytes of the guest disk.
        doc-ref: spec/SPEC.md BMP-7
      - id: len_name
        type: u2
        doc: Length of the name in bytes, without a terminator.
        doc-ref: spec/SPEC.md BMP-8
        -orig-id: name_size
      - id: len_extra_data
        type: u4
        doc: Size of the extra data that follows.
        doc-ref: spec/SPEC.md BMP-10
        -orig-id: extra_data_size
      - id: extra_data
        size: len_extra_data
        doc: Extra data; none is defined yet.
        doc-ref: spec/SPEC.md BMP-10
      - id: name
        size: len_name
        doc: Bitmap name, UTF-8 by convention, not NUL-terminated.
        doc-ref: spec/SPEC.md BMP-8
      - id: padding
        size: (8 - (24 + len_extra_data + len_name) % 8) % 8
        doc: Pads the entry to a multiple of 8 bytes.
        doc-ref: spec/SPEC.md BMP-9
    instances:
      is_in_use:
        value: flags & 1 != 0
        doc: The bitmap was not saved cleanly and must not be trusted.
        doc-ref: spec/SPEC.md BMP-6
      is_auto:
        value: flags & 2 != 0
        doc: The bitmap tracks guest writes.
        doc-ref: spec/SPEC.md BMP-6
      reserved_flags:
        value: flags & 0xfffffff8
        doc: Unknown flag bits; must be zero.
        doc-ref: spec/SPEC.md BMP-6
      bitmap_table:
        io: _parent.file_io
        pos: ofs_bitmap_table
        size: num_bitmap_table_entries * 8
        type: bitmap_table
        if: ofs_bitmap_table != 0
        doc: This bitmap's table, read from the image file.
        doc-ref: spec/SPEC.md BMP-11
  bitmap_table:
    doc: Bitmap table; each entry points at one cluster of bitmap data.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table
    seq:
      - id: entries
        type: bitmap_table_entry
        repeat: eos
        doc: Entries in guest order.
        doc-ref: spec/SPEC.md BMP-12
  bitmap_table_entry:
    doc: One bitmap table entry.
    doc-ref: https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table
    seq:
      - id: raw
        type: u8
        doc: The entry as stored.
        doc-ref: spec/SPEC.md BMP-12
    instances:
      ofs_bitmap_data:
        value: raw & 0x00fffffffffffe00
        doc: Bits 9-55, cluster offset of the bitmap data; 0 = not allocated.
        doc-ref: spec/SPEC.md BMP-12
      is_all_ones:
        value: raw & 1 == 1
        doc: Bit 0, when the offset is 0, says the cluster reads as all ones.
        doc-ref: spec/SPEC.md BMP-12
      reserved_bits:
        value: raw & 0xff000000000001fe
        doc: Bits 1-8 and 56-63; must be zero.
        doc-ref: spec/SPEC.md BMP-13
