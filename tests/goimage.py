"""Synthetic Go executables: an ELF file whose only content is a Go build information blob.

They stand in for binaries no toolchain here can make any more: the pointer format of Go
before 1.18 (32- and 64-bit, both byte orders). `go version -m` reads them like real ones.
"""

from __future__ import annotations

import struct

MAGIC = b"\xff Go buildinf:"
BASE = 0x400000
INFO_START = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"  # cmd/go's sentinels
INFO_END = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"


def framed(modinfo: str) -> bytes:
    """Module text as cmd/go embeds it, between its two 16-byte sentinels."""
    return INFO_START + modinfo.encode() + INFO_END


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def inline_blob(version: str, modinfo: str, ptr: int = 8) -> bytes:
    """The Go 1.18+ blob: 32-byte header, then two varint-prefixed strings."""
    header = MAGIC + bytes([ptr, 0x2]) + b"\0" * 16
    mod = framed(modinfo)
    return header + _varint(len(version)) + version.encode() + _varint(len(mod)) + mod


def pointer_blob(version: str, modinfo: str, addr: int, ptr: int, big: bool) -> bytes:
    """The pre-1.18 blob at address `addr`: header with two pointers to Go string headers."""
    order = ">" if big else "<"
    word = "Q" if ptr == 8 else "I"
    mod = framed(modinfo)
    headers_at = addr + 32
    data_at = headers_at + 4 * ptr
    vers_hdr = struct.pack(order + word * 2, data_at, len(version))
    mod_hdr = struct.pack(order + word * 2, data_at + len(version), len(mod))
    pointers = struct.pack(order + word * 2, headers_at, headers_at + 2 * ptr)
    header = (MAGIC + bytes([ptr, 0x1 if big else 0x0]) + pointers).ljust(32, b"\0")
    return header + vers_hdr + mod_hdr + version.encode() + mod


def elf(blob_at: int, make_blob: object, *, wide: bool = True, big: bool = False) -> bytes:
    """An ELF executable with one PT_LOAD segment and a `.go.buildinfo` section.

    `make_blob(addr)` returns the section's bytes given its load address.
    """
    order = ">" if big else "<"
    ehsize, phsize, shsize = (64, 56, 64) if wide else (52, 32, 40)
    data_off = blob_at
    blob = make_blob(BASE + data_off)  # type: ignore[operator]
    names = b"\0.go.buildinfo\0.shstrtab\0"
    names_off = data_off + len(blob)
    shoff = (names_off + len(names) + 7) // 8 * 8
    total = shoff + 3 * shsize
    machine = 62 if not big else (22 if wide else 8)  # x86-64, s390x, MIPS
    ident = b"\x7fELF" + bytes([2 if wide else 1, 2 if big else 1, 1]) + b"\0" * 9
    if wide:
        head = struct.pack(order + "HHIQQQIHHHHHH", 2, machine, 1, BASE, ehsize, shoff, 0,
                           ehsize, phsize, 1, shsize, 3, 2)
        prog = struct.pack(order + "IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    else:
        head = struct.pack(order + "HHIIIIIHHHHHH", 2, machine, 1, BASE, ehsize, shoff, 0,
                           ehsize, phsize, 1, shsize, 3, 2)
        prog = struct.pack(order + "IIIIIIII", 1, 0, BASE, BASE, total, total, 5, 0x1000)
    image = bytearray(total)
    image[: ehsize + phsize] = ident + head + prog
    image[data_off : data_off + len(blob)] = blob
    image[names_off : names_off + len(names)] = names
    sections = [(0, 0, 0, 0, 0, 0), (1, 1, 3, BASE + data_off, data_off, len(blob)),
                (15, 3, 0, 0, names_off, len(names))]
    for i, (name, kind, flags, addr, off, size) in enumerate(sections):
        fmt = "IIQQQQIIQQ" if wide else "IIIIIIIIII"
        image[shoff + i * shsize : shoff + (i + 1) * shsize] = struct.pack(
            order + fmt, name, kind, flags, addr, off, size, 0, 0, 16 if kind == 1 else 1, 0
        )
    return bytes(image)
