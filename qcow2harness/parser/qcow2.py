# This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild
# type: ignore

import kaitaistruct
from kaitaistruct import KaitaiStruct, KaitaiStream, BytesIO
from . import qcow2_zoned
from . import qcow2_bitmaps
from enum import IntEnum


if getattr(kaitaistruct, 'API_VERSION', (0, 9)) < (0, 11):
    raise Exception("Incompatible Kaitai Struct Python API: 0.11 or later is required, but you have %s" % (kaitaistruct.__version__))

class Qcow2(KaitaiStruct):
    """A qcow2 image is organised in clusters of 1 << cluster_bits bytes. The
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
    
    .. seealso::
       Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst
    """

    class CompressionType(IntEnum):
        deflate = 0
        zstd = 1

    class CryptMethod(IntEnum):
        none = 0
        aes = 1
        luks = 2

    class FeatureType(IntEnum):
        incompatible = 0
        compatible = 1
        autoclear = 2

    class HeaderExtensionType(IntEnum):
        end = 0
        zoned = 8020580
        full_disk_encryption = 87539319
        bitmaps = 595929205
        external_data_file = 1145132097
        feature_name_table = 1745090647
        backing_file_format = 3799591626
    def __init__(self, _io, _parent=None, _root=None):
        super(Qcow2, self).__init__(_io)
        self._parent = _parent
        self._root = _root or self
        self._read()

    def _read(self):
        self.header = Qcow2.Header(self._io, self, self._root)


    def _fetch_instances(self):
        pass
        self.header._fetch_instances()
        _ = self.backing_file_name
        if hasattr(self, '_m_backing_file_name'):
            pass

        _ = self.header_extensions
        if hasattr(self, '_m_header_extensions'):
            pass
            self._m_header_extensions._fetch_instances()

        _ = self.l1_table
        if hasattr(self, '_m_l1_table'):
            pass
            self._m_l1_table._fetch_instances()

        _ = self.refcount_table
        if hasattr(self, '_m_refcount_table'):
            pass
            self._m_refcount_table._fetch_instances()

        _ = self.snapshot_table
        if hasattr(self, '_m_snapshot_table'):
            pass
            for i in range(len(self._m_snapshot_table)):
                pass
                self._m_snapshot_table[i]._fetch_instances()



    class FeatureName(KaitaiStruct):
        """One feature name table entry.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.FeatureName, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.feature_type = KaitaiStream.resolve_enum(Qcow2.FeatureType, self._io.read_u1())
            self.bit = self._io.read_u1()
            self.name = self._io.read_bytes(46)


        def _fetch_instances(self):
            pass


    class FeatureNameTable(KaitaiStruct):
        """Names for feature bits, for tools that do not know them.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#feature-name-table
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.FeatureNameTable, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            for i in range(self._io.size() // 48):
                self.entries.append(Qcow2.FeatureName(self._io, self, self._root))



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class FullDiskEncryptionPointer(KaitaiStruct):
        """Where the encryption header is in the image file.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#full-disk-encryption-header-pointer
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.FullDiskEncryptionPointer, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.ofs_crypt_header = self._io.read_u8be()
            self.len_crypt_header = self._io.read_u8be()


        def _fetch_instances(self):
            pass


    class Header(KaitaiStruct):
        """The qcow2 header. Fields from incompatible_features on exist in v3 only.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Header, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.magic = self._io.read_bytes(4)
            if not self.magic == b"\x51\x46\x49\xFB":
                raise kaitaistruct.ValidationNotEqualError(b"\x51\x46\x49\xFB", self.magic, self._io, u"/types/header/seq/0")
            self.version = self._io.read_u4be()
            if not  ((self.version == 2) or (self.version == 3)) :
                raise kaitaistruct.ValidationNotAnyOfError(self.version, self._io, u"/types/header/seq/1")
            self.ofs_backing_file_name = self._io.read_u8be()
            self.len_backing_file_name = self._io.read_u4be()
            self.cluster_bits = self._io.read_u4be()
            self.virtual_size = self._io.read_u8be()
            self.crypt_method = KaitaiStream.resolve_enum(Qcow2.CryptMethod, self._io.read_u4be())
            self.num_l1_entries = self._io.read_u4be()
            self.ofs_l1_table = self._io.read_u8be()
            self.ofs_refcount_table = self._io.read_u8be()
            self.num_refcount_table_clusters = self._io.read_u4be()
            self.num_snapshots = self._io.read_u4be()
            self.ofs_snapshot_table = self._io.read_u8be()
            if self.version >= 3:
                pass
                self.incompatible_features = self._io.read_u8be()

            if self.version >= 3:
                pass
                self.compatible_features = self._io.read_u8be()

            if self.version >= 3:
                pass
                self.autoclear_features = self._io.read_u8be()

            if self.version >= 3:
                pass
                self.refcount_order = self._io.read_u4be()

            if self.version >= 3:
                pass
                self.len_header = self._io.read_u4be()

            if  ((self.version >= 3) and (self.len_header > 104)) :
                pass
                self.compression_type = KaitaiStream.resolve_enum(Qcow2.CompressionType, self._io.read_u1())

            if  ((self.version >= 3) and (self.len_header > 105)) :
                pass
                self.header_padding = self._io.read_bytes(self.len_header - 105)



        def _fetch_instances(self):
            pass
            if self.version >= 3:
                pass

            if self.version >= 3:
                pass

            if self.version >= 3:
                pass

            if self.version >= 3:
                pass

            if self.version >= 3:
                pass

            if  ((self.version >= 3) and (self.len_header > 104)) :
                pass

            if  ((self.version >= 3) and (self.len_header > 105)) :
                pass


        @property
        def has_bitmaps(self):
            """Autoclear bit 0, the bitmaps extension is consistent.
            
            .. seealso::
               spec/SPEC.md BMP-1
            """
            if hasattr(self, '_m_has_bitmaps'):
                return self._m_has_bitmaps

            self._m_has_bitmaps =  ((self.version >= 3) and (self.autoclear_features & 1 != 0)) 
            return getattr(self, '_m_has_bitmaps', None)

        @property
        def has_compression_type(self):
            """Incompatible bit 3, compression_type is present and non-zero.
            
            .. seealso::
               spec/SPEC.md HDR-22
            """
            if hasattr(self, '_m_has_compression_type'):
                return self._m_has_compression_type

            self._m_has_compression_type =  ((self.version >= 3) and (self.incompatible_features & 8 != 0)) 
            return getattr(self, '_m_has_compression_type', None)

        @property
        def has_external_data_file(self):
            """Incompatible bit 2, guest data lives in an external data file.
            
            .. seealso::
               spec/SPEC.md DATA-1
            """
            if hasattr(self, '_m_has_external_data_file'):
                return self._m_has_external_data_file

            self._m_has_external_data_file =  ((self.version >= 3) and (self.incompatible_features & 4 != 0)) 
            return getattr(self, '_m_has_external_data_file', None)

        @property
        def has_lazy_refcounts(self):
            """Compatible bit 0, refcount updates may be postponed.
            
            .. seealso::
               spec/SPEC.md HDR-12
            """
            if hasattr(self, '_m_has_lazy_refcounts'):
                return self._m_has_lazy_refcounts

            self._m_has_lazy_refcounts =  ((self.version >= 3) and (self.compatible_features & 1 != 0)) 
            return getattr(self, '_m_has_lazy_refcounts', None)

        @property
        def is_corrupt(self):
            """Incompatible bit 1, the image is known to be corrupt.
            
            .. seealso::
               spec/SPEC.md HDR-13
            """
            if hasattr(self, '_m_is_corrupt'):
                return self._m_is_corrupt

            self._m_is_corrupt =  ((self.version >= 3) and (self.incompatible_features & 2 != 0)) 
            return getattr(self, '_m_is_corrupt', None)

        @property
        def is_data_file_raw(self):
            """Autoclear bit 1, the external data file is a valid raw image.
            
            .. seealso::
               spec/SPEC.md DATA-3
            """
            if hasattr(self, '_m_is_data_file_raw'):
                return self._m_is_data_file_raw

            self._m_is_data_file_raw =  ((self.version >= 3) and (self.autoclear_features & 2 != 0)) 
            return getattr(self, '_m_is_data_file_raw', None)

        @property
        def is_dirty(self):
            """Incompatible bit 0, refcounts may be inconsistent (lazy refcounts).
            
            .. seealso::
               spec/SPEC.md HDR-12
            """
            if hasattr(self, '_m_is_dirty'):
                return self._m_is_dirty

            self._m_is_dirty =  ((self.version >= 3) and (self.incompatible_features & 1 != 0)) 
            return getattr(self, '_m_is_dirty', None)

        @property
        def is_extended_l2(self):
            """Incompatible bit 4, L2 entries are 128 bits with subcluster bitmaps.
            
            .. seealso::
               spec/SPEC.md EL2-1
            """
            if hasattr(self, '_m_is_extended_l2'):
                return self._m_is_extended_l2

            self._m_is_extended_l2 =  ((self.version >= 3) and (self.incompatible_features & 16 != 0)) 
            return getattr(self, '_m_is_extended_l2', None)

        @property
        def is_zoned(self):
            """Incompatible bit 5 (proposed), the zoned extension is present.
            
            .. seealso::
               spec/SPEC.md ZONE-1
            """
            if hasattr(self, '_m_is_zoned'):
                return self._m_is_zoned

            self._m_is_zoned =  ((self.version >= 3) and (self.incompatible_features & 32 != 0)) 
            return getattr(self, '_m_is_zoned', None)

        @property
        def unknown_incompatible_features(self):
            """Incompatible bits 6-63, which no implementation knows.
            
            .. seealso::
               spec/SPEC.md HDR-9
            """
            if hasattr(self, '_m_unknown_incompatible_features'):
                return self._m_unknown_incompatible_features

            self._m_unknown_incompatible_features = (self.incompatible_features & 18446744073709551552 if self.version >= 3 else 0)
            return getattr(self, '_m_unknown_incompatible_features', None)


    class HeaderExtension(KaitaiStruct):
        """One header extension. The body is typed by magic when it is long enough
        for that type; a short known extension and any unknown magic stay raw.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.HeaderExtension, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.magic = KaitaiStream.resolve_enum(Qcow2.HeaderExtensionType, self._io.read_u4be())
            self.len_body = self._io.read_u4be()
            _on = (self.magic if self.len_body >= self.len_body_min else Qcow2.HeaderExtensionType.end)
            if _on == Qcow2.HeaderExtensionType.backing_file_format:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = Qcow2.StringBody(_io__raw_body, self, self._root)
            elif _on == Qcow2.HeaderExtensionType.bitmaps:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = qcow2_bitmaps.Qcow2Bitmaps(_io__raw_body)
            elif _on == Qcow2.HeaderExtensionType.external_data_file:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = Qcow2.StringBody(_io__raw_body, self, self._root)
            elif _on == Qcow2.HeaderExtensionType.feature_name_table:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = Qcow2.FeatureNameTable(_io__raw_body, self, self._root)
            elif _on == Qcow2.HeaderExtensionType.full_disk_encryption:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = Qcow2.FullDiskEncryptionPointer(_io__raw_body, self, self._root)
            elif _on == Qcow2.HeaderExtensionType.zoned:
                pass
                self._raw_body = self._io.read_bytes(self.len_body)
                _io__raw_body = KaitaiStream(BytesIO(self._raw_body))
                self.body = qcow2_zoned.Qcow2Zoned(_io__raw_body)
            else:
                pass
                self.body = self._io.read_bytes(self.len_body)
            self.padding = self._io.read_bytes((8 - self.len_body % 8) % 8)


        def _fetch_instances(self):
            pass
            _on = (self.magic if self.len_body >= self.len_body_min else Qcow2.HeaderExtensionType.end)
            if _on == Qcow2.HeaderExtensionType.backing_file_format:
                pass
                self.body._fetch_instances()
            elif _on == Qcow2.HeaderExtensionType.bitmaps:
                pass
                self.body._fetch_instances()
            elif _on == Qcow2.HeaderExtensionType.external_data_file:
                pass
                self.body._fetch_instances()
            elif _on == Qcow2.HeaderExtensionType.feature_name_table:
                pass
                self.body._fetch_instances()
            elif _on == Qcow2.HeaderExtensionType.full_disk_encryption:
                pass
                self.body._fetch_instances()
            elif _on == Qcow2.HeaderExtensionType.zoned:
                pass
                self.body._fetch_instances()
            else:
                pass
            _ = self.bitmap_directory
            if hasattr(self, '_m_bitmap_directory'):
                pass
                self._m_bitmap_directory._fetch_instances()

            _ = self.crypt_header
            if hasattr(self, '_m_crypt_header'):
                pass

            _ = self.zonedmeta
            if hasattr(self, '_m_zonedmeta'):
                pass
                self._m_zonedmeta._fetch_instances()


        @property
        def bitmap_directory(self):
            """The bitmap directory.
            
            .. seealso::
               spec/SPEC.md BMP-5
            """
            if hasattr(self, '_m_bitmap_directory'):
                return self._m_bitmap_directory

            if  ((self.magic == Qcow2.HeaderExtensionType.bitmaps) and (self.is_body_typed)) :
                pass
                io = self._root._io
                _pos = io.pos()
                io.seek(self.body.ofs_bitmap_directory)
                self._raw__m_bitmap_directory = io.read_bytes(self.body.len_bitmap_directory)
                _io__raw__m_bitmap_directory = KaitaiStream(BytesIO(self._raw__m_bitmap_directory))
                self._m_bitmap_directory = qcow2_bitmaps.Qcow2Bitmaps.BitmapDirectory(self._root._io, _io__raw__m_bitmap_directory)
                io.seek(_pos)

            return getattr(self, '_m_bitmap_directory', None)

        @property
        def crypt_header(self):
            """The encryption (LUKS) header bytes.
            
            .. seealso::
               spec/SPEC.md CRYPT-3
            """
            if hasattr(self, '_m_crypt_header'):
                return self._m_crypt_header

            if  ((self.magic == Qcow2.HeaderExtensionType.full_disk_encryption) and (self.is_body_typed)) :
                pass
                io = self._root._io
                _pos = io.pos()
                io.seek(self.body.ofs_crypt_header)
                self._m_crypt_header = io.read_bytes(self.body.len_crypt_header)
                io.seek(_pos)

            return getattr(self, '_m_crypt_header', None)

        @property
        def is_body_typed(self):
            """True when the body was decoded by type (false for a short known extension).
            
            .. seealso::
               spec/SPEC.md EXT-1
            """
            if hasattr(self, '_m_is_body_typed'):
                return self._m_is_body_typed

            self._m_is_body_typed = self.len_body >= self.len_body_min
            return getattr(self, '_m_is_body_typed', None)

        @property
        def len_body_min(self):
            """Smallest body that can be decoded as this extension type.
            
            .. seealso::
               spec/SPEC.md EXT-1
            """
            if hasattr(self, '_m_len_body_min'):
                return self._m_len_body_min

            self._m_len_body_min = (56 if self.magic == Qcow2.HeaderExtensionType.zoned else (24 if self.magic == Qcow2.HeaderExtensionType.bitmaps else (16 if self.magic == Qcow2.HeaderExtensionType.full_disk_encryption else 0)))
            return getattr(self, '_m_len_body_min', None)

        @property
        def zonedmeta(self):
            """The zoned write-pointer table (zonedmeta).
            
            .. seealso::
               spec/SPEC.md WP-1
            """
            if hasattr(self, '_m_zonedmeta'):
                return self._m_zonedmeta

            if  ((self.magic == Qcow2.HeaderExtensionType.zoned) and (self.is_body_typed)) :
                pass
                io = self._root._io
                _pos = io.pos()
                io.seek(self.body.ofs_zonedmeta)
                self._raw__m_zonedmeta = io.read_bytes(self.body.num_zones * 8)
                _io__raw__m_zonedmeta = KaitaiStream(BytesIO(self._raw__m_zonedmeta))
                self._m_zonedmeta = qcow2_zoned.Qcow2Zoned.ZonedmetaTable(self.body.num_zones, _io__raw__m_zonedmeta)
                io.seek(_pos)

            return getattr(self, '_m_zonedmeta', None)


    class HeaderExtensionList(KaitaiStruct):
        """Header extensions, each padded to 8 bytes, ended by magic 0.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.HeaderExtensionList, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while True:
                _ = Qcow2.HeaderExtension(self._io, self, self._root)
                self.entries.append(_)
                if _.magic == Qcow2.HeaderExtensionType.end:
                    break
                i += 1


        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class L1Entry(KaitaiStruct):
        """An L1 entry; points at an L2 table.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.L1Entry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.raw = self._io.read_u8be()


        def _fetch_instances(self):
            pass
            _ = self.l2_table
            if hasattr(self, '_m_l2_table'):
                pass
                self._m_l2_table._fetch_instances()


        @property
        def is_copied(self):
            """Bit 63, set iff the L2 table's refcount is exactly 1.
            
            .. seealso::
               spec/SPEC.md L1-3
            """
            if hasattr(self, '_m_is_copied'):
                return self._m_is_copied

            self._m_is_copied = self.raw >> 63 == 1
            return getattr(self, '_m_is_copied', None)

        @property
        def l2_table(self):
            """The L2 table this entry points at.
            
            .. seealso::
               spec/SPEC.md L1-2
            """
            if hasattr(self, '_m_l2_table'):
                return self._m_l2_table

            if self.ofs_l2_table != 0:
                pass
                io = self._root._io
                _pos = io.pos()
                io.seek(self.ofs_l2_table)
                self._raw__m_l2_table = io.read_bytes(self._root.cluster_size)
                _io__raw__m_l2_table = KaitaiStream(BytesIO(self._raw__m_l2_table))
                self._m_l2_table = Qcow2.L2Table(_io__raw__m_l2_table, self, self._root)
                io.seek(_pos)

            return getattr(self, '_m_l2_table', None)

        @property
        def ofs_l2_table(self):
            """Bits 9-55, L2 table offset; 0 = unallocated.
            
            .. seealso::
               spec/SPEC.md L1-2
            """
            if hasattr(self, '_m_ofs_l2_table'):
                return self._m_ofs_l2_table

            self._m_ofs_l2_table = self.raw & 72057594037927424
            return getattr(self, '_m_ofs_l2_table', None)

        @property
        def reserved_bits(self):
            """Bits 0-8 and 56-62; must be zero.
            
            .. seealso::
               spec/SPEC.md L1-1
            """
            if hasattr(self, '_m_reserved_bits'):
                return self._m_reserved_bits

            self._m_reserved_bits = self.raw & 9151314442816848383
            return getattr(self, '_m_reserved_bits', None)


    class L1Table(KaitaiStruct):
        """An L1 table (active or a snapshot's).
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.L1Table, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                self.entries.append(Qcow2.L1Entry(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class L2Entry(KaitaiStruct):
        """An L2 entry: a standard or compressed cluster descriptor, followed by a
        subcluster bitmap when the image has extended L2 entries.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.L2Entry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.raw = self._io.read_u8be()
            if self._root.header.is_extended_l2:
                pass
                self.subcluster_bitmap = self._io.read_u8be()



        def _fetch_instances(self):
            pass
            if self._root.header.is_extended_l2:
                pass


        @property
        def allocated_subclusters(self):
            """Bitmap of subclusters with data in the host cluster.
            
            .. seealso::
               spec/SPEC.md EL2-3
            """
            if hasattr(self, '_m_allocated_subclusters'):
                return self._m_allocated_subclusters

            if self._root.header.is_extended_l2:
                pass
                self._m_allocated_subclusters = self.subcluster_bitmap & 4294967295

            return getattr(self, '_m_allocated_subclusters', None)

        @property
        def is_compressed(self):
            """Bit 62, the descriptor is a compressed cluster descriptor.
            
            .. seealso::
               spec/SPEC.md CMP-1
            """
            if hasattr(self, '_m_is_compressed'):
                return self._m_is_compressed

            self._m_is_compressed = self.raw >> 62 & 1 == 1
            return getattr(self, '_m_is_compressed', None)

        @property
        def is_copied(self):
            """Bit 63, set iff the data cluster's refcount is exactly 1.
            
            .. seealso::
               spec/SPEC.md L2-3
            """
            if hasattr(self, '_m_is_copied'):
                return self._m_is_copied

            self._m_is_copied = self.raw >> 63 == 1
            return getattr(self, '_m_is_copied', None)

        @property
        def is_zero(self):
            """Bit 0 of a standard descriptor, the cluster reads as zeros.
            
            .. seealso::
               spec/SPEC.md L2-4
            """
            if hasattr(self, '_m_is_zero'):
                return self._m_is_zero

            self._m_is_zero =  (((not (self.is_compressed))) and (self.raw & 1 == 1)) 
            return getattr(self, '_m_is_zero', None)

        @property
        def num_compressed_offset_bits(self):
            """Width x of the host offset field of a compressed descriptor.
            
            .. seealso::
               spec/SPEC.md CMP-1
            """
            if hasattr(self, '_m_num_compressed_offset_bits'):
                return self._m_num_compressed_offset_bits

            self._m_num_compressed_offset_bits = 62 - (self._root.header.cluster_bits - 8)
            return getattr(self, '_m_num_compressed_offset_bits', None)

        @property
        def num_compressed_sectors(self):
            """Bits x to 61 plus one, 512-byte sectors holding the compressed data.
            
            .. seealso::
               spec/SPEC.md CMP-2
            """
            if hasattr(self, '_m_num_compressed_sectors'):
                return self._m_num_compressed_sectors

            self._m_num_compressed_sectors = ((self.raw >> self.num_compressed_offset_bits & (1 << self._root.header.cluster_bits - 8) - 1) + 1 if self.is_compressed else 0)
            return getattr(self, '_m_num_compressed_sectors', None)

        @property
        def ofs_compressed_data(self):
            """Bits 0 to x-1, host byte offset of the compressed data.
            
            .. seealso::
               spec/SPEC.md CMP-1
            """
            if hasattr(self, '_m_ofs_compressed_data'):
                return self._m_ofs_compressed_data

            self._m_ofs_compressed_data = (self.raw & (1 << self.num_compressed_offset_bits) - 1 if self.is_compressed else 0)
            return getattr(self, '_m_ofs_compressed_data', None)

        @property
        def ofs_host_cluster(self):
            """Bits 9-55 of a standard descriptor, host cluster offset; 0 = unallocated.
            
            .. seealso::
               spec/SPEC.md L2-2
            """
            if hasattr(self, '_m_ofs_host_cluster'):
                return self._m_ofs_host_cluster

            self._m_ofs_host_cluster = (0 if self.is_compressed else self.raw & 72057594037927424)
            return getattr(self, '_m_ofs_host_cluster', None)

        @property
        def reserved_bits(self):
            """Bits 1-8 and 56-61 of a standard descriptor; must be zero.
            
            .. seealso::
               spec/SPEC.md L2-1
            """
            if hasattr(self, '_m_reserved_bits'):
                return self._m_reserved_bits

            self._m_reserved_bits = (0 if self.is_compressed else self.raw & 4539628424389460478)
            return getattr(self, '_m_reserved_bits', None)

        @property
        def zero_subclusters(self):
            """Bitmap of subclusters that read as zeros.
            
            .. seealso::
               spec/SPEC.md EL2-3
            """
            if hasattr(self, '_m_zero_subclusters'):
                return self._m_zero_subclusters

            if self._root.header.is_extended_l2:
                pass
                self._m_zero_subclusters = self.subcluster_bitmap >> 32

            return getattr(self, '_m_zero_subclusters', None)


    class L2Table(KaitaiStruct):
        """An L2 table, one cluster of L2 entries.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.L2Table, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                self.entries.append(Qcow2.L2Entry(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class Refcount1(KaitaiStruct):
        """A 1-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount1, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_bits_int_le(1) != 0


        def _fetch_instances(self):
            pass


    class Refcount16(KaitaiStruct):
        """A 16-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount16, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_u2be()


        def _fetch_instances(self):
            pass


    class Refcount2(KaitaiStruct):
        """A 2-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount2, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_bits_int_le(2)


        def _fetch_instances(self):
            pass


    class Refcount32(KaitaiStruct):
        """A 32-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount32, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_u4be()


        def _fetch_instances(self):
            pass


    class Refcount4(KaitaiStruct):
        """A 4-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount4, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_bits_int_le(4)


        def _fetch_instances(self):
            pass


    class Refcount64(KaitaiStruct):
        """A 64-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount64, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_u8be()


        def _fetch_instances(self):
            pass


    class Refcount8(KaitaiStruct):
        """An 8-bit refcount.
        
        .. seealso::
           spec/SPEC.md RC-3
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.Refcount8, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_u1()


        def _fetch_instances(self):
            pass


    class RefcountBlock(KaitaiStruct):
        """One cluster of refcounts, refcount_bits each. Sub-byte refcounts are
        packed least significant bit first.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.RefcountBlock, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                _on = self._root.refcount_order
                if _on == 0:
                    pass
                    self.entries.append(Qcow2.Refcount1(self._io, self, self._root))
                elif _on == 1:
                    pass
                    self.entries.append(Qcow2.Refcount2(self._io, self, self._root))
                elif _on == 2:
                    pass
                    self.entries.append(Qcow2.Refcount4(self._io, self, self._root))
                elif _on == 3:
                    pass
                    self.entries.append(Qcow2.Refcount8(self._io, self, self._root))
                elif _on == 4:
                    pass
                    self.entries.append(Qcow2.Refcount16(self._io, self, self._root))
                elif _on == 5:
                    pass
                    self.entries.append(Qcow2.Refcount32(self._io, self, self._root))
                elif _on == 6:
                    pass
                    self.entries.append(Qcow2.Refcount64(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                _on = self._root.refcount_order
                if _on == 0:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 1:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 2:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 3:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 4:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 5:
                    pass
                    self.entries[i]._fetch_instances()
                elif _on == 6:
                    pass
                    self.entries[i]._fetch_instances()



    class RefcountTable(KaitaiStruct):
        """The refcount table; each entry points at a refcount block.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.RefcountTable, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                self.entries.append(Qcow2.RefcountTableEntry(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class RefcountTableEntry(KaitaiStruct):
        """A refcount table entry.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.RefcountTableEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.raw = self._io.read_u8be()


        def _fetch_instances(self):
            pass
            _ = self.refcount_block
            if hasattr(self, '_m_refcount_block'):
                pass
                self._m_refcount_block._fetch_instances()


        @property
        def ofs_refcount_block(self):
            """Bits 9-63, refcount block offset; 0 = not allocated.
            
            .. seealso::
               spec/SPEC.md RC-1
            """
            if hasattr(self, '_m_ofs_refcount_block'):
                return self._m_ofs_refcount_block

            self._m_ofs_refcount_block = self.raw & 18446744073709551104
            return getattr(self, '_m_ofs_refcount_block', None)

        @property
        def refcount_block(self):
            """The refcount block this entry points at.
            
            .. seealso::
               spec/SPEC.md RC-2
            """
            if hasattr(self, '_m_refcount_block'):
                return self._m_refcount_block

            if self.ofs_refcount_block != 0:
                pass
                io = self._root._io
                _pos = io.pos()
                io.seek(self.ofs_refcount_block)
                self._raw__m_refcount_block = io.read_bytes(self._root.cluster_size)
                _io__raw__m_refcount_block = KaitaiStream(BytesIO(self._raw__m_refcount_block))
                self._m_refcount_block = Qcow2.RefcountBlock(_io__raw__m_refcount_block, self, self._root)
                io.seek(_pos)

            return getattr(self, '_m_refcount_block', None)

        @property
        def reserved_bits(self):
            """Bits 0-8; must be zero.
            
            .. seealso::
               spec/SPEC.md RC-1
            """
            if hasattr(self, '_m_reserved_bits'):
                return self._m_reserved_bits

            self._m_reserved_bits = self.raw & 511
            return getattr(self, '_m_reserved_bits', None)


    class SnapshotExtraData(KaitaiStruct):
        """Snapshot extra data; fields are present when the extra data is long enough.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.SnapshotExtraData, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            if self._io.size() >= 8:
                pass
                self.len_vm_state_64 = self._io.read_u8be()

            if self._io.size() >= 16:
                pass
                self.disk_size = self._io.read_u8be()

            if self._io.size() >= 24:
                pass
                self.icount = self._io.read_u8be()

            self.unknown = self._io.read_bytes_full()


        def _fetch_instances(self):
            pass
            if self._io.size() >= 8:
                pass

            if self._io.size() >= 16:
                pass

            if self._io.size() >= 24:
                pass



    class SnapshotTableEntry(KaitaiStruct):
        """One internal snapshot, padded to a multiple of 8 bytes.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.SnapshotTableEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.ofs_l1_table = self._io.read_u8be()
            self.num_l1_entries = self._io.read_u4be()
            self.len_id_str = self._io.read_u2be()
            self.len_name = self._io.read_u2be()
            self.date_sec = self._io.read_u4be()
            self.date_nsec = self._io.read_u4be()
            self.vm_clock_nsec = self._io.read_u8be()
            self.len_vm_state_32 = self._io.read_u4be()
            self.len_extra_data = self._io.read_u4be()
            self._raw_extra_data = self._io.read_bytes(self.len_extra_data)
            _io__raw_extra_data = KaitaiStream(BytesIO(self._raw_extra_data))
            self.extra_data = Qcow2.SnapshotExtraData(_io__raw_extra_data, self, self._root)
            self.id_str = self._io.read_bytes(self.len_id_str)
            self.name = self._io.read_bytes(self.len_name)
            self.padding = self._io.read_bytes((8 - (((40 + self.len_extra_data) + self.len_id_str) + self.len_name) % 8) % 8)


        def _fetch_instances(self):
            pass
            self.extra_data._fetch_instances()
            _ = self.l1_table
            if hasattr(self, '_m_l1_table'):
                pass
                self._m_l1_table._fetch_instances()


        @property
        def l1_table(self):
            """The snapshot's L1 table.
            
            .. seealso::
               spec/SPEC.md SNAP-7
            """
            if hasattr(self, '_m_l1_table'):
                return self._m_l1_table

            io = self._root._io
            _pos = io.pos()
            io.seek(self.ofs_l1_table)
            self._raw__m_l1_table = io.read_bytes(self.num_l1_entries * 8)
            _io__raw__m_l1_table = KaitaiStream(BytesIO(self._raw__m_l1_table))
            self._m_l1_table = Qcow2.L1Table(_io__raw__m_l1_table, self, self._root)
            io.seek(_pos)
            return getattr(self, '_m_l1_table', None)


    class StringBody(KaitaiStruct):
        """A string extension; its length is the extension length, no terminator.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#string-header-extensions
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2.StringBody, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_bytes_full()


        def _fetch_instances(self):
            pass


    @property
    def backing_file_name(self):
        """Backing file name bytes; not NUL-terminated, at most 1023 bytes.
        
        .. seealso::
           spec/SPEC.md HDR-24
        """
        if hasattr(self, '_m_backing_file_name'):
            return self._m_backing_file_name

        if self.header.ofs_backing_file_name != 0:
            pass
            _pos = self._io.pos()
            self._io.seek(self.header.ofs_backing_file_name)
            self._m_backing_file_name = self._io.read_bytes(self.header.len_backing_file_name)
            self._io.seek(_pos)

        return getattr(self, '_m_backing_file_name', None)

    @property
    def cluster_size(self):
        """Cluster size in bytes. Only meaningful once cluster_bits is checked (HDR clauses).
        
        .. seealso::
           spec/SPEC.md HDR-4
        """
        if hasattr(self, '_m_cluster_size'):
            return self._m_cluster_size

        self._m_cluster_size = 1 << self.header.cluster_bits
        return getattr(self, '_m_cluster_size', None)

    @property
    def header_extensions(self):
        """The header extension list, up to the end marker.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#header-extensions
        """
        if hasattr(self, '_m_header_extensions'):
            return self._m_header_extensions

        _pos = self._io.pos()
        self._io.seek(self.len_header)
        self._raw__m_header_extensions = self._io.read_bytes(self.len_header_extension_area)
        _io__raw__m_header_extensions = KaitaiStream(BytesIO(self._raw__m_header_extensions))
        self._m_header_extensions = Qcow2.HeaderExtensionList(_io__raw__m_header_extensions, self, self._root)
        self._io.seek(_pos)
        return getattr(self, '_m_header_extensions', None)

    @property
    def l1_table(self):
        """The active L1 table.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#cluster-mapping
        """
        if hasattr(self, '_m_l1_table'):
            return self._m_l1_table

        _pos = self._io.pos()
        self._io.seek(self.header.ofs_l1_table)
        self._raw__m_l1_table = self._io.read_bytes(self.header.num_l1_entries * 8)
        _io__raw__m_l1_table = KaitaiStream(BytesIO(self._raw__m_l1_table))
        self._m_l1_table = Qcow2.L1Table(_io__raw__m_l1_table, self, self._root)
        self._io.seek(_pos)
        return getattr(self, '_m_l1_table', None)

    @property
    def len_header(self):
        """Effective header length; v2 headers are always 72 bytes.
        
        .. seealso::
           spec/SPEC.md HDR-6
        """
        if hasattr(self, '_m_len_header'):
            return self._m_len_header

        self._m_len_header = (self.header.len_header if self.header.version >= 3 else 72)
        return getattr(self, '_m_len_header', None)

    @property
    def len_header_extension_area(self):
        """Header extensions must fit in the first cluster; the area is clipped to
        the file so a short file reads as truncated, not as a huge request.
        
        .. seealso::
           spec/SPEC.md EXT-2
        """
        if hasattr(self, '_m_len_header_extension_area'):
            return self._m_len_header_extension_area

        self._m_len_header_extension_area = (self.cluster_size if self.cluster_size < self._io.size() else self._io.size()) - self.len_header
        return getattr(self, '_m_len_header_extension_area', None)

    @property
    def len_l2_entry(self):
        """Size of one L2 entry; 16 bytes with extended L2 entries.
        
        .. seealso::
           spec/SPEC.md EL2-1
        """
        if hasattr(self, '_m_len_l2_entry'):
            return self._m_len_l2_entry

        self._m_len_l2_entry = (16 if self.header.is_extended_l2 else 8)
        return getattr(self, '_m_len_l2_entry', None)

    @property
    def num_l2_entries(self):
        """Entries per L2 table (an L2 table is one cluster).
        
        .. seealso::
           spec/SPEC.md HDR-16
        """
        if hasattr(self, '_m_num_l2_entries'):
            return self._m_num_l2_entries

        self._m_num_l2_entries = self.cluster_size // self.len_l2_entry
        return getattr(self, '_m_num_l2_entries', None)

    @property
    def refcount_bits(self):
        """Width of one refcount block entry in bits.
        
        .. seealso::
           spec/SPEC.md HDR-14
        """
        if hasattr(self, '_m_refcount_bits'):
            return self._m_refcount_bits

        self._m_refcount_bits = 1 << self.refcount_order
        return getattr(self, '_m_refcount_bits', None)

    @property
    def refcount_order(self):
        """Effective refcount order; v2 images always use 16-bit refcounts.
        
        .. seealso::
           spec/SPEC.md HDR-14
        """
        if hasattr(self, '_m_refcount_order'):
            return self._m_refcount_order

        self._m_refcount_order = (self.header.refcount_order if self.header.version >= 3 else 4)
        return getattr(self, '_m_refcount_order', None)

    @property
    def refcount_table(self):
        """The refcount table, refcount_table_clusters clusters long.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#host-cluster-management
        """
        if hasattr(self, '_m_refcount_table'):
            return self._m_refcount_table

        _pos = self._io.pos()
        self._io.seek(self.header.ofs_refcount_table)
        self._raw__m_refcount_table = self._io.read_bytes(self.header.num_refcount_table_clusters * self.cluster_size)
        _io__raw__m_refcount_table = KaitaiStream(BytesIO(self._raw__m_refcount_table))
        self._m_refcount_table = Qcow2.RefcountTable(_io__raw__m_refcount_table, self, self._root)
        self._io.seek(_pos)
        return getattr(self, '_m_refcount_table', None)

    @property
    def snapshot_table(self):
        """Internal snapshot table entries, each padded to 8 bytes.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#snapshots
        """
        if hasattr(self, '_m_snapshot_table'):
            return self._m_snapshot_table

        if self.header.num_snapshots > 0:
            pass
            _pos = self._io.pos()
            self._io.seek(self.header.ofs_snapshot_table)
            self._m_snapshot_table = []
            for i in range(self.header.num_snapshots):
                self._m_snapshot_table.append(Qcow2.SnapshotTableEntry(self._io, self, self._root))

            self._io.seek(_pos)

        return getattr(self, '_m_snapshot_table', None)


