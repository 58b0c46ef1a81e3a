// This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild

(function (root, factory) {
  if (typeof define === 'function' && define.amd) {
    define(['exports', 'kaitai-struct/KaitaiStream', './Qcow2Zoned', './Qcow2Bitmaps'], factory);
  } else if (typeof exports === 'object' && exports !== null && typeof exports.nodeType !== 'number') {
    factory(exports, require('kaitai-struct/KaitaiStream'), require('./Qcow2Zoned'), require('./Qcow2Bitmaps'));
  } else {
    factory(root.Qcow2 || (root.Qcow2 = {}), root.KaitaiStream, root.Qcow2Zoned || (root.Qcow2Zoned = {}), root.Qcow2Bitmaps || (root.Qcow2Bitmaps = {}));
  }
})(typeof self !== 'undefined' ? self : this, function (Qcow2_, KaitaiStream, Qcow2Zoned_, Qcow2Bitmaps_) {
/**
 * A qcow2 image is organised in clusters of 1 << cluster_bits bytes. The
 * header sits in the first cluster, followed by header extensions. Every other
 * structure (L1/L2 tables, refcount table and blocks, snapshot table, bitmap
 * directory, zoned write-pointer table) is reached by an offset and is
 * described here as a lazily parsed instance, so opening any image parses only
 * the header.
 * 
 * Hard invariants (magic, version) use `valid:`. Every other rule is left to
 * the conformance checker (`qcow2-harness check`) so that parsing can go on
 * and report everything; the rules are numbered clauses in spec/SPEC.md.
 * 
 * Sample files: `qcow2-harness corpus build` makes them with qemu-img across
 * its feature matrix, and zoned ones with the reference writer.
 * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst|Source}
 */

var Qcow2 = (function() {
  Qcow2.CompressionType = Object.freeze({
    DEFLATE: 0,
    ZSTD: 1,

    0: "DEFLATE",
    1: "ZSTD",
  });

  Qcow2.CryptMethod = Object.freeze({
    NONE: 0,
    AES: 1,
    LUKS: 2,

    0: "NONE",
    1: "AES",
    2: "LUKS",
  });

  Qcow2.FeatureType = Object.freeze({
    INCOMPATIBLE: 0,
    COMPATIBLE: 1,
    AUTOCLEAR: 2,

    0: "INCOMPATIBLE",
    1: "COMPATIBLE",
    2: "AUTOCLEAR",
  });

  Qcow2.HeaderExtensionType = Object.freeze({
    END: 0,
    ZONED: 8020580,
    FULL_DISK_ENCRYPTION: 87539319,
    BITMAPS: 595929205,
    EXTERNAL_DATA_FILE: 1145132097,
    FEATURE_NAME_TABLE: 1745090647,
    BACKING_FILE_FORMAT: 3799591626,

    0: "END",
    8020580: "ZONED",
    87539319: "FULL_DISK_ENCRYPTION",
    595929205: "BITMAPS",
    1145132097: "EXTERNAL_DATA_FILE",
    1745090647: "FEATURE_NAME_TABLE",
    3799591626: "BACKING_FILE_FORMAT",
  });

  function Qcow2(_io, _parent, _root) {
    this._io = _io;
    this._parent = _parent;
    this._root = _root || this;

    this._read();
  }
  Qcow2.prototype._read = function() {
    this.header = new Header(this._io, this, this._root);
  }

  /**
   * One feature name table entry.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table|Source}
   */

  var FeatureName = Qcow2.FeatureName = (function() {
    function FeatureName(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    FeatureName.prototype._read = function() {
      this.featureType = this._io.readU1();
      this.bit = this._io.readU1();
      this.name = this._io.readBytes(46);
    }

    /**
     * Which feature bitmap the bit is in.
     * @see spec/SPEC.md EXT-7
     */

    /**
     * Bit number, 0-63.
     * @see spec/SPEC.md EXT-7
     */

    /**
     * Feature name, zero-padded, not always NUL-terminated.
     * @see spec/SPEC.md EXT-7
     */

    return FeatureName;
  })();

  /**
   * Names for feature bits, for tools that do not know them.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table|Source}
   */

  var FeatureNameTable = Qcow2.FeatureNameTable = (function() {
    function FeatureNameTable(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    FeatureNameTable.prototype._read = function() {
      this.entries = [];
      for (var i = 0; i < Math.floor(this._io.size / 48); i++) {
        this.entries.push(new FeatureName(this._io, this, this._root));
      }
    }

    /**
     * One 48-byte entry per named feature.
     * @see spec/SPEC.md EXT-7
     */

    return FeatureNameTable;
  })();

  /**
   * Where the encryption header is in the image file.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#full-disk-encryption-header-pointer|Source}
   */

  var FullDiskEncryptionPointer = Qcow2.FullDiskEncryptionPointer = (function() {
    function FullDiskEncryptionPointer(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    FullDiskEncryptionPointer.prototype._read = function() {
      this.ofsCryptHeader = this._io.readU8be();
      this.lenCryptHeader = this._io.readU8be();
    }

    /**
     * Cluster-aligned offset of the encryption header.
     * @see spec/SPEC.md CRYPT-3
     */

    /**
     * Length of the encryption header in bytes.
     * @see spec/SPEC.md CRYPT-3
     */

    return FullDiskEncryptionPointer;
  })();

  /**
   * The qcow2 header. Fields from incompatible_features on exist in v3 only.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header|Source}
   */

  var Header = Qcow2.Header = (function() {
    function Header(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Header.prototype._read = function() {
      this.magic = this._io.readBytes(4);
      if (!((KaitaiStream.byteArrayCompare(this.magic, new Uint8Array([81, 70, 73, 251])) == 0))) {
        throw new KaitaiStream.ValidationNotEqualError(new Uint8Array([81, 70, 73, 251]), this.magic, this._io, "/types/header/seq/0");
      }
      this.version = this._io.readU4be();
      if (!( ((this.version == 2) || (this.version == 3)) )) {
        throw new KaitaiStream.ValidationNotAnyOfError(this.version, this._io, "/types/header/seq/1");
      }
      this.ofsBackingFileName = this._io.readU8be();
      this.lenBackingFileName = this._io.readU4be();
      this.clusterBits = this._io.readU4be();
      this.virtualSize = this._io.readU8be();
      this.cryptMethod = this._io.readU4be();
      this.numL1Entries = this._io.readU4be();
      this.ofsL1Table = this._io.readU8be();
      this.ofsRefcountTable = this._io.readU8be();
      this.numRefcountTableClusters = this._io.readU4be();
      this.numSnapshots = this._io.readU4be();
      this.ofsSnapshotTable = this._io.readU8be();
      if (this.version >= 3) {
        this.incompatibleFeatures = this._io.readU8be();
      }
      if (this.version >= 3) {
        this.compatibleFeatures = this._io.readU8be();
      }
      if (this.version >= 3) {
        this.autoclearFeatures = this._io.readU8be();
      }
      if (this.version >= 3) {
        this.refcountOrder = this._io.readU4be();
      }
      if (this.version >= 3) {
        this.lenHeader = this._io.readU4be();
      }
      if ( ((this.version >= 3) && (this.lenHeader > 104)) ) {
        this.compressionType = this._io.readU1();
      }
      if ( ((this.version >= 3) && (this.lenHeader > 105)) ) {
        this.headerPadding = this._io.readBytes(this.lenHeader - 105);
      }
    }

    /**
     * Autoclear bit 0, the bitmaps extension is consistent.
     * @see spec/SPEC.md BMP-1
     */
    Object.defineProperty(Header.prototype, 'hasBitmaps', {
      get: function() {
        if (this._m_hasBitmaps !== undefined)
          return this._m_hasBitmaps;
        this._m_hasBitmaps =  ((this.version >= 3) && ((this.autoclearFeatures & 1) != 0)) ;
        return this._m_hasBitmaps;
      }
    });

    /**
     * Incompatible bit 3, compression_type is present and non-zero.
     * @see spec/SPEC.md HDR-22
     */
    Object.defineProperty(Header.prototype, 'hasCompressionType', {
      get: function() {
        if (this._m_hasCompressionType !== undefined)
          return this._m_hasCompressionType;
        this._m_hasCompressionType =  ((this.version >= 3) && ((this.incompatibleFeatures & 8) != 0)) ;
        return this._m_hasCompressionType;
      }
    });

    /**
     * Incompatible bit 2, guest data lives in an external data file.
     * @see spec/SPEC.md DATA-1
     */
    Object.defineProperty(Header.prototype, 'hasExternalDataFile', {
      get: function() {
        if (this._m_hasExternalDataFile !== undefined)
          return this._m_hasExternalDataFile;
        this._m_hasExternalDataFile =  ((this.version >= 3) && ((this.incompatibleFeatures & 4) != 0)) ;
        return this._m_hasExternalDataFile;
      }
    });

    /**
     * Compatible bit 0, refcount updates may be postponed.
     * @see spec/SPEC.md HDR-12
     */
    Object.defineProperty(Header.prototype, 'hasLazyRefcounts', {
      get: function() {
        if (this._m_hasLazyRefcounts !== undefined)
          return this._m_hasLazyRefcounts;
        this._m_hasLazyRefcounts =  ((this.version >= 3) && ((this.compatibleFeatures & 1) != 0)) ;
        return this._m_hasLazyRefcounts;
      }
    });

    /**
     * Incompatible bit 1, the image is known to be corrupt.
     * @see spec/SPEC.md HDR-13
     */
    Object.defineProperty(Header.prototype, 'isCorrupt', {
      get: function() {
        if (this._m_isCorrupt !== undefined)
          return this._m_isCorrupt;
        this._m_isCorrupt =  ((this.version >= 3) && ((this.incompatibleFeatures & 2) != 0)) ;
        return this._m_isCorrupt;
      }
    });

    /**
     * Autoclear bit 1, the external data file is a valid raw image.
     * @see spec/SPEC.md DATA-3
     */
    Object.defineProperty(Header.prototype, 'isDataFileRaw', {
      get: function() {
        if (this._m_isDataFileRaw !== undefined)
          return this._m_isDataFileRaw;
        this._m_isDataFileRaw =  ((this.version >= 3) && ((this.autoclearFeatures & 2) != 0)) ;
        return this._m_isDataFileRaw;
      }
    });

    /**
     * Incompatible bit 0, refcounts may be inconsistent (lazy refcounts).
     * @see spec/SPEC.md HDR-12
     */
    Object.defineProperty(Header.prototype, 'isDirty', {
      get: function() {
        if (this._m_isDirty !== undefined)
          return this._m_isDirty;
        this._m_isDirty =  ((this.version >= 3) && ((this.incompatibleFeatures & 1) != 0)) ;
        return this._m_isDirty;
      }
    });

    /**
     * Incompatible bit 4, L2 entries are 128 bits with subcluster bitmaps.
     * @see spec/SPEC.md EL2-1
     */
    Object.defineProperty(Header.prototype, 'isExtendedL2', {
      get: function() {
        if (this._m_isExtendedL2 !== undefined)
          return this._m_isExtendedL2;
        this._m_isExtendedL2 =  ((this.version >= 3) && ((this.incompatibleFeatures & 16) != 0)) ;
        return this._m_isExtendedL2;
      }
    });

    /**
     * Incompatible bit 5 (proposed), the zoned extension is present.
     * @see spec/SPEC.md ZONE-1
     */
    Object.defineProperty(Header.prototype, 'isZoned', {
      get: function() {
        if (this._m_isZoned !== undefined)
          return this._m_isZoned;
        this._m_isZoned =  ((this.version >= 3) && ((this.incompatibleFeatures & 32) != 0)) ;
        return this._m_isZoned;
      }
    });

    /**
     * Incompatible bits 6-63, which no implementation knows.
     * @see spec/SPEC.md HDR-9
     */
    Object.defineProperty(Header.prototype, 'unknownIncompatibleFeatures', {
      get: function() {
        if (this._m_unknownIncompatibleFeatures !== undefined)
          return this._m_unknownIncompatibleFeatures;
        this._m_unknownIncompatibleFeatures = (this.version >= 3 ? this.incompatibleFeatures & 18446744073709551552 : 0);
        return this._m_unknownIncompatibleFeatures;
      }
    });

    /**
     * "QFI\xfb".
     * @see spec/SPEC.md HDR-1
     */

    /**
     * Format version, 2 or 3.
     * @see spec/SPEC.md HDR-2
     */

    /**
     * Image file offset of the backing file name; 0 = no backing file.
     * @see spec/SPEC.md HDR-24
     */

    /**
     * Length of the backing file name, at most 1023.
     * @see spec/SPEC.md HDR-24
     */

    /**
     * log2 of the cluster size; at least 9 (QEMU accepts at most 21).
     * @see spec/SPEC.md HDR-4
     */

    /**
     * Guest-visible disk size in bytes.
     * @see spec/SPEC.md HDR-16
     */

    /**
     * 0 none, 1 AES (legacy), 2 LUKS.
     * @see spec/SPEC.md CRYPT-1
     */

    /**
     * Number of entries in the active L1 table.
     * @see spec/SPEC.md HDR-16
     */

    /**
     * Cluster-aligned image file offset of the active L1 table.
     * @see spec/SPEC.md HDR-15
     */

    /**
     * Cluster-aligned image file offset of the refcount table.
     * @see spec/SPEC.md HDR-18
     */

    /**
     * Number of clusters the refcount table occupies.
     * @see spec/SPEC.md HDR-19
     */

    /**
     * Number of internal snapshots.
     * @see spec/SPEC.md HDR-21
     */

    /**
     * Cluster-aligned image file offset of the snapshot table.
     * @see spec/SPEC.md HDR-20
     */

    /**
     * Incompatible feature bits; an unknown set bit means refuse the image.
     * @see spec/SPEC.md HDR-9
     */

    /**
     * Compatible feature bits; unknown bits may be ignored.
     * @see spec/SPEC.md HDR-10
     */

    /**
     * Autoclear feature bits; a writer clears the bits it does not know.
     * @see spec/SPEC.md HDR-11
     */

    /**
     * refcount_bits = 1 << refcount_order; at most 6.
     * @see spec/SPEC.md HDR-14
     */

    /**
     * Header length in bytes; at least 104 and a multiple of 8.
     * @see spec/SPEC.md HDR-6
     */

    /**
     * Compression type of compressed clusters; present when header_length > 104.
     * @see spec/SPEC.md HDR-22
     */

    /**
     * Padding and unknown additional fields up to header_length.
     * @see spec/SPEC.md HDR-23
     */

    return Header;
  })();

  /**
   * One header extension. The body is typed by magic when it is long enough
   * for that type; a short known extension and any unknown magic stay raw.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions|Source}
   */

  var HeaderExtension = Qcow2.HeaderExtension = (function() {
    function HeaderExtension(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    HeaderExtension.prototype._read = function() {
      this.magic = this._io.readU4be();
      this.lenBody = this._io.readU4be();
      switch ((this.lenBody >= this.lenBodyMin ? this.magic : Qcow2.HeaderExtensionType.END)) {
      case Qcow2.HeaderExtensionType.BACKING_FILE_FORMAT:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new StringBody(_io__raw_body, this, this._root);
        break;
      case Qcow2.HeaderExtensionType.BITMAPS:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new Qcow2Bitmaps_.Qcow2Bitmaps(_io__raw_body, null, null);
        break;
      case Qcow2.HeaderExtensionType.EXTERNAL_DATA_FILE:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new StringBody(_io__raw_body, this, this._root);
        break;
      case Qcow2.HeaderExtensionType.FEATURE_NAME_TABLE:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new FeatureNameTable(_io__raw_body, this, this._root);
        break;
      case Qcow2.HeaderExtensionType.FULL_DISK_ENCRYPTION:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new FullDiskEncryptionPointer(_io__raw_body, this, this._root);
        break;
      case Qcow2.HeaderExtensionType.ZONED:
        this._raw_body = this._io.readBytes(this.lenBody);
        var _io__raw_body = new KaitaiStream(this._raw_body);
        this.body = new Qcow2Zoned_.Qcow2Zoned(_io__raw_body, null, null);
        break;
      default:
        this.body = this._io.readBytes(this.lenBody);
        break;
      }
      this.padding = this._io.readBytes(KaitaiStream.mod(8 - KaitaiStream.mod(this.lenBody, 8), 8));
    }

    /**
     * The bitmap directory.
     * @see spec/SPEC.md BMP-5
     */
    Object.defineProperty(HeaderExtension.prototype, 'bitmapDirectory', {
      get: function() {
        if (this._m_bitmapDirectory !== undefined)
          return this._m_bitmapDirectory;
        if ( ((this.magic == Qcow2.HeaderExtensionType.BITMAPS) && (this.isBodyTyped)) ) {
          var io = this._root._io;
          var _pos = io.pos;
          io.seek(this.body.ofsBitmapDirectory);
          this._raw__m_bitmapDirectory = io.readBytes(this.body.lenBitmapDirectory);
          var _io__raw__m_bitmapDirectory = new KaitaiStream(this._raw__m_bitmapDirectory);
          this._m_bitmapDirectory = new Qcow2Bitmaps_.Qcow2Bitmaps.BitmapDirectory(_io__raw__m_bitmapDirectory, null, null, this._root._io);
          io.seek(_pos);
        }
        return this._m_bitmapDirectory;
      }
    });

    /**
     * The encryption (LUKS) header bytes.
     * @see spec/SPEC.md CRYPT-3
     */
    Object.defineProperty(HeaderExtension.prototype, 'cryptHeader', {
      get: function() {
        if (this._m_cryptHeader !== undefined)
          return this._m_cryptHeader;
        if ( ((this.magic == Qcow2.HeaderExtensionType.FULL_DISK_ENCRYPTION) && (this.isBodyTyped)) ) {
          var io = this._root._io;
          var _pos = io.pos;
          io.seek(this.body.ofsCryptHeader);
          this._m_cryptHeader = io.readBytes(this.body.lenCryptHeader);
          io.seek(_pos);
        }
        return this._m_cryptHeader;
      }
    });

    /**
     * True when the body was decoded by type (false for a short known extension).
     * @see spec/SPEC.md EXT-1
     */
    Object.defineProperty(HeaderExtension.prototype, 'isBodyTyped', {
      get: function() {
        if (this._m_isBodyTyped !== undefined)
          return this._m_isBodyTyped;
        this._m_isBodyTyped = this.lenBody >= this.lenBodyMin;
        return this._m_isBodyTyped;
      }
    });

    /**
     * Smallest body that can be decoded as this extension type.
     * @see spec/SPEC.md EXT-1
     */
    Object.defineProperty(HeaderExtension.prototype, 'lenBodyMin', {
      get: function() {
        if (this._m_lenBodyMin !== undefined)
          return this._m_lenBodyMin;
        this._m_lenBodyMin = (this.magic == Qcow2.HeaderExtensionType.ZONED ? 56 : (this.magic == Qcow2.HeaderExtensionType.BITMAPS ? 24 : (this.magic == Qcow2.HeaderExtensionType.FULL_DISK_ENCRYPTION ? 16 : 0)));
        return this._m_lenBodyMin;
      }
    });

    /**
     * The zoned write-pointer table (zonedmeta).
     * @see spec/SPEC.md WP-1
     */
    Object.defineProperty(HeaderExtension.prototype, 'zonedmeta', {
      get: function() {
        if (this._m_zonedmeta !== undefined)
          return this._m_zonedmeta;
        if ( ((this.magic == Qcow2.HeaderExtensionType.ZONED) && (this.isBodyTyped)) ) {
          var io = this._root._io;
          var _pos = io.pos;
          io.seek(this.body.ofsZonedmeta);
          this._raw__m_zonedmeta = io.readBytes(this.body.numZones * 8);
          var _io__raw__m_zonedmeta = new KaitaiStream(this._raw__m_zonedmeta);
          this._m_zonedmeta = new Qcow2Zoned_.Qcow2Zoned.ZonedmetaTable(_io__raw__m_zonedmeta, null, null, this.body.numZones);
          io.seek(_pos);
        }
        return this._m_zonedmeta;
      }
    });

    /**
     * Extension type; unknown values are kept and ignored.
     * @see spec/SPEC.md EXT-4
     */

    /**
     * Length of the extension data, without padding.
     * @see spec/SPEC.md EXT-1
     */

    /**
     * Extension data, typed by magic.
     * @see spec/SPEC.md EXT-1
     */

    /**
     * Pads the extension to a multiple of 8 bytes.
     * @see spec/SPEC.md EXT-1
     */

    return HeaderExtension;
  })();

  /**
   * Header extensions, each padded to 8 bytes, ended by magic 0.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions|Source}
   */

  var HeaderExtensionList = Qcow2.HeaderExtensionList = (function() {
    function HeaderExtensionList(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    HeaderExtensionList.prototype._read = function() {
      this.entries = [];
      var i = 0;
      do {
        var _ = new HeaderExtension(this._io, this, this._root);
        this.entries.push(_);
        i++;
      } while (!(_.magic == Qcow2.HeaderExtensionType.END));
    }

    /**
     * The extensions in file order; the last one is the end marker.
     * @see spec/SPEC.md EXT-1
     */

    return HeaderExtensionList;
  })();

  /**
   * An L1 entry; points at an L2 table.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping|Source}
   */

  var L1Entry = Qcow2.L1Entry = (function() {
    function L1Entry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    L1Entry.prototype._read = function() {
      this.raw = this._io.readU8be();
    }

    /**
     * Bit 63, set iff the L2 table's refcount is exactly 1.
     * @see spec/SPEC.md L1-3
     */
    Object.defineProperty(L1Entry.prototype, 'isCopied', {
      get: function() {
        if (this._m_isCopied !== undefined)
          return this._m_isCopied;
        this._m_isCopied = this.raw >>> 63 == 1;
        return this._m_isCopied;
      }
    });

    /**
     * The L2 table this entry points at.
     * @see spec/SPEC.md L1-2
     */
    Object.defineProperty(L1Entry.prototype, 'l2Table', {
      get: function() {
        if (this._m_l2Table !== undefined)
          return this._m_l2Table;
        if (this.ofsL2Table != 0) {
          var io = this._root._io;
          var _pos = io.pos;
          io.seek(this.ofsL2Table);
          this._raw__m_l2Table = io.readBytes(this._root.clusterSize);
          var _io__raw__m_l2Table = new KaitaiStream(this._raw__m_l2Table);
          this._m_l2Table = new L2Table(_io__raw__m_l2Table, this, this._root);
          io.seek(_pos);
        }
        return this._m_l2Table;
      }
    });

    /**
     * Bits 9-55, L2 table offset; 0 = unallocated.
     * @see spec/SPEC.md L1-2
     */
    Object.defineProperty(L1Entry.prototype, 'ofsL2Table', {
      get: function() {
        if (this._m_ofsL2Table !== undefined)
          return this._m_ofsL2Table;
        this._m_ofsL2Table = this.raw & 72057594037927424;
        return this._m_ofsL2Table;
      }
    });

    /**
     * Bits 0-8 and 56-62; must be zero.
     * @see spec/SPEC.md L1-1
     */
    Object.defineProperty(L1Entry.prototype, 'reservedBits', {
      get: function() {
        if (this._m_reservedBits !== undefined)
          return this._m_reservedBits;
        this._m_reservedBits = this.raw & 9151314442816848383;
        return this._m_reservedBits;
      }
    });

    /**
     * The entry as stored.
     * @see spec/SPEC.md L1-1
     */

    return L1Entry;
  })();

  /**
   * An L1 table (active or a snapshot's).
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping|Source}
   */

  var L1Table = Qcow2.L1Table = (function() {
    function L1Table(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    L1Table.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        this.entries.push(new L1Entry(this._io, this, this._root));
        i++;
      }
    }

    /**
     * One entry per L2 table's worth of guest clusters.
     * @see spec/SPEC.md L1-2
     */

    return L1Table;
  })();

  /**
   * An L2 entry: a standard or compressed cluster descriptor, followed by a
   * subcluster bitmap when the image has extended L2 entries.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping|Source}
   */

  var L2Entry = Qcow2.L2Entry = (function() {
    function L2Entry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    L2Entry.prototype._read = function() {
      this.raw = this._io.readU8be();
      if (this._root.header.isExtendedL2) {
        this.subclusterBitmap = this._io.readU8be();
      }
    }

    /**
     * Bitmap of subclusters with data in the host cluster.
     * @see spec/SPEC.md EL2-3
     */
    Object.defineProperty(L2Entry.prototype, 'allocatedSubclusters', {
      get: function() {
        if (this._m_allocatedSubclusters !== undefined)
          return this._m_allocatedSubclusters;
        if (this._root.header.isExtendedL2) {
          this._m_allocatedSubclusters = this.subclusterBitmap & 4294967295;
        }
        return this._m_allocatedSubclusters;
      }
    });

    /**
     * Bit 62, the descriptor is a compressed cluster descriptor.
     * @see spec/SPEC.md CMP-1
     */
    Object.defineProperty(L2Entry.prototype, 'isCompressed', {
      get: function() {
        if (this._m_isCompressed !== undefined)
          return this._m_isCompressed;
        this._m_isCompressed = (this.raw >>> 62 & 1) == 1;
        return this._m_isCompressed;
      }
    });

    /**
     * Bit 63, set iff the data cluster's refcount is exactly 1.
     * @see spec/SPEC.md L2-3
     */
    Object.defineProperty(L2Entry.prototype, 'isCopied', {
      get: function() {
        if (this._m_isCopied !== undefined)
          return this._m_isCopied;
        this._m_isCopied = this.raw >>> 63 == 1;
        return this._m_isCopied;
      }
    });

    /**
     * Bit 0 of a standard descriptor, the cluster reads as zeros.
     * @see spec/SPEC.md L2-4
     */
    Object.defineProperty(L2Entry.prototype, 'isZero', {
      get: function() {
        if (this._m_isZero !== undefined)
          return this._m_isZero;
        this._m_isZero =  ((!(this.isCompressed)) && ((this.raw & 1) == 1)) ;
        return this._m_isZero;
      }
    });

    /**
     * Width x of the host offset field of a compressed descriptor.
     * @see spec/SPEC.md CMP-1
     */
    Object.defineProperty(L2Entry.prototype, 'numCompressedOffsetBits', {
      get: function() {
        if (this._m_numCompressedOffsetBits !== undefined)
          return this._m_numCompressedOffsetBits;
        this._m_numCompressedOffsetBits = 62 - (this._root.header.clusterBits - 8);
        return this._m_numCompressedOffsetBits;
      }
    });

    /**
     * Bits x to 61 plus one, 512-byte sectors holding the compressed data.
     * @see spec/SPEC.md CMP-2
     */
    Object.defineProperty(L2Entry.prototype, 'numCompressedSectors', {
      get: function() {
        if (this._m_numCompressedSectors !== undefined)
          return this._m_numCompressedSectors;
        this._m_numCompressedSectors = (this.isCompressed ? (this.raw >>> this.numCompressedOffsetBits & (1 << this._root.header.clusterBits - 8) - 1) + 1 : 0);
        return this._m_numCompressedSectors;
      }
    });

    /**
     * Bits 0 to x-1, host byte offset of the compressed data.
     * @see spec/SPEC.md CMP-1
     */
    Object.defineProperty(L2Entry.prototype, 'ofsCompressedData', {
      get: function() {
        if (this._m_ofsCompressedData !== undefined)
          return this._m_ofsCompressedData;
        this._m_ofsCompressedData = (this.isCompressed ? this.raw & (1 << this.numCompressedOffsetBits) - 1 : 0);
        return this._m_ofsCompressedData;
      }
    });

    /**
     * Bits 9-55 of a standard descriptor, host cluster offset; 0 = unallocated.
     * @see spec/SPEC.md L2-2
     */
    Object.defineProperty(L2Entry.prototype, 'ofsHostCluster', {
      get: function() {
        if (this._m_ofsHostCluster !== undefined)
          return this._m_ofsHostCluster;
        this._m_ofsHostCluster = (this.isCompressed ? 0 : this.raw & 72057594037927424);
        return this._m_ofsHostCluster;
      }
    });

    /**
     * Bits 1-8 and 56-61 of a standard descriptor; must be zero.
     * @see spec/SPEC.md L2-1
     */
    Object.defineProperty(L2Entry.prototype, 'reservedBits', {
      get: function() {
        if (this._m_reservedBits !== undefined)
          return this._m_reservedBits;
        this._m_reservedBits = (this.isCompressed ? 0 : this.raw & 4539628424389460478);
        return this._m_reservedBits;
      }
    });

    /**
     * Bitmap of subclusters that read as zeros.
     * @see spec/SPEC.md EL2-3
     */
    Object.defineProperty(L2Entry.prototype, 'zeroSubclusters', {
      get: function() {
        if (this._m_zeroSubclusters !== undefined)
          return this._m_zeroSubclusters;
        if (this._root.header.isExtendedL2) {
          this._m_zeroSubclusters = this.subclusterBitmap >>> 32;
        }
        return this._m_zeroSubclusters;
      }
    });

    /**
     * The cluster descriptor as stored.
     * @see spec/SPEC.md L2-6
     */

    /**
     * Bits 0-31 allocated, bits 32-63 reads-as-zero, one bit per subcluster.
     * @see spec/SPEC.md EL2-3
     */

    return L2Entry;
  })();

  /**
   * An L2 table, one cluster of L2 entries.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping|Source}
   */

  var L2Table = Qcow2.L2Table = (function() {
    function L2Table(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    L2Table.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        this.entries.push(new L2Entry(this._io, this, this._root));
        i++;
      }
    }

    /**
     * One entry per guest cluster.
     * @see spec/SPEC.md L2-6
     */

    return L2Table;
  })();

  /**
   * A 1-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount1 = Qcow2.Refcount1 = (function() {
    function Refcount1(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount1.prototype._read = function() {
      this.value = this._io.readBitsIntLe(1) != 0;
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount1;
  })();

  /**
   * A 16-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount16 = Qcow2.Refcount16 = (function() {
    function Refcount16(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount16.prototype._read = function() {
      this.value = this._io.readU2be();
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount16;
  })();

  /**
   * A 2-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount2 = Qcow2.Refcount2 = (function() {
    function Refcount2(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount2.prototype._read = function() {
      this.value = this._io.readBitsIntLe(2);
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount2;
  })();

  /**
   * A 32-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount32 = Qcow2.Refcount32 = (function() {
    function Refcount32(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount32.prototype._read = function() {
      this.value = this._io.readU4be();
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount32;
  })();

  /**
   * A 4-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount4 = Qcow2.Refcount4 = (function() {
    function Refcount4(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount4.prototype._read = function() {
      this.value = this._io.readBitsIntLe(4);
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount4;
  })();

  /**
   * A 64-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount64 = Qcow2.Refcount64 = (function() {
    function Refcount64(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount64.prototype._read = function() {
      this.value = this._io.readU8be();
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount64;
  })();

  /**
   * An 8-bit refcount.
   * @see spec/SPEC.md RC-3
   */

  var Refcount8 = Qcow2.Refcount8 = (function() {
    function Refcount8(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    Refcount8.prototype._read = function() {
      this.value = this._io.readU1();
    }

    /**
     * Reference count.
     * @see spec/SPEC.md RC-3
     */

    return Refcount8;
  })();

  /**
   * One cluster of refcounts, refcount_bits each. Sub-byte refcounts are
   * packed least significant bit first.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management|Source}
   */

  var RefcountBlock = Qcow2.RefcountBlock = (function() {
    function RefcountBlock(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    RefcountBlock.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        switch (this._root.refcountOrder) {
        case 0:
          this.entries.push(new Refcount1(this._io, this, this._root));
          break;
        case 1:
          this.entries.push(new Refcount2(this._io, this, this._root));
          break;
        case 2:
          this.entries.push(new Refcount4(this._io, this, this._root));
          break;
        case 3:
          this.entries.push(new Refcount8(this._io, this, this._root));
          break;
        case 4:
          this.entries.push(new Refcount16(this._io, this, this._root));
          break;
        case 5:
          this.entries.push(new Refcount32(this._io, this, this._root));
          break;
        case 6:
          this.entries.push(new Refcount64(this._io, this, this._root));
          break;
        }
        i++;
      }
    }

    /**
     * Refcount of each host cluster this block covers.
     * @see spec/SPEC.md RC-3
     */

    return RefcountBlock;
  })();

  /**
   * The refcount table; each entry points at a refcount block.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management|Source}
   */

  var RefcountTable = Qcow2.RefcountTable = (function() {
    function RefcountTable(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    RefcountTable.prototype._read = function() {
      this.entries = [];
      var i = 0;
      while (!this._io.isEof()) {
        this.entries.push(new RefcountTableEntry(this._io, this, this._root));
        i++;
      }
    }

    /**
     * One entry per refcount block's worth of host clusters.
     * @see spec/SPEC.md RC-1
     */

    return RefcountTable;
  })();

  /**
   * A refcount table entry.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management|Source}
   */

  var RefcountTableEntry = Qcow2.RefcountTableEntry = (function() {
    function RefcountTableEntry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    RefcountTableEntry.prototype._read = function() {
      this.raw = this._io.readU8be();
    }

    /**
     * Bits 9-63, refcount block offset; 0 = not allocated.
     * @see spec/SPEC.md RC-1
     */
    Object.defineProperty(RefcountTableEntry.prototype, 'ofsRefcountBlock', {
      get: function() {
        if (this._m_ofsRefcountBlock !== undefined)
          return this._m_ofsRefcountBlock;
        this._m_ofsRefcountBlock = this.raw & 18446744073709551104;
        return this._m_ofsRefcountBlock;
      }
    });

    /**
     * The refcount block this entry points at.
     * @see spec/SPEC.md RC-2
     */
    Object.defineProperty(RefcountTableEntry.prototype, 'refcountBlock', {
      get: function() {
        if (this._m_refcountBlock !== undefined)
          return this._m_refcountBlock;
        if (this.ofsRefcountBlock != 0) {
          var io = this._root._io;
          var _pos = io.pos;
          io.seek(this.ofsRefcountBlock);
          this._raw__m_refcountBlock = io.readBytes(this._root.clusterSize);
          var _io__raw__m_refcountBlock = new KaitaiStream(this._raw__m_refcountBlock);
          this._m_refcountBlock = new RefcountBlock(_io__raw__m_refcountBlock, this, this._root);
          io.seek(_pos);
        }
        return this._m_refcountBlock;
      }
    });

    /**
     * Bits 0-8; must be zero.
     * @see spec/SPEC.md RC-1
     */
    Object.defineProperty(RefcountTableEntry.prototype, 'reservedBits', {
      get: function() {
        if (this._m_reservedBits !== undefined)
          return this._m_reservedBits;
        this._m_reservedBits = this.raw & 511;
        return this._m_reservedBits;
      }
    });

    /**
     * The entry as stored.
     * @see spec/SPEC.md RC-1
     */

    return RefcountTableEntry;
  })();

  /**
   * Snapshot extra data; fields are present when the extra data is long enough.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots|Source}
   */

  var SnapshotExtraData = Qcow2.SnapshotExtraData = (function() {
    function SnapshotExtraData(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    SnapshotExtraData.prototype._read = function() {
      if (this._io.size >= 8) {
        this.lenVmState64 = this._io.readU8be();
      }
      if (this._io.size >= 16) {
        this.diskSize = this._io.readU8be();
      }
      if (this._io.size >= 24) {
        this.icount = this._io.readU8be();
      }
      this.unknown = this._io.readBytesFull();
    }

    /**
     * Size of the saved VM state (64-bit).
     * @see spec/SPEC.md SNAP-5
     */

    /**
     * Virtual disk size at snapshot time.
     * @see spec/SPEC.md SNAP-5
     */

    /**
     * Instruction count at snapshot time, or -1 when not recorded.
     * @see spec/SPEC.md SNAP-5
     */

    /**
     * Extra data this description does not know; must be preserved.
     * @see spec/SPEC.md SNAP-6
     */

    return SnapshotExtraData;
  })();

  /**
   * One internal snapshot, padded to a multiple of 8 bytes.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots|Source}
   */

  var SnapshotTableEntry = Qcow2.SnapshotTableEntry = (function() {
    function SnapshotTableEntry(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    SnapshotTableEntry.prototype._read = function() {
      this.ofsL1Table = this._io.readU8be();
      this.numL1Entries = this._io.readU4be();
      this.lenIdStr = this._io.readU2be();
      this.lenName = this._io.readU2be();
      this.dateSec = this._io.readU4be();
      this.dateNsec = this._io.readU4be();
      this.vmClockNsec = this._io.readU8be();
      this.lenVmState32 = this._io.readU4be();
      this.lenExtraData = this._io.readU4be();
      this._raw_extraData = this._io.readBytes(this.lenExtraData);
      var _io__raw_extraData = new KaitaiStream(this._raw_extraData);
      this.extraData = new SnapshotExtraData(_io__raw_extraData, this, this._root);
      this.idStr = this._io.readBytes(this.lenIdStr);
      this.name = this._io.readBytes(this.lenName);
      this.padding = this._io.readBytes(KaitaiStream.mod(8 - KaitaiStream.mod(((40 + this.lenExtraData) + this.lenIdStr) + this.lenName, 8), 8));
    }

    /**
     * The snapshot's L1 table.
     * @see spec/SPEC.md SNAP-7
     */
    Object.defineProperty(SnapshotTableEntry.prototype, 'l1Table', {
      get: function() {
        if (this._m_l1Table !== undefined)
          return this._m_l1Table;
        var io = this._root._io;
        var _pos = io.pos;
        io.seek(this.ofsL1Table);
        this._raw__m_l1Table = io.readBytes(this.numL1Entries * 8);
        var _io__raw__m_l1Table = new KaitaiStream(this._raw__m_l1Table);
        this._m_l1Table = new L1Table(_io__raw__m_l1Table, this, this._root);
        io.seek(_pos);
        return this._m_l1Table;
      }
    });

    /**
     * Cluster-aligned offset of the snapshot's L1 table.
     * @see spec/SPEC.md SNAP-3
     */

    /**
     * Number of entries in the snapshot's L1 table.
     * @see spec/SPEC.md SNAP-4
     */

    /**
     * Length of the unique ID string.
     * @see spec/SPEC.md SNAP-2
     */

    /**
     * Length of the name.
     * @see spec/SPEC.md SNAP-2
     */

    /**
     * Creation time, seconds since the epoch.
     * @see spec/SPEC.md SNAP-1
     */

    /**
     * Creation time, nanoseconds part.
     * @see spec/SPEC.md SNAP-1
     */

    /**
     * Guest clock at snapshot time, in nanoseconds.
     * @see spec/SPEC.md SNAP-1
     */

    /**
     * Size of saved VM state; see len_vm_state_64 in the extra data.
     * @see spec/SPEC.md SNAP-5
     */

    /**
     * Size of the extra data; at least 16 for images written by QEMU >= 5.0.
     * @see spec/SPEC.md SNAP-6
     */

    /**
     * Optional extra fields, known by length.
     * @see spec/SPEC.md SNAP-5
     */

    /**
     * Unique ID string, not NUL-terminated.
     * @see spec/SPEC.md SNAP-2
     */

    /**
     * Snapshot name, not NUL-terminated.
     * @see spec/SPEC.md SNAP-2
     */

    /**
     * Pads the entry to a multiple of 8 bytes.
     * @see spec/SPEC.md SNAP-2
     */

    return SnapshotTableEntry;
  })();

  /**
   * A string extension; its length is the extension length, no terminator.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#string-header-extensions|Source}
   */

  var StringBody = Qcow2.StringBody = (function() {
    function StringBody(_io, _parent, _root) {
      this._io = _io;
      this._parent = _parent;
      this._root = _root;

      this._read();
    }
    StringBody.prototype._read = function() {
      this.value = this._io.readBytesFull();
    }

    /**
     * The string bytes (backing format or external data file name).
     * @see spec/SPEC.md EXT-5
     */

    return StringBody;
  })();

  /**
   * Backing file name bytes; not NUL-terminated, at most 1023 bytes.
   * @see spec/SPEC.md HDR-24
   */
  Object.defineProperty(Qcow2.prototype, 'backingFileName', {
    get: function() {
      if (this._m_backingFileName !== undefined)
        return this._m_backingFileName;
      if (this.header.ofsBackingFileName != 0) {
        var _pos = this._io.pos;
        this._io.seek(this.header.ofsBackingFileName);
        this._m_backingFileName = this._io.readBytes(this.header.lenBackingFileName);
        this._io.seek(_pos);
      }
      return this._m_backingFileName;
    }
  });

  /**
   * Cluster size in bytes. Only meaningful once cluster_bits is checked (HDR clauses).
   * @see spec/SPEC.md HDR-4
   */
  Object.defineProperty(Qcow2.prototype, 'clusterSize', {
    get: function() {
      if (this._m_clusterSize !== undefined)
        return this._m_clusterSize;
      this._m_clusterSize = 1 << this.header.clusterBits;
      return this._m_clusterSize;
    }
  });

  /**
   * The header extension list, up to the end marker.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions|Source}
   */
  Object.defineProperty(Qcow2.prototype, 'headerExtensions', {
    get: function() {
      if (this._m_headerExtensions !== undefined)
        return this._m_headerExtensions;
      var _pos = this._io.pos;
      this._io.seek(this.lenHeader);
      this._raw__m_headerExtensions = this._io.readBytes(this.lenHeaderExtensionArea);
      var _io__raw__m_headerExtensions = new KaitaiStream(this._raw__m_headerExtensions);
      this._m_headerExtensions = new HeaderExtensionList(_io__raw__m_headerExtensions, this, this._root);
      this._io.seek(_pos);
      return this._m_headerExtensions;
    }
  });

  /**
   * The active L1 table.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping|Source}
   */
  Object.defineProperty(Qcow2.prototype, 'l1Table', {
    get: function() {
      if (this._m_l1Table !== undefined)
        return this._m_l1Table;
      var _pos = this._io.pos;
      this._io.seek(this.header.ofsL1Table);
      this._raw__m_l1Table = this._io.readBytes(this.header.numL1Entries * 8);
      var _io__raw__m_l1Table = new KaitaiStream(this._raw__m_l1Table);
      this._m_l1Table = new L1Table(_io__raw__m_l1Table, this, this._root);
      this._io.seek(_pos);
      return this._m_l1Table;
    }
  });

  /**
   * Effective header length; v2 headers are always 72 bytes.
   * @see spec/SPEC.md HDR-6
   */
  Object.defineProperty(Qcow2.prototype, 'lenHeader', {
    get: function() {
      if (this._m_lenHeader !== undefined)
        return this._m_lenHeader;
      this._m_lenHeader = (this.header.version >= 3 ? this.header.lenHeader : 72);
      return this._m_lenHeader;
    }
  });

  /**
   * Header extensions must fit in the first cluster; the area is clipped to
   * the file so a short file reads as truncated, not as a huge request.
   * @see spec/SPEC.md EXT-2
   */
  Object.defineProperty(Qcow2.prototype, 'lenHeaderExtensionArea', {
    get: function() {
      if (this._m_lenHeaderExtensionArea !== undefined)
        return this._m_lenHeaderExtensionArea;
      this._m_lenHeaderExtensionArea = (this.clusterSize < this._io.size ? this.clusterSize : this._io.size) - this.lenHeader;
      return this._m_lenHeaderExtensionArea;
    }
  });

  /**
   * Size of one L2 entry; 16 bytes with extended L2 entries.
   * @see spec/SPEC.md EL2-1
   */
  Object.defineProperty(Qcow2.prototype, 'lenL2Entry', {
    get: function() {
      if (this._m_lenL2Entry !== undefined)
        return this._m_lenL2Entry;
      this._m_lenL2Entry = (this.header.isExtendedL2 ? 16 : 8);
      return this._m_lenL2Entry;
    }
  });

  /**
   * Entries per L2 table (an L2 table is one cluster).
   * @see spec/SPEC.md HDR-16
   */
  Object.defineProperty(Qcow2.prototype, 'numL2Entries', {
    get: function() {
      if (this._m_numL2Entries !== undefined)
        return this._m_numL2Entries;
      this._m_numL2Entries = Math.floor(this.clusterSize / this.lenL2Entry);
      return this._m_numL2Entries;
    }
  });

  /**
   * Width of one refcount block entry in bits.
   * @see spec/SPEC.md HDR-14
   */
  Object.defineProperty(Qcow2.prototype, 'refcountBits', {
    get: function() {
      if (this._m_refcountBits !== undefined)
        return this._m_refcountBits;
      this._m_refcountBits = 1 << this.refcountOrder;
      return this._m_refcountBits;
    }
  });

  /**
   * Effective refcount order; v2 images always use 16-bit refcounts.
   * @see spec/SPEC.md HDR-14
   */
  Object.defineProperty(Qcow2.prototype, 'refcountOrder', {
    get: function() {
      if (this._m_refcountOrder !== undefined)
        return this._m_refcountOrder;
      this._m_refcountOrder = (this.header.version >= 3 ? this.header.refcountOrder : 4);
      return this._m_refcountOrder;
    }
  });

  /**
   * The refcount table, refcount_table_clusters clusters long.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management|Source}
   */
  Object.defineProperty(Qcow2.prototype, 'refcountTable', {
    get: function() {
      if (this._m_refcountTable !== undefined)
        return this._m_refcountTable;
      var _pos = this._io.pos;
      this._io.seek(this.header.ofsRefcountTable);
      this._raw__m_refcountTable = this._io.readBytes(this.header.numRefcountTableClusters * this.clusterSize);
      var _io__raw__m_refcountTable = new KaitaiStream(this._raw__m_refcountTable);
      this._m_refcountTable = new RefcountTable(_io__raw__m_refcountTable, this, this._root);
      this._io.seek(_pos);
      return this._m_refcountTable;
    }
  });

  /**
   * Internal snapshot table entries, each padded to 8 bytes.
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots|Source}
   */
  Object.defineProperty(Qcow2.prototype, 'snapshotTable', {
    get: function() {
      if (this._m_snapshotTable !== undefined)
        return this._m_snapshotTable;
      if (this.header.numSnapshots > 0) {
        var _pos = this._io.pos;
        this._io.seek(this.header.ofsSnapshotTable);
        this._m_snapshotTable = [];
        for (var i = 0; i < this.header.numSnapshots; i++) {
          this._m_snapshotTable.push(new SnapshotTableEntry(this._io, this, this._root));
        }
        this._io.seek(_pos);
      }
      return this._m_snapshotTable;
    }
  });

  /**
   * The image header (72 bytes for v2, header_length bytes for v3).
   * @see {@link https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header|Source}
   */

  return Qcow2;
})();
Qcow2_.Qcow2 = Qcow2;
});
