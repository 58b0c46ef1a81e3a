meta:
  id: qcow2_zoned
  title: qcow2 zoned header extension (proposed, v10 layout)
  application: QEMU qcow2 driver with the zoned storage emulation series
  xref:
    wikidata: Q1052562
  license: CC0-1.0
  endian: be
doc: |
  Body of the qcow2 header extension with magic 0x007a6264 ("zbd"), as laid
  out in v10 of the series "Add full zoned storage emulation to qcow2 driver"
  (qemu-devel, May 2026; not merged). The extension is present if and only if
  incompatible feature bit 5 is set. All numbers are big-endian, the zonedmeta
  table included (our clause WP-2 resolves the posted code's host-endian
  table as non-conformant).

  Sample images: `qcow2-harness corpus build` writes zoned images made by the
  reference writer.
doc-ref: spec/SPEC.md ZONE-1
seq:
  - id: zoned_model
    type: u1
    enum: zoned_model
    doc: 1 = host-managed zoned device. 0 = not zoned, and the rest is ignored.
    doc-ref: spec/SPEC.md ZONE-4
    -orig-id: zoned
  - id: reserved
    size: 3
    doc: Must be zero.
    doc-ref: spec/SPEC.md ZONE-5
  - id: zone_size
    type: u8
    doc: Size of every zone in bytes; a non-zero power of two.
    doc-ref: spec/SPEC.md ZONE-6
  - id: zone_capacity
    type: u8
    doc: |
      Writable bytes at the start of each zone, at most zone_size. Bytes from
      capacity to size read as zeros and cannot be written.
    doc-ref: spec/SPEC.md ZONE-7
  - id: num_conventional_zones
    type: u4
    doc: Number of conventional (randomly writable) zones; they come first.
    doc-ref: spec/SPEC.md ZONE-11
    -orig-id: conventional_zones
  - id: num_zones
    type: u4
    doc: Total number of zones, ceil(virtual size / zone_size).
    doc-ref: spec/SPEC.md ZONE-9
    -orig-id: nr_zones
  - id: max_active_zones
    type: u4
    doc: Limit on implicit open + explicit open + closed zones; 0 = no limit.
    doc-ref: spec/SPEC.md ZONE-14
  - id: max_open_zones
    type: u4
    doc: Limit on implicit open + explicit open zones; 0 = no limit.
    doc-ref: spec/SPEC.md ZONE-12
  - id: max_append_bytes
    type: u4
    doc: Largest zone append in bytes; 512-aligned and below zone_capacity.
    doc-ref: spec/SPEC.md ZONE-16
  - id: len_zonedmeta
    type: u8
    doc: Size in bytes of the write-pointer table, 8 * num_zones.
    doc-ref: spec/SPEC.md ZONE-18
    -orig-id: zonedmeta_size
  - id: ofs_zonedmeta
    type: u8
    doc: Image file offset of the write-pointer table (refcounted metadata).
    doc-ref: spec/SPEC.md ZONE-19
    -orig-id: zonedmeta_offset
instances:
  is_host_managed:
    value: zoned_model == zoned_model::host_managed
    doc: True when the image emulates a host-managed zoned device.
    doc-ref: spec/SPEC.md ZONE-4
  num_sequential_zones:
    value: 'num_zones > num_conventional_zones ? num_zones - num_conventional_zones : 0'
    doc: Zones that have a write pointer.
    doc-ref: spec/SPEC.md ZONE-12
types:
  zonedmeta_table:
    doc: |
      The write-pointer table: one entry per zone, in zone order. Reach it
      through the header extension's `zonedmeta` instance, which passes the
      number of zones.
    doc-ref: spec/SPEC.md WP-1
    params:
      - id: num_entries
        type: u4
        doc: Number of zones (num_zones of the extension).
    seq:
      - id: entries
        type: zonedmeta_entry
        repeat: expr
        repeat-expr: num_entries
        doc: One write-pointer entry per zone.
        doc-ref: spec/SPEC.md WP-1
  zonedmeta_entry:
    doc: |
      Absolute image byte offset of a zone's write pointer. Bit 59 marks a
      conventional zone, whose entry is zone_start | 1 << 59. Bits 59-63 are
      not part of the offset.
    doc-ref: spec/SPEC.md WP-1
    seq:
      - id: raw
        type: u8
        doc: The entry as stored.
        doc-ref: spec/SPEC.md WP-1
    instances:
      write_pointer:
        value: raw & 0x07ffffffffffffff
        doc: Bits 0-58, the write pointer (or zone start for a conventional zone).
        doc-ref: spec/SPEC.md WP-6
      is_conventional:
        value: (raw >> 59) & 1 == 1
        doc: Bit 59, set on exactly the first num_conventional_zones entries.
        doc-ref: spec/SPEC.md WP-4
      reserved_bits:
        value: raw >> 60
        doc: Bits 60-63; must be zero (v5/v6 drafts kept state here).
        doc-ref: spec/SPEC.md WP-3
enums:
  zoned_model:
    0: not_zoned
    1: host_managed
