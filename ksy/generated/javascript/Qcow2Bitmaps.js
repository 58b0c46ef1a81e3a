// This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild

(function (root, factory) {
  if (typeof define === 'function' && define.amd) {
    define(['exports', 'kaitai-struct/KaitaiStream'], factory);
  } else if (typeof exports === 'object' && exports !== null && typeof exports.nodeType !== 'number') {
    factory(exports, require('kaitai-struct/KaitaiStream'));
  } else {
    factory(root.Qcow2Bitmaps || (root.Qcow2Bitmaps = {}), root.KaitaiStream);
  }
})(typeof self !== 'undefined' ? self : this, function (Qcow2Bitmaps_, KaitaiStream) {
/**
 * Body of the qcow2 header extension with magic 0x23852875. The directory and
 * tables it points at are reached from the main qcow2 description through the
 * extension's `bitmap_directory` instance, which passes the file stream.
 * Sample images: `qemu-img bitmap --add` on any qcow2 v3 image.
 * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmaps-extension|Source}
 */

var Qcow2Bitmaps = (function() {
  function Qcow2Bitmaps(_io, _parent, _root) {
    this._io = _io;
    this._parent = _parent;
    this._root = _root || this;

    this._read();
  }
  Qcow2Bitmaps.prototype._read = function() {
    this.numBitmaps = this._io.readU4be();
    this.reserved = this._io.readU4be();
    this.lenBitmapDirectory = this._io.readU8be();
    this.ofsBitmapDirectory = this._io.readU8be();
  }

  /**
   * All bitmap directory entries, back to back.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory|Source}
   */

  var BitmapDirectory = Qcow2Bitmaps.BitmapDirectory = (function() {
    function BitmapDirectory(_io, _parent, _root, fileIo) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;
      this.fileIo = fileIo;

      this._read();
    }
    BitmapDirectory.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        this.entries.push(new BitmapDirectoryEntry(this._io, this, this._root));
        i++;
      }
    }

    /**
     * One entry per bitmap.
     * @see spec/SPEC.md BMP-5
     */

    /**
     * The image file stream, where the bitmap tables are.
     */

    return BitmapDirectory;
  })();

  /**
   * One bitmap's directory entry, padded to a multiple of 8 bytes.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory|Source}
   */

  var BitmapDirectoryEntry = Qcow2Bitmaps.BitmapDirectoryEntry = (function() {
    function BitmapDirectoryEntry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    BitmapDirectoryEntry.prototype._read = function() {
      this.ofsBitmapTable = this._io.readU8be();
      this.numBitmapTableEntries = this._io.readU4be();
      this.flags = this._io.readU4be();
      this.bitmapType = this._io.readU1();
      this.granularityBits = this._io.readU1();
      this.lenName = this._io.readU2be();
      this.lenExtraData = this._io.readU4be();
      this.extraData = this._io.readBytes(this.lenExtraData);
      this.name = this._io.readBytes(this.lenName);
      this.padding = this._io.readBytes(KaitaiStream.mod(8 - KaitaiStream.mod((24 + this.lenExtraData) + this.lenName, 8), 8));
    }

    /**
     * This bitmap's table, read from the image file.
     * @see spec/SPEC.md BMP-11
     */
    Object.defineProperty(BitmapDirectoryEntry.prototype, 'bitmapTable', {
      get: function() {
        if (this._m_bitmapTable !== undefined)
          return this._m_bitmapTable;
        if (this.ofsBitmapTable != 0) {
          var io = this._parent.fileIo;
          var _pos = io.pos;
          io.seek(this.ofsBitmapTable);
          this._raw__m_bitmapTable = io.readBytes(this.numBitmapTableEntries * 8);
          var _io__raw__m_bitmapTable = new KaitaiStream(this._raw__m_bitmapTable);
          this._m_bitmapTable = new BitmapTable(_io__raw__m_bitmapTable, this, this._root);
          io.seek(_pos);
        }
        return this._m_bitmapTable;
      }
    });

    /**
     * The bitmap tracks guest writes.
     * @see spec/SPEC.md BMP-6
     */
    Object.defineProperty(BitmapDirectoryEntry.prototype, 'isAuto', {
      get: function() {
        if (this._m_isAuto !== undefined)
          return this._m_isAuto;
        this._m_isAuto = (this.flags & 2) != 0;
        return this._m_isAuto;
      }
    });

    /**
     * The bitmap was not saved cleanly and must not be trusted.
     * @see spec/SPEC.md BMP-6
     */
    Object.defineProperty(BitmapDirectoryEntry.prototype, 'isInUse', {
      get: function() {
        if (this._m_isInUse !== undefined)
          return this._m_isInUse;
        this._m_isInUse = (this.flags & 1) != 0;
        return this._m_isInUse;
      }
    });

    /**
     * Unknown flag bits; must be zero.
     * @see spec/SPEC.md BMP-6
     */
    Object.defineProperty(BitmapDirectoryEntry.prototype, 'reservedFlags', {
      get: function() {
        if (this._m_reservedFlags !== undefined)
          return this._m_reservedFlags;
        this._m_reservedFlags = this.flags & 4294967288;
        return this._m_reservedFlags;
      }
    });

    /**
     * Cluster-aligned image file offset of this bitmap's table.
     * @see spec/SPEC.md BMP-11
     */

    /**
     * Number of entries in the bitmap table.
     * @see spec/SPEC.md BMP-11
     */

    /**
     * Bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible; others reserved.
     * @see spec/SPEC.md BMP-6
     */

    /**
     * 1 = dirty tracking bitmap; no other type is defined.
     * @see spec/SPEC.md BMP-6
     */

    /**
     * Each bit covers 1 << granularity_bits bytes of the guest disk.
     * @see spec/SPEC.md BMP-7
     */

    /**
     * Length of the name in bytes, without a terminator.
     * @see spec/SPEC.md BMP-8
     */

    /**
     * Size of the extra data that follows.
     * @see spec/SPEC.md BMP-10
     */

    /**
     * Extra data; none is defined yet.
     * @see spec/SPEC.md BMP-10
     */

    /**
     * Bitmap name, UTF-8 by convention, not NUL-terminated.
     * @see spec/SPEC.md BMP-8
     */

    /**
     * Pads the entry to a multiple of 8 bytes.
     * @see spec/SPEC.md BMP-9
     */

    return BitmapDirectoryEntry;
  })();

  /**
   * Bitmap table; each entry points at one cluster of bitmap data.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table|Source}
   */

  var BitmapTable = Qcow2Bitmaps.BitmapTable = (function() {
    function BitmapTable(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    BitmapTable.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        this.entries.push(new BitmapTableEntry(this._io, this, this._root));
        i++;
      }
    }

    /**
     * Entries in guest order.
     * @see spec/SPEC.md BMP-12
     */

    return BitmapTable;
  })();

  /**
   * One bitmap table entry.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table|Source}
   */

  var BitmapTableEntry = Qcow2Bitmaps.BitmapTableEntry = (function() {
    function BitmapTableEntry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    BitmapTableEntry.prototype._read = function() {
      this.raw = this._io.readU8be();
    }

    /**
     * Bit 0, when the offset is 0, says the cluster reads as all ones.
     * @see spec/SPEC.md BMP-12
     */
    Object.defineProperty(BitmapTableEntry.prototype, 'isAllOnes', {
      get: function() {
        if (this._m_isAllOnes !== undefined)
          return this._m_isAllOnes;
        this._m_isAllOnes = (this.raw & 1) == 1;
        return this._m_isAllOnes;
      }
    });

    /**
     * Bits 9-55, cluster offset of the bitmap data; 0 = not allocated.
     * @see spec/SPEC.md BMP-12
     */
    Object.defineProperty(BitmapTableEntry.prototype, 'ofsBitmapData', {
      get: function() {
        if (this._m_ofsBitmapData !== undefined)
          return this._m_ofsBitmapData;
        this._m_ofsBitmapData = this.raw & 72057594037927424;
        return this._m_ofsBitmapData;
      }
    });

    /**
     * Bits 1-8 and 56-63; must be zero.
     * @see spec/SPEC.md BMP-13
     */
    Object.defineProperty(BitmapTableEntry.prototype, 'reservedBits', {
      get: function() {
        if (this._m_reservedBits !== undefined)
          return this._m_reservedBits;
        this._m_reservedBits = this.raw & 18374686479671624190;
        return this._m_reservedBits;
      }
    });

    /**
     * The entry as stored.
     * @see spec/SPEC.md BMP-12
     */

    return BitmapTableEntry;
  })();

  /**
   * Number of bitmaps in the directory; at least 1.
   * @see spec/SPEC.md BMP-3
   */

  /**
   * Must be zero.
   * @see spec/SPEC.md BMP-3
   */

  /**
   * Size of the bitmap directory in bytes.
   * @see spec/SPEC.md BMP-4
   */

  /**
   * Cluster-aligned image file offset of the bitmap directory.
   * @see spec/SPEC.md BMP-5
   */

  return Qcow2Bitmaps;
})();
Qcow2Bitmaps_.Qcow2Bitmaps = Qcow2Bitmaps;
});
