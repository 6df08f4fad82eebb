"""Slice log lines: stamped with the time on the way in, an excerpt of the end on the way out.

Each line of `OUTPUT/logs/<os>-<arch>.log` starts with the UTC time it arrived on the head
node (`2026-01-02T03:04:05.678Z `). When a slice fails, the screen and `--json` show the last
lines of its log without the noise: stamps, blank lines, kdist's own `# kdist:` lines (the error
is shown next to them), make's directory changes, colour codes and overwritten progress.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

EXCERPT_LINES = 15  # what a failed slice shows of its log
_READ_BYTES = 64 * 1024  # enough for EXCERPT_LINES of anything but pathological lines
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NOISE = (
    re.compile(r"^# kdist: "),
    re.compile(r"^make(\[\d+\])?: (Entering|Leaving) directory "),
)


def stamp(text: str, now: float | None = None) -> str:
    """Each line of `text` with the UTC time (milliseconds) in front, as the slice log keeps it."""
    moment = time.time() if now is None else now
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    prefix = f"{whole}.{int(moment * 1000) % 1000:03d}Z "
    return "\n".join(prefix + line for line in text.split("\n"))


def unstamp(line: str) -> str:
    """The line as the build printed it."""
    return _STAMP.sub("", line, count=1)


def trim(lines: list[str], count: int = EXCERPT_LINES) -> list[str]:
    """The last `count` lines that say something."""
    kept: list[str] = []
    for raw in lines:
        line = _ANSI.sub("", unstamp(raw)).rsplit("\r", 1)[-1].rstrip()
        if line.strip() and not any(p.search(line) for p in _NOISE):
            kept.append(line)
    return kept[-count:]


def excerpt(path: Path, count: int = EXCERPT_LINES) -> list[str]:
    """The last lines of a log file that say something ([] when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _READ_BYTES))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > _READ_BYTES:
        lines = lines[1:]  # the first one is probably cut
    return trim(lines, count)
