"""Where two builds of one file differ."""

from __future__ import annotations

from pathlib import Path

from kdist.packaging import difference
from tests import goimage

MODINFO = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n"


def _image(version: str) -> bytes:
    return goimage.elf(0x1000, lambda _: goimage.inline_blob(version, MODINFO))


def test_identical_files_have_no_difference(tmp_path: Path) -> None:
    """Same bytes: None."""
    (tmp_path / "a").write_bytes(_image("go1.22.4"))
    (tmp_path / "b").write_bytes(_image("go1.22.4"))
    assert difference.compare(tmp_path / "a", tmp_path / "b") is None


def test_first_difference_is_located_in_its_section(tmp_path: Path) -> None:
    """A byte changed in the build info is reported at its offset, in .go.buildinfo."""
    (tmp_path / "a").write_bytes(_image("go1.22.4"))
    (tmp_path / "b").write_bytes(_image("go1.22.5"))
    found = difference.compare(tmp_path / "a", tmp_path / "b")
    assert found is not None
    assert found.offset == 0x1000 + 32 + 1 + len("go1.22.")
    assert found.section == ".go.buildinfo"
    assert found.differing_bytes == 1
    assert "offset 0x1028 (section .go.buildinfo)" in found.describe()


def test_a_longer_file_differs_where_the_shorter_ends(tmp_path: Path) -> None:
    """When one file is a prefix of the other, the difference starts at the shorter length."""
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "b").write_bytes(b"abcdef")
    found = difference.compare(tmp_path / "a", tmp_path / "b")
    assert found is not None and found.offset == 3 and found.section is None
    assert "3 vs 6 bytes" in found.describe()


def test_every_differing_section_is_named(tmp_path: Path) -> None:
    """Sections whose bytes differ are listed, the unchanged ones are not."""
    (tmp_path / "a").write_bytes(_image("go1.22.4"))
    (tmp_path / "b").write_bytes(_image("go1.22.5"))
    found = difference.compare(tmp_path / "a", tmp_path / "b")
    assert found is not None and found.sections == (".go.buildinfo",)
    assert "sections that differ: .go.buildinfo" in found.describe()
