"""Read the target os/arch of an executable from its header (ELF, PE, Mach-O); pure."""

from __future__ import annotations

import struct

from kdist.model import Platform

_ELF_MACHINE = {3: "386", 8: "mips64le", 40: "arm", 62: "amd64", 183: "arm64", 22: "s390x",
                243: "riscv64", 258: "loong64"}  # fmt: skip
_PE_MACHINE = {0x14C: "386", 0x8664: "amd64", 0xAA64: "arm64", 0x1C4: "arm"}
_MACHO_CPU = {0x01000007: "amd64", 0x0100000C: "arm64", 7: "386", 12: "arm"}
HEADER_BYTES = 4096


def _elf(head: bytes) -> Platform | None:
    if len(head) < 20:  # e_ident (16) + e_type (2) + e_machine (2)
        return None
    little = head[5] == 1
    (machine,) = struct.unpack_from("<H" if little else ">H", head, 18)
    if machine == 21:  # EM_PPC64: the byte order tells ppc64le from ppc64
        return Platform("linux", "ppc64le" if little else "ppc64")
    arch = _ELF_MACHINE.get(machine)
    if arch == "mips64le" and not (little and head[4] == 2):  # 64-bit little-endian only
        return None
    return Platform("linux", arch) if arch else None


def _pe(head: bytes) -> Platform | None:
    (offset,) = struct.unpack_from("<I", head, 0x3C)
    if offset + 6 > len(head) or head[offset : offset + 4] != b"PE\0\0":
        return None
    (machine,) = struct.unpack_from("<H", head, offset + 4)
    arch = _PE_MACHINE.get(machine)
    return Platform("windows", arch) if arch else None


def _macho(head: bytes) -> Platform | None:
    (cpu,) = struct.unpack_from("<I", head, 4)
    arch = _MACHO_CPU.get(cpu)
    return Platform("darwin", arch) if arch else None


def detect(head: bytes) -> Platform | None:
    """The platform an executable was built for, from its first bytes; None if not recognised.

    ELF is reported as linux: the ELF header does not say which OS (Go leaves OSABI at 0).
    """
    try:
        if head[:4] == b"\x7fELF":
            return _elf(head)
        if head[:2] == b"MZ":
            return _pe(head)
        if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe"):
            return _macho(head)
    except struct.error:
        return None
    return None


def matches(head: bytes, platform: Platform) -> bool:
    """True when the header says `platform` (ELF: any ELF OS counts as the platform's OS)."""
    found = detect(head)
    if found is None:
        return False
    if head[:4] == b"\x7fELF":
        return found.arch == platform.arch and platform.os not in ("windows", "darwin")
    return found == platform
