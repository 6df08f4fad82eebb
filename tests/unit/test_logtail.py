"""Unit tests for kdist.engine.logtail: stamped log lines and the excerpt a failed slice shows."""

from __future__ import annotations

import re
from pathlib import Path

from kdist.engine.logtail import excerpt, stamp, trim, unstamp


def test_stamp_is_utc_with_milliseconds() -> None:
    """A stamped line starts with the UTC time to the millisecond, then the line unchanged."""
    assert stamp("go build ./...", now=1767323045.678) == "2026-01-02T03:04:05.678Z go build ./..."


def test_stamp_stamps_every_line_of_a_message() -> None:
    """A multi-line message (an error with its tail) gets a stamp on each line."""
    assert stamp("a\nb", now=0.5).splitlines() == [
        "1970-01-01T00:00:00.500Z a",
        "1970-01-01T00:00:00.500Z b",
    ]


def test_unstamp_gives_back_what_the_build_printed() -> None:
    """Only a leading stamp is removed; a stamp-like text later in the line stays."""
    line = "x 2026-01-02T03:04:05.678Z y"
    assert unstamp(stamp(line)) == line
    assert unstamp(line) == line


def test_trim_drops_noise_and_keeps_the_last_lines() -> None:
    """Blank lines, kdist's lines, make's directory changes, colours and overwritten progress go."""
    lines = [
        stamp("# kdist: attempt r-linux-amd64-1: linux/amd64 on h1"),
        stamp("$ make binaries"),
        stamp("make[1]: Entering directory '/w/tree'"),
        stamp(""),
        stamp("   "),
        stamp("\x1b[31mmain.go:3:2: undefined: x\x1b[0m"),
        stamp("10%\r50%\r100% done"),
        stamp("make[1]: Leaving directory '/w/tree'"),
        stamp("make: *** [Makefile:9: crictl] Error 1"),
        stamp("# kdist: build failed: h1: linux/amd64: build failed (exit 2)"),
    ]
    assert trim(lines) == [
        "$ make binaries",
        "main.go:3:2: undefined: x",
        "100% done",
        "make: *** [Makefile:9: crictl] Error 1",
    ]
    assert trim(lines, 2) == ["100% done", "make: *** [Makefile:9: crictl] Error 1"]


def test_excerpt_reads_only_the_end_of_a_big_log(tmp_path: Path) -> None:
    """A log of a megabyte and more gives its last lines, never a cut first line."""
    log = tmp_path / "linux-amd64.log"
    stamped = stamp("")
    log.write_text("".join(f"{stamped}line {i:06d} {'x' * 200}\n" for i in range(6000)))
    assert [ln[:11] for ln in excerpt(log, 2)] == ["line 005998", "line 005999"]
    everything_read = excerpt(log, 6000)
    assert 200 < len(everything_read) < 6000
    assert all(re.fullmatch(r"line \d{6} x{200}", ln) for ln in everything_read)


def test_excerpt_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    """No log file (the slice never started) gives no lines, not an error."""
    assert excerpt(tmp_path / "none.log") == []
