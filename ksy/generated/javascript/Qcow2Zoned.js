// This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild

(function (root, factory) {
  if (typeof define === 'function' && define.amd) {
    define(['exports', 'kaitai-struct/KaitaiStream'], factory);
  } else if (typeof exports === 'object' && exports !== null && typeof exports.nodeType !== 'number') {
    factory(exports, require('kaitai-struct/KaitaiStream'));
  } else {
    factory(root.Qcow2Zoned || (root.Qcow2Zoned = {}), root.KaitaiStream);
  }
})(typeof self !== 'undefined' ? self : this, function (Qcow2Zoned_, KaitaiStream) {
/**
 * Body of the qcow2 header extension with magic 0x007a6264 ("zbd"), as laid
 * out in v10 of the series "Add full zoned storage emulation to qcow2 driver"
 * (qemu-devel, May 2026; not merged). The extension is present if and only if
 * incompatible feature bit 5 is set. All numbers are big-endian, the zonedmeta
 * table included (our clause WP-2 resolves the posted code's host-endian
 * table as non-conformant).
 * 
 * Sample images: `qcow2-harness corpus build` writes zoned images made by the
 * reference writer.
 * @see spec/SPEC.md ZONE-1
 */

var Qcow2Zoned = (function() {
  Qcow2Zoned.ZonedModel = Object.freeze({
    NOT_ZONED: 0,
    HOST_MANAGED: 1,

    0: "NOT_ZONED",
    1: "HOST_MANAGED",
  });

  function Qcow2Zoned(_io, _parent, _root) {
    this._io = _io;
    this._parent = _parent;
    this._root = _root || this;

    this._read();
  }
  Qcow2Zoned.prototype._read = function() {
    this.zonedModel = this._io.readU1();
    this.reserved = this._io.readBytes(3);
    this.zoneSize = this._io.readU8be();
    this.zoneCapacity = this._io.readU8be();
    this.numConventionalZones = this._io.readU4be();
    this.numZones = this._io.readU4be();
    this.maxActiveZones = this._io.readU4be();
    this.maxOpenZones = this._io.readU4be();
    this.maxAppendBytes = this._io.readU4be();
    this.lenZonedmeta = this._io.readU8be();
    this.ofsZonedmeta = this._io.readU8be();
  }

  /**
   * Absolute image byte offset of a zone's write pointer. Bit 59 marks a
   * conventional zone, whose entry is zone_start | 1 << 59. Bits 59-63 are
   * not part of the offset.
   * @see spec/SPEC.md WP-1
   */

  var ZonedmetaEntry = Qcow2Zoned.ZonedmetaEntry = (function() {
    function ZonedmetaEntry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    ZonedmetaEntry.prototype._read = function() {
      this.raw = this._io.readU8be();
    }

    /**
     * Bit 59, set on exactly the first num_conventional_zones entries.
     * @see spec/SPEC.md WP-4
     */
    Object.defineProperty(ZonedmetaEntry.prototype, 'isConventional', {
      get: function() {
        if (this._m_isConventional !== undefined)
          return this._m_isConventional;
        this._m_isConventional = (this.raw >>> 59 & 1) == 1;
        return this._m_isConventional;
      }
    });

    /**
     * Bits 60-63; must be zero (v5/v6 drafts kept state here).
     * @see spec/SPEC.md WP-3
     */
    Object.defineProperty(ZonedmetaEntry.prototype, 'reservedBits', {
      get: function() {
        if (this._m_reservedBits !== undefined)
          return this._m_reservedBits;
        this._m_reservedBits = this.raw >>> 60;
        return this._m_reservedBits;
      }
    });

    /**
     * Bits 0-58, the write pointer (or zone start for a conventional zone).
     * @see spec/SPEC.md WP-6
     */
    Object.defineProperty(ZonedmetaEntry.prototype, 'writePointer', {
      get: function() {
        if (this._m_writePointer !== undefined)
          return this._m_writePointer;
        this._m_writePointer = this.raw & 576460752303423487;
        return this._m_writePointer;
      }
    });

    /**
     * The entry as stored.
     * @see spec/SPEC.md WP-1
     */

    return ZonedmetaEntry;
  })();

  /**
   * The write-pointer table: one entry per zone, in zone order. Reach it
   * through the header extension's `zonedmeta` instance, which passes the
   * number of zones.
   * @see spec/SPEC.md WP-1
   */

  var ZonedmetaTable = Qcow2Zoned.ZonedmetaTable = (function() {
    function ZonedmetaTable(_io, _parent, _root, numEntries) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;
      this.numEntries = numEntries;

      this._read();
    }
    ZonedmetaTable.prototype._read = function() {
      this.entries = [];
      for (var i = 0; i < this.numEntries; i++) {
        this.entries.push(new ZonedmetaEntry(this._io, this, this._root));
      }
    }

    /**
     * One write-pointer entry per zone.
     * @see spec/SPEC.md WP-1
     */

    /**
     * Number of zones (num_zones of the extension).
     */

    return ZonedmetaTable;
  })();

  /**
   * True when the image emulates a host-managed zoned device.
   * @see spec/SPEC.md ZONE-4
   */
  Object.defineProperty(Qcow2Zoned.prototype, 'isHostManaged', {
    get: function() {
      if (this._m_isHostManaged !== undefined)
        return this._m_isHostManaged;
      this._m_isHostManaged = this.zonedModel == Qcow2Zoned.ZonedModel.HOST_MANAGED;
      return this._m_isHostManaged;
    }
  });

  /**
   * Zones that have a write pointer.
   * @see spec/SPEC.md ZONE-12
   */
  Object.defineProperty(Qcow2Zoned.prototype, 'numSequentialZones', {
    get: function() {
      if (this._m_numSequentialZones !== undefined)
        return this._m_numSequentialZones;
      this._m_numSequentialZones = (this.numZones > this.numConventionalZones ? this.numZones - this.numConventionalZones : 0);
      return this._m_numSequentialZones;
    }
  });

  /**
   * 1 = host-managed zoned device. 0 = not zoned, and the rest is ignored.
   * @see spec/SPEC.md ZONE-4
   */

  /**
   * Must be zero.
   * @see spec/SPEC.md ZONE-5
   */

  /**
   * Size of every zone in bytes; a non-zero power of two.
   * @see spec/SPEC.md ZONE-6
   */

  /**
   * Writable bytes at the start of each zone, at most zone_size. Bytes from
   * capacity to size read as zeros and cannot be written.
   * @see spec/SPEC.md ZONE-7
   */

  /**
   * Number of conventional (randomly writable) zones; they come first.
   * @see spec/SPEC.md ZONE-11
   */

  /**
   * Total number of zones, ceil(virtual size / zone_size).
   * @see spec/SPEC.md ZONE-9
   */

  /**
   * Limit on implicit open + explicit open + closed zones; 0 = no limit.
   * @see spec/SPEC.md ZONE-14
   */

  /**
   * Limit on implicit open + explicit open zones; 0 = no limit.
   * @see spec/SPEC.md ZONE-12
   */

  /**
   * Largest zone append in bytes; 512-aligned and below zone_capacity.
   * @see spec/SPEC.md ZONE-16
   */

  /**
   * Size in bytes of the write-pointer table, 8 * num_zones.
   * @see spec/SPEC.md ZONE-18
   */

  /**
   * Image file offset of the write-pointer table (refcounted metadata).
   * @see spec/SPEC.md ZONE-19
   */

  return Qcow2Zoned;
})();
Qcow2Zoned_.Qcow2Zoned = Qcow2Zoned;
});
