"""Where two builds of one file differ: the first differing offset and its section.

When diffoscope is installed, its report says the rest.
"""

from __future__ import annotations

import mmap
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kdist.packaging import objfile

CHUNK = 1 << 20
DIFFOSCOPE_TIMEOUT = 300.0  # seconds; a report is a help, never a reason to hang a release


@dataclass(frozen=True)
class Difference:
    """How one file differs between two builds."""

    name: str
    size_a: int
    size_b: int
    offset: int  # first differing byte (== the shorter size when one is a prefix of the other)
    section: str | None  # the section (ELF, PE, Mach-O) holding that byte, if known
    differing_bytes: int  # bytes that differ within the common length
    sections: tuple[str, ...] = ()  # every section whose bytes differ, in file order

    def describe(self) -> str:
        """One line: sizes, first differing offset and its section."""
        where = f"first difference at offset {self.offset:#x}"
        if self.section:
            where += f" (section {self.section})"
        sizes = (
            f"{self.size_a} bytes"
            if self.size_a == self.size_b
            else f"{self.size_a} vs {self.size_b} bytes"
        )
        text = f"{self.name}: {sizes}, {where}, {self.differing_bytes} bytes differ"
        if self.sections:
            text += f"; sections that differ: {', '.join(self.sections)}"
        return text


def compare(a: Path, b: Path) -> Difference | None:
    """None when the files are identical; else where they first differ."""
    size_a, size_b = a.stat().st_size, b.stat().st_size
    offset, count = _scan(a, b)
    if offset is None:
        if size_a == size_b:
            return None
        offset = min(size_a, size_b)
    return Difference(
        a.name, size_a, size_b, offset, section_of(a, offset), count, differing_sections(a, b)
    )


def differing_sections(a: Path, b: Path, limit: int = 8) -> tuple[str, ...]:
    """Names of the sections whose contents differ (both files must be executables)."""
    if not a.stat().st_size or not b.stat().st_size:
        return ()
    with (
        a.open("rb") as fa,
        b.open("rb") as fb,
        mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ) as ma,
        mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ) as mb,
    ):
        try:
            oa, ob = objfile.parse(ma), objfile.parse(mb)
        except objfile.Malformed:
            return ()
        if oa is None or ob is None:
            return ()
        theirs = {s.name: s for s in ob.sections}
        found = [
            s.name
            for s in sorted(oa.sections, key=lambda s: s.offset)
            if s.name in theirs and _bytes(ma, s) != _bytes(mb, theirs[s.name])
        ]
    return tuple(found[:limit]) + (("...",) if len(found) > limit else ())


def _bytes(image: mmap.mmap, region: objfile.Region) -> bytes:
    return image[region.offset : region.offset + region.size]


def _scan(a: Path, b: Path) -> tuple[int | None, int]:
    """First differing offset within the common length, and how many bytes differ there."""
    first: int | None = None
    count = 0
    at = 0
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            common = min(len(ca), len(cb))
            if not common:
                return first, count
            if ca[:common] != cb[:common]:
                diffs = [i for i in range(common) if ca[i] != cb[i]]
                if first is None:
                    first = at + diffs[0]
                count += len(diffs)
            at += common


def section_of(path: Path, offset: int) -> str | None:
    """The name of the section that holds `offset` in an executable, or None."""
    if path.stat().st_size == 0:
        return None
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        try:
            obj = objfile.parse(m)
        except objfile.Malformed:
            return None
    return None if obj is None else obj.section_at(offset)


def diffoscope(a: Path, b: Path, report: Path) -> Path | None:
    """Write diffoscope's text report of a vs b to `report`; None when it is not installed."""
    tool = shutil.which("diffoscope")
    if tool is None:
        return None
    report.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [tool, "--text", str(report), "--no-progress", str(a), str(b)],
            capture_output=True,
            check=False,
            timeout=DIFFOSCOPE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return report if report.is_file() else None
