"""A stub project: a make build that copies a 64-byte executable header per platform.

No compiler and almost no CPU, so a release can spread over many hosts (`scripts/bench-farm200`,
the farm tests) while kdist still checks every artifact as it checks real binaries: the header
says the platform's executable format, machine and byte order.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

__all__ = ["STUB_PLATFORMS", "stub_header", "stub_project"]

# Platforms whose executables kdist recognises (ELF, PE, Mach-O), so a stub passes its checks.
STUB_PLATFORMS = tuple(
    f"{os_}/{arch}"
    for os_, arches in (
        ("linux", "amd64 arm64 386 arm s390x ppc64le ppc64 riscv64 loong64 mips64le"),
        ("freebsd", "amd64 arm64 386 arm riscv64"),
        ("netbsd", "amd64 arm64 386 arm"),
        ("openbsd", "amd64 arm64 386 arm"),
        ("windows", "amd64 386 arm64"),
        ("darwin", "amd64 arm64"),
    )
    for arch in arches.split()
)
# arch -> (ELF e_machine, class: 1 = 32-bit, 2 = 64-bit, data: 1 = little, 2 = big endian)
_ELF = {"amd64": (62, 2, 1), "arm64": (183, 2, 1), "386": (3, 1, 1), "arm": (40, 1, 1),
        "s390x": (22, 2, 2), "ppc64le": (21, 2, 1), "ppc64": (21, 2, 2),
        "riscv64": (243, 2, 1), "loong64": (258, 2, 1), "mips64le": (8, 2, 1)}  # fmt: skip
_PE = {"386": 0x14C, "amd64": 0x8664, "arm64": 0xAA64}
_MACHO = {"amd64": 0x01000007, "arm64": 0x0100000C}


def stub_header(platform: str) -> bytes:
    """The first bytes of an executable for `platform`: what kdist's collect checks."""
    os_, arch = platform.split("/")
    if os_ == "windows":
        pe = struct.pack("<I", 0x40) + b"PE\0\0" + struct.pack("<H", _PE[arch])
        return b"MZ" + bytes(0x3A) + pe
    if os_ == "darwin":
        return b"\xcf\xfa\xed\xfe" + struct.pack("<I", _MACHO[arch]) + bytes(24)
    machine, klass, data = _ELF[arch]
    order = "<" if data == 1 else ">"
    ident = b"\x7fELF" + bytes([klass, data, 1]) + bytes(9)
    return ident + struct.pack(f"{order}HH", 2, machine) + bytes(44)


def stub_project(source: Path, platforms: tuple[str, ...] = STUB_PLATFORMS) -> Path:
    """A generic kdist project in `source` (a git checkout tagged v1.0.0) building stubs."""
    (source / "stubs").mkdir(parents=True)
    for platform in platforms:
        (source / "stubs" / platform.replace("/", "-")).write_bytes(stub_header(platform))
    (source / "Makefile").write_text(
        "binaries:\n"
        "\tmkdir -p build/bin/$(GOOS)/$(GOARCH)\n"
        "\tcp stubs/$(GOOS)-$(GOARCH) build/bin/$(GOOS)/$(GOARCH)/stub\n"
        "\tchmod 755 build/bin/$(GOOS)/$(GOARCH)/stub\n"
    )
    (source / "kdist.yaml").write_text(
        "name: stub\nlayout: generic\n"
        f"platforms: [{', '.join(platforms)}]\n"
        "build: make binaries GOOS={os} GOARCH={arch}\n"
        "artifacts: build/bin/{os}/{arch}\n"
    )
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stub"], ["tag", "v1.0.0"]):
        subprocess.run(
            ["git", "-C", str(source), "-c", "user.name=b", "-c", "user.email=b@b", *args],
            check=True,
            capture_output=True,
        )
    return source
