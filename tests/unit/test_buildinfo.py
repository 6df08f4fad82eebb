"""The pure-Python reader of Go's embedded build information, on synthetic images."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdist.packaging import buildinfo, objfile
from tests import goimage

MODINFO = (
    "path\texample.com/app/cmd/app\n"
    "mod\texample.com/app\t(devel)\t\n"
    "dep\texample.com/semver\tv0.2.0\t\n"
    "dep\tgolang.org/x/text\tv0.3.0\th1:abc=\n"
    "=>\t../text\t(devel)\t\n"
    "build\t-ldflags=\"-s -w -X 'main.v=1 2'\"\n"
    "build\tCGO_ENABLED=0\n"
)


@pytest.mark.parametrize(("wide", "big"), [(True, False), (True, True), (False, False), (False, True)])
def test_pointer_format_of_old_go_is_read(wide: bool, big: bool) -> None:
    """The pre-1.18 layout (pointers to Go strings) is read in both widths and byte orders."""
    ptr = 8 if wide else 4
    image = goimage.elf(
        0x1000, lambda a: goimage.pointer_blob("go1.17.13", MODINFO, a, ptr, big), wide=wide, big=big
    )
    assert buildinfo.read_raw(image) == ("go1.17.13", MODINFO)


def test_inline_format_is_read_and_parsed() -> None:
    """The Go 1.18+ layout gives the version, main module, dependencies and settings."""
    image = goimage.elf(0x2000, lambda _: goimage.inline_blob("go1.22.4", MODINFO))
    raw = buildinfo.read_raw(image)
    assert raw is not None
    info = buildinfo.parse(*raw)
    assert info.go_version == "go1.22.4"
    assert info.path == "example.com/app/cmd/app"
    assert info.main == buildinfo.Module("example.com/app", "(devel)")
    assert [d.path for d in info.deps] == ["example.com/semver", "golang.org/x/text"]
    replaced = info.deps[1].replace
    assert replaced is not None and replaced.path == "../text"
    assert info.setting("-ldflags") == "-s -w -X 'main.v=1 2'"
    assert info.setting("CGO_ENABLED") == "0"


def test_magic_must_be_aligned() -> None:
    """A magic string at an unaligned address is not build information (Go's rule)."""
    blob = b"\0" * 8 + goimage.inline_blob("go1.22.4", MODINFO)
    image = goimage.elf(0x1000, lambda _: blob)
    assert buildinfo.read_raw(image) is None


def test_non_go_files_have_no_build_info(tmp_path: Path) -> None:
    """A script, an empty file and a truncated ELF are not Go binaries, and raise nothing."""
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    cut = tmp_path / "cut"
    cut.write_bytes(goimage.elf(0x1000, lambda _: goimage.inline_blob("go1.22", MODINFO))[:100])
    assert [buildinfo.read_file(p) for p in (script, empty, cut)] == [None, None, None]


def test_module_text_without_sentinels_is_dropped() -> None:
    """Module text that is not framed by cmd/go's sentinels is ignored, as Go ignores it."""
    header = goimage.MAGIC + bytes([8, 0x2]) + b"\0" * 16
    blob = header + bytes([8]) + b"go1.22.4" + bytes([5]) + b"hello"
    image = goimage.elf(0x1000, lambda _: blob)
    assert buildinfo.read_raw(image) == ("go1.22.4", "")


def test_section_of_an_offset_is_named() -> None:
    """The section table names the section that holds a file offset."""
    image = goimage.elf(0x1000, lambda _: goimage.inline_blob("go1.22.4", MODINFO))
    obj = objfile.parse(image)
    assert obj is not None
    assert obj.section_at(0x1004) == ".go.buildinfo"
    assert obj.section_at(0x10) is None  # the ELF header is in no section
