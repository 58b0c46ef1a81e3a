# This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild
# type: ignore

import kaitaistruct
from kaitaistruct import KaitaiStruct, KaitaiStream, BytesIO
from enum import IntEnum


if getattr(kaitaistruct, 'API_VERSION', (0, 9)) < (0, 11):
    raise Exception("Incompatible Kaitai Struct Python API: 0.11 or later is required, but you have %s" % (kaitaistruct.__version__))

class Qcow2Zoned(KaitaiStruct):
    """Body of the qcow2 header extension with magic 0x007a6264 ("zbd"), as laid
    out in v10 of the series "Add full zoned storage emulation to qcow2 driver"
    (qemu-devel, May 2026; not merged). The extension is present if and only if
    incompatible feature bit 5 is set. All numbers are big-endian, the zonedmeta
    table included (our clause WP-2 resolves the posted code's host-endian
    table as non-conformant).
    
    Sample images: `qcow2-harness corpus build` writes zoned images made by the
    reference writer.
    
    .. seealso::
       spec/SPEC.md ZONE-1
    """

    class ZonedModel(IntEnum):
        not_zoned = 0
        host_managed = 1
    def __init__(self, _io, _parent=None, _root=None):
        super(Qcow2Zoned, self).__init__(_io)
        self._parent = _parent
        self._root = _root or self
        self._read()

    def _read(self):
        self.zoned_model = KaitaiStream.resolve_enum(Qcow2Zoned.ZonedModel, self._io.read_u1())
        self.reserved = self._io.read_bytes(3)
        self.zone_size = self._io.read_u8be()
        self.zone_capacity = self._io.read_u8be()
        self.num_conventional_zones = self._io.read_u4be()
        self.num_zones = self._io.read_u4be()
        self.max_active_zones = self._io.read_u4be()
        self.max_open_zones = self._io.read_u4be()
        self.max_append_bytes = self._io.read_u4be()
        self.len_zonedmeta = self._io.read_u8be()
        self.ofs_zonedmeta = self._io.read_u8be()


    def _fetch_instances(self):
        pass

    class ZonedmetaEntry(KaitaiStruct):
        """Absolute image byte offset of a zone's write pointer. Bit 59 marks a
        conventional zone, whose entry is zone_start | 1 << 59. Bits 59-63 are
        not part of the offset.
        
        .. seealso::
           spec/SPEC.md WP-1
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(Qcow2Zoned.ZonedmetaEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.raw = self._io.read_u8be()


        def _fetch_instances(self):
            pass

        @property
        def is_conventional(self):
            """Bit 59, set on exactly the first num_conventional_zones entries.
            
            .. seealso::
               spec/SPEC.md WP-4
            """
            if hasattr(self, '_m_is_conventional'):
                return self._m_is_conventional

            self._m_is_conventional = self.raw >> 59 & 1 == 1
            return getattr(self, '_m_is_conventional', None)

        @property
        def reserved_bits(self):
            """Bits 60-63; must be zero (v5/v6 drafts kept state here).
            
            .. seealso::
               spec/SPEC.md WP-3
            """
            if hasattr(self, '_m_reserved_bits'):
                return self._m_reserved_bits

            self._m_reserved_bits = self.raw >> 60
            return getattr(self, '_m_reserved_bits', None)

        @property
        def write_pointer(self):
            """Bits 0-58, the write pointer (or zone start for a conventional zone).
            
            .. seealso::
               spec/SPEC.md WP-6
            """
            if hasattr(self, '_m_write_pointer'):
                return self._m_write_pointer

            self._m_write_pointer = self.raw & 576460752303423487
            return getattr(self, '_m_write_pointer', None)


    class ZonedmetaTable(KaitaiStruct):
        """The write-pointer table: one entry per zone, in zone order. Reach it
        through the header extension's `zonedmeta` instance, which passes the
        number of zones.
        
        .. seealso::
           spec/SPEC.md WP-1
        """
        def __init__(self, num_entries, _io, _parent=None, _root=None):
            super(Qcow2Zoned.ZonedmetaTable, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.num_entries = num_entries
            self._read()

        def _read(self):
            self.entries = []
            for i in range(self.num_entries):
                self.entries.append(Qcow2Zoned.ZonedmetaEntry(self._io, self, self._root))



        def _fetch_instances(self):
            pass
            for i in range(len(self.entries)):
                pass
                self.entries[i]._fetch_instances()



    @property
    def is_host_managed(self):
        """True when the image emulates a host-managed zoned device.
        
        .. seealso::
           spec/SPEC.md ZONE-4
        """
        if hasattr(self, '_m_is_host_managed'):
            return self._m_is_host_managed

        self._m_is_host_managed = self.zoned_model == Qcow2Zoned.ZonedModel.host_managed
        return getattr(self, '_m_is_host_managed', None)

    @property
    def num_sequential_zones(self):
        """Zones that have a write pointer.
        
        .. seealso::
           spec/SPEC.md ZONE-12
        """
        if hasattr(self, '_m_num_sequential_zones'):
            return self._m_num_sequential_zones

        self._m_num_sequential_zones = (self.num_zones - self.num_conventional_zones if self.num_zones > self.num_conventional_zones else 0)
        return getattr(self, '_m_num_sequential_zones', None)


