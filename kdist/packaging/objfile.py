"""The segment and section tables of an executable (ELF, PE, Mach-O); pure, no dependencies.

Enough to map a virtual address to a file offset (Go's build information), to name the
section a file offset lies in (where two builds differ), and to find where Go's linker put
its build information, the same way Go's own `debug/buildinfo` does.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

_PT_LOAD = 1
_SHT_NOBITS = 8
_PE_DATA = 0x40 | 0x40000000 | 0x80000000  # initialised data, readable, writable
_PE_ALIGN_32 = 0x600000
_LC_SEGMENT, _LC_SEGMENT_64 = 0x1, 0x19

Image = bytes | mmap.mmap  # a whole file in memory, or mapped


class Malformed(ValueError):
    """The header tables point outside the file or are cut short."""


@dataclass(frozen=True)
class Region:
    """A named range of the image: its address when loaded and its bytes in the file."""

    name: str
    addr: int
    offset: int
    size: int  # bytes present in the file (0 for .bss-like sections)

    def holds_addr(self, addr: int) -> bool:
        """True when `addr` is one of this region's bytes in the file."""
        return self.addr <= addr < self.addr + self.size

    def holds_offset(self, offset: int) -> bool:
        """True when file offset `offset` lies in this region."""
        return self.offset <= offset < self.offset + self.size


@dataclass(frozen=True)
class ObjFile:
    """What kdist needs from an executable's headers."""

    format: str  # elf | pe | macho
    segments: tuple[Region, ...]  # maps addresses to file offsets
    sections: tuple[Region, ...]
    data: Region | None  # where Go's linker put the build information (start, size)

    def locate(self, addr: int) -> tuple[int, int] | None:
        """File offset of `addr` and the end of its segment in the file; None if unmapped."""
        for seg in self.segments:
            if seg.holds_addr(addr):
                return seg.offset + addr - seg.addr, seg.offset + seg.size
        return None

    def section_at(self, offset: int) -> str | None:
        """The name of the section holding file offset `offset` (None: headers or padding)."""
        return next((s.name for s in self.sections if s.size and s.holds_offset(offset)), None)


def parse(image: Image) -> ObjFile | None:
    """The tables of an ELF, PE or Mach-O image; None for other formats.

    Raises Malformed when the image claims a format but its tables do not fit.
    """
    try:
        if image[:4] == b"\x7fELF":
            return _elf(image)
        if image[:2] == b"MZ":
            return _pe(image)
        if image[:4] in _MACHO_MAGIC:
            return _macho(image, *_MACHO_MAGIC[image[:4]])
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise Malformed(str(exc)) from exc
    return None


# ---------------------------------------------------------------- ELF

_ELF_LAYOUT = {  # class: (header fields, program header, section header)
    1: ("16xHHIIIIIHHHHHH", "IIIIIIII", "IIIIIIIIII"),
    2: ("16xHHIQQQIHHHHHH", "IIQQQQQQ", "IIQQQQIIQQ"),
}


def _elf(image: Image) -> ObjFile:
    order = "<" if image[5] == 1 else ">"
    header, phdr, shdr = _ELF_LAYOUT.get(image[4], _ELF_LAYOUT[2])
    _, _, _, _, phoff, shoff, _, _, phsize, phnum, shsize, shnum, shstrndx = struct.unpack_from(
        order + header, image
    )
    segments = []
    for i in range(phnum):
        fields = struct.unpack_from(order + phdr, image, phoff + i * phsize)
        if image[4] == 1:
            kind, offset, vaddr, _, filesz = fields[:5]
        else:
            kind, _, offset, vaddr, _, filesz = fields[:6]
        if kind == _PT_LOAD:
            segments.append(Region("", vaddr, offset, filesz))
    raw = [struct.unpack_from(order + shdr, image, shoff + i * shsize) for i in range(shnum)]
    names = raw[shstrndx][4] if raw else 0
    sections = tuple(_elf_section(image, names, s) for s in raw)
    data = next((s for s in sections if s.name == ".go.buildinfo"), None)
    return ObjFile("elf", tuple(segments), sections, data)


def _elf_section(image: Image, names: int, fields: tuple[int, ...]) -> Region:
    name_at, kind, _, addr, offset, size = fields[:6]
    in_file = 0 if kind == _SHT_NOBITS else size
    return Region(_cstring(image, names + name_at), addr, offset, in_file)


# ---------------------------------------------------------------- PE


def _pe(image: Image) -> ObjFile:
    (pe,) = struct.unpack_from("<I", image, 0x3C)
    if image[pe : pe + 4] != b"PE\0\0":
        msg = "MZ image without a PE header"
        raise Malformed(msg)
    _, count, _, _, _, opt_size, _ = struct.unpack_from("<HHIIIHH", image, pe + 4)
    opt = pe + 24
    (magic,) = struct.unpack_from("<H", image, opt)
    (base,) = struct.unpack_from("<Q", image, opt + 24) if magic == 0x20B else struct.unpack_from(
        "<I", image, opt + 28
    )
    sections, data = [], None
    for i in range(count):
        at = opt + opt_size + 40 * i
        vsize, vaddr, rawsize, rawptr = struct.unpack_from("<IIII", image, at + 8)
        (flags,) = struct.unpack_from("<I", image, at + 36)
        region = Region(_fixed(image, at, 8), base + vaddr, rawptr, rawsize)
        sections.append(region)
        if data is None and vaddr and vsize and flags & ~_PE_ALIGN_32 == _PE_DATA:
            data = Region(region.name, region.addr, rawptr, vsize)
    return ObjFile("pe", tuple(sections), tuple(sections), data)


# ---------------------------------------------------------------- Mach-O

_MACHO_MAGIC = {
    b"\xcf\xfa\xed\xfe": ("<", True),
    b"\xce\xfa\xed\xfe": ("<", False),
    b"\xfe\xed\xfa\xcf": (">", True),
    b"\xfe\xed\xfa\xce": (">", False),
}


def _macho(image: Image, order: str, wide: bool) -> ObjFile:
    (ncmds,) = struct.unpack_from(order + "I", image, 16)
    at = 32 if wide else 28
    segments: list[Region] = []
    sections: list[Region] = []
    for _ in range(ncmds):
        cmd, size = struct.unpack_from(order + "II", image, at)
        if cmd in (_LC_SEGMENT, _LC_SEGMENT_64):
            _macho_segment(image, order, at, cmd == _LC_SEGMENT_64, segments, sections)
        at += size
    data = next((s for s in sections if s.name == "__go_buildinfo"), None)
    return ObjFile("macho", tuple(segments), tuple(sections), data)


def _macho_segment(
    image: Image, order: str, at: int, wide: bool, segments: list[Region], sections: list[Region]
) -> None:
    word = "Q" if wide else "I"
    name = _fixed(image, at + 8, 16)
    addr, _, fileoff, filesize = struct.unpack_from(order + word * 4, image, at + 24)
    (nsects,) = struct.unpack_from(order + "I", image, at + (64 if wide else 48))
    if name != "__PAGEZERO":
        segments.append(Region(name, addr, fileoff, filesize))
    first, step = (at + 72, 80) if wide else (at + 56, 68)
    for i in range(nsects):
        entry = first + i * step
        sect = _fixed(image, entry, 16)
        s_addr, s_size = struct.unpack_from(order + word * 2, image, entry + 32)
        (offset,) = struct.unpack_from(order + "I", image, entry + (48 if wide else 40))
        sections.append(Region(sect, s_addr, offset, s_size if offset else 0))


def _cstring(image: Image, at: int) -> str:
    end = image.find(b"\0", at)
    if end < 0:
        msg = f"unterminated name at offset {at}"
        raise Malformed(msg)
    return bytes(image[at:end]).decode("utf-8", "replace")



def _fixed(image: Image, at: int, size: int) -> str:
    """A name in a fixed-size field, NUL-padded (or not, when it fills the field)."""
    return bytes(image[at : at + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
