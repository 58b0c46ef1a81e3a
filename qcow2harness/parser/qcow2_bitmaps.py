# This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild
# type: ignore

import kaitaistruct
from kaitaistruct import KaitaiStruct, KaitaiStream, BytesIO


if getattr(kaitaistruct, 'API_VERSION', (0, 9)) < (0, 11):
    raise Exception("Incompatible Kaitai Struct Python API: 0.11 or later is required, but you have %s" % (kaitaistruct.__version__))

class Qcow2Bitmaps(KaitaiStruct):
    """Body of the qcow2 header extension with magic 0x23852875. The directory and
    tables it points at are reached from the main qcow2 description through the
    extension's `bitmap_directory` instance, which passes the file stream.
    Sample images: `qemu-img bitmap --add` on any qcow2 v3 image.
    
    .. seealso::
       Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmaps-extension
    """
    def __init__(self, _io, _parent=None, _root=None):
        super(Qcow2Bitmaps, self).__init__(_io)
        self._parent = _parent
        self._root = _root or self
        self._read()

    def _read(self):
        self.num_bitmaps = self._io.read_u4be()
        self.reserved = self._io.read_u4be()
        self.len_bitmap_directory = self._io.read_u8be()
        self.ofs_bitmap_directory = self._io.read_u8be()


    def _fetch_instances(self):
        pass

    class BitmapDirectory(KaitaiStruct):
        """All bitmap directory entries, back to back.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory
        """
        def __init__(self, file_io, _io, _parent=None, _root=None):
            super(Qcow2Bitmaps.BitmapDirectory, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.file_io = file_io
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                self.entries.append(Qcow2Bitmaps.BitmapDirectoryEntry(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class BitmapDirectoryEntry(KaitaiStruct):
        """One bitmap's directory entry, padded to a multiple of 8 bytes.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-directory
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2Bitmaps.BitmapDirectoryEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.ofs_bitmap_table = self._io.read_u8be()
            self.num_bitmap_table_entries = self._io.read_u4be()
            self.flags = self._io.read_u4be()
            self.bitmap_type = self._io.read_u1()
            self.granularity_bits = self._io.read_u1()
            self.len_name = self._io.read_u2be()
            self.len_extra_data = self._io.read_u4be()
            self.extra_data = self._io.read_bytes(self.len_extra_data)
            self.name = self._io.read_bytes(self.len_name)
            self.padding = self._io.read_bytes((8 - ((24 + self.len_extra_data) + self.len_name) % 8) % 8)


        def _fetch_instances(self):
            pass
            _ = self.bitmap_table
            if hasattr(self, '_m_bitmap_table'):
                pass
                self._m_bitmap_table._fetch_instances()


        @property
        def bitmap_table(self):
            """This bitmap's table, read from the image file.
            
            .. seealso::
               spec/SPEC.md BMP-11
            """
            if hasattr(self, '_m_bitmap_table'):
                return self._m_bitmap_table

            if self.ofs_bitmap_table != 0:
                pass
                io = self._parent.file_io
                _pos = io.pos()
                io.seek(self.ofs_bitmap_table)
                self._raw__m_bitmap_table = io.read_bytes(self.num_bitmap_table_entries * 8)
                _io__raw__m_bitmap_table = KaitaiStream(BytesIO(self._raw__m_bitmap_table))
                self._m_bitmap_table = Qcow2Bitmaps.BitmapTable(_io__raw__m_bitmap_table, self, self._root)
                io.seek(_pos)

            return getattr(self, '_m_bitmap_table', None)

        @property
        def is_auto(self):
            """The bitmap tracks guest writes.
            
            .. seealso::
               spec/SPEC.md BMP-6
            """
            if hasattr(self, '_m_is_auto'):
                return self._m_is_auto

            self._m_is_auto = self.flags & 2 != 0
            return getattr(self, '_m_is_auto', None)

        @property
        def is_in_use(self):
            """The bitmap was not saved cleanly and must not be trusted.
            
            .. seealso::
               spec/SPEC.md BMP-6
            """
            if hasattr(self, '_m_is_in_use'):
                return self._m_is_in_use

            self._m_is_in_use = self.flags & 1 != 0
            return getattr(self, '_m_is_in_use', None)

        @property
        def reserved_flags(self):
            """Unknown flag bits; must be zero.
            
            .. seealso::
               spec/SPEC.md BMP-6
            """
            if hasattr(self, '_m_reserved_flags'):
                return self._m_reserved_flags

            self._m_reserved_flags = self.flags & 4294967288
            return getattr(self, '_m_reserved_flags', None)


    class BitmapTable(KaitaiStruct):
        """Bitmap table; each entry points at one cluster of bitmap data.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2Bitmaps.BitmapTable, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.entries = []
            i = 0
            while not self._io.is_eof():
                self.entries.append(Qcow2Bitmaps.BitmapTableEntry(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    class BitmapTableEntry(KaitaiStruct):
        """One bitmap table entry.
        
        .. seealso::
           Source - https://gitlab.com/qemu-project/qemu/-/blob/0a233da8a02a6126140b9dbd3af29e6763a390b1/docs/interop/qcow2.rst#bitmap-table
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2Bitmaps.BitmapTableEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.raw = self._io.read_u8be()


        def _fetch_instances(self):
            pass

        @property
        def is_all_ones(self):
            """Bit 0, when the offset is 0, says the cluster reads as all ones.
            
            .. seealso::
               spec/SPEC.md BMP-12
            """
            if hasattr(self, '_m_is_all_ones'):
                return self._m_is_all_ones

            self._m_is_all_ones = self.raw & 1 == 1
            return getattr(self, '_m_is_all_ones', None)

        @property
        def ofs_bitmap_data(self):
            """Bits 9-55, cluster offset of the bitmap data; 0 = not allocated.
            
            .. seealso::
               spec/SPEC.md BMP-12
            """
            if hasattr(self, '_m_ofs_bitmap_data'):
                return self._m_ofs_bitmap_data

            self._m_ofs_bitmap_data = self.raw & 72057594037927424
            return getattr(self, '_m_ofs_bitmap_data', None)

        @property
        def reserved_bits(self):
            """Bits 1-8 and 56-63; must be zero.
            
            .. seealso::
               spec/SPEC.md BMP-13
            """
            if hasattr(self, '_m_reserved_bits'):
                return self._m_reserved_bits

            self._m_reserved_bits = self.raw & 18374686479671624190
            return getattr(self, '_m_reserved_bits', None)



