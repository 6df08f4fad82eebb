"""Unit tests for kdist.stages.binfmt: ELF, PE and Mach-O headers built by hand, and garbage."""

from __future__ import annotations

import platform
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdist.model import Platform
from kdist.stages.binfmt import HEADER_BYTES, detect, matches

ELF_MAGIC = b"\x7fELF"
MACHO64 = b"\xcf\xfa\xed\xfe"
MACHO32 = b"\xce\xfa\xed\xfe"


def _elf(machine: int, *, bits: int = 64, little: bool = True) -> bytes:
    """A minimal ELF header: e_ident, e_type=EXEC, e_machine, e_version, padded to 64 bytes."""
    ident = ELF_MAGIC + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    rest = struct.pack("<HHI" if little else ">HHI", 2, machine, 1)
    return (ident + rest).ljust(64, b"\0")


def _pe(machine: int, e_lfanew: int = 0x80) -> bytes:
    """A minimal PE image: MZ, e_lfanew at 0x3C, then the PE signature and the COFF machine."""
    head = bytearray(e_lfanew + 24)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, e_lfanew)
    head[e_lfanew : e_lfanew + 4] = b"PE\0\0"
    struct.pack_into("<H", head, e_lfanew + 4, machine)
    return bytes(head)


def _macho(cpu: int, magic: bytes = MACHO64) -> bytes:
    """A minimal little-endian Mach-O header: magic, cputype, cpusubtype, filetype."""
    return magic + struct.pack("<IiI", cpu, 3, 2) + bytes(16)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_elf(62), "linux/amd64"),
        (_elf(183), "linux/arm64"),
        (_elf(22, little=False), "linux/s390x"),
        (_elf(21, little=True), "linux/ppc64le"),
        (_elf(21, little=False), "linux/ppc64"),
        (_elf(243), "linux/riscv64"),
        (_elf(258), "linux/loong64"),
        (_elf(3, bits=32), "linux/386"),
        (_elf(40, bits=32), "linux/arm"),
        (_pe(0x14C), "windows/386"),
        (_pe(0x8664), "windows/amd64"),
        (_pe(0xAA64), "windows/arm64"),
        (_pe(0x8664, e_lfanew=0x40), "windows/amd64"),
        (_macho(0x01000007), "darwin/amd64"),
        (_macho(0x0100000C), "darwin/arm64"),
        (_macho(7, MACHO32), "darwin/386"),
    ],
)
def test_detect_hand_built_headers(head: bytes, expected: str) -> None:
    """Each hand-built header is recognised as the right os/arch."""
    assert str(detect(head)) == expected


def test_elf_byte_order_is_read_from_e_ident() -> None:
    """The machine field is read in the byte order e_ident declares (s390x is big-endian)."""
    # 22 = EM_S390; read little-endian the big-endian field would be 0x1600 and unknown.
    assert detect(_elf(22, little=False)) == Platform("linux", "s390x")
    assert detect(_elf(0x1600, little=True)) is None


def test_matches_elf_for_any_unix_os_of_the_same_arch() -> None:
    """ELF matches a platform of the same arch on any non-Windows, non-Darwin OS."""
    head = _elf(183)
    assert matches(head, Platform("linux", "arm64"))
    assert matches(head, Platform("freebsd", "arm64"))
    assert not matches(head, Platform("linux", "amd64"))
    assert not matches(head, Platform("darwin", "arm64"))
    assert not matches(head, Platform("windows", "arm64"))


def test_matches_pe_and_macho_need_the_exact_platform() -> None:
    """PE and Mach-O only match their own OS and arch."""
    assert matches(_pe(0x8664), Platform("windows", "amd64"))
    assert not matches(_pe(0x8664), Platform("linux", "amd64"))
    assert not matches(_pe(0x8664), Platform("windows", "arm64"))
    assert matches(_macho(0x0100000C), Platform("darwin", "arm64"))
    assert not matches(_macho(0x0100000C), Platform("darwin", "amd64"))
    assert not matches(b"garbage", Platform("linux", "amd64"))


def test_ppc64_byte_order_decides_matches() -> None:
    """A big-endian ppc64 binary does not pass as ppc64le, nor the other way round."""
    assert matches(_elf(21, little=True), Platform("linux", "ppc64le"))
    assert not matches(_elf(21, little=False), Platform("linux", "ppc64le"))
    assert matches(_elf(21, little=False), Platform("linux", "ppc64"))


def test_bin_ls_is_linux_amd64() -> None:
    """The head node's own /bin/ls is detected as linux/amd64."""
    if platform.machine() != "x86_64" or not Path("/bin/ls").is_file():
        pytest.skip("needs an x86-64 Linux test machine")
    with Path("/bin/ls").open("rb") as f:
        head = f.read(HEADER_BYTES)
    assert detect(head) == Platform("linux", "amd64")
    assert matches(head, Platform("linux", "amd64"))
    assert not matches(head, Platform("linux", "arm64"))


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\0",
        b"\0" * 4096,
        b"#!/bin/sh\necho hi\n",
        b"MZ",
        b"MZ" + b"\0" * 10,
        _pe(0x8664)[:0x40],  # e_lfanew points past the end
        _pe(0x8664)[:0x84],  # PE signature but no machine
        _pe(0x1234),  # unknown machine
        b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0xFFFFFFFF),  # huge e_lfanew
        _pe(0x8664).replace(b"PE\0\0", b"NE\0\0"),
        MACHO64,
        MACHO64 + b"\x07",
        _macho(0x12345678),
        b"\xfe\xed\xfa\xcf" + bytes(28),  # big-endian Mach-O: not produced by Go
        b"\xca\xfe\xba\xbe" + bytes(28),  # fat binary
        _elf(62)[:6],
        _elf(62)[:19],
        _elf(0),
        _elf(9999),
    ],
)
def test_garbage_and_truncated_input_is_none(head: bytes) -> None:
    """Unknown, garbage or truncated headers give None (and match nothing), never an exception."""
    assert detect(head) is None
    assert not matches(head, Platform("linux", "amd64"))


@pytest.mark.parametrize(
    "full", [_elf(62), _elf(21, little=False), _pe(0x8664), _macho(0x0100000C)]
)
def test_every_truncation_is_none_or_right(full: bytes) -> None:
    """Each prefix of a valid header gives None or the full header's platform, never raises."""
    expected = detect(full)
    for n in range(len(full) + 1):
        assert detect(full[:n]) in (None, expected), n


@pytest.mark.parametrize("head", [ELF_MAGIC, ELF_MAGIC + b"\x02"])
def test_elf_magic_alone_is_none(head: bytes) -> None:
    """Four or five bytes of ELF magic are not a header: None, not IndexError."""
    assert detect(head) is None


_magic = st.sampled_from((ELF_MAGIC + b"\x02\x01", b"MZ", MACHO64, MACHO32, b""))


@settings(max_examples=300, deadline=None, database=None)
@given(prefix=_magic, tail=st.binary(max_size=300))
def test_random_bytes_never_raise(prefix: bytes, tail: bytes) -> None:
    """Random bytes after each magic number give a Platform or None, never an exception."""
    found = detect(prefix + tail)
    assert found is None or isinstance(found, Platform)
    assert isinstance(matches(prefix + tail, Platform("linux", "amd64")), bool)
