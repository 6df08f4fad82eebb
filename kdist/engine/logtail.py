"""Slice log lines: stamped with the time on the way in, an excerpt of the end on the way out.

Each line of `OUTPUT/logs/<os>-<arch>.log` starts with the UTC time it arrived on the head
node (`2026-01-02T03:04:05.678Z `). When a slice fails, the screen and `--json` show the last
lines of its log without the noise: stamps, blank lines, kdist's own `# kdist:` lines (the error
is shown next to them), make's directory changes, colour codes and overwritten progress.

A slice log never grows past its limit (`SliceLog`): a build that talks without end keeps its
first lines and its last ones, and one marker line between them says how much was dropped.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from kdist.model import KiB, format_size
from kdist.text import HOST_ERRORS, LOG_ERRORS, inert

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
    """The last `count` lines that say something, made inert (they are the host's words)."""
    kept: list[str] = []
    for raw in lines:
        line = _ANSI.sub("", unstamp(raw.rstrip("\r"))).rsplit("\r", 1)[-1].rstrip()
        if line.strip() and not any(p.search(line) for p in _NOISE):
            kept.append(inert(line))  # colour codes went above; any other control shows
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
    # Split on newlines only: str.splitlines() would also break at \x0b, \x1c-\x1e and \x85.
    lines = data.decode("utf-8", HOST_ERRORS).split("\n")
    if size > _READ_BYTES:
        lines = lines[1:]  # the first one is probably cut
    return trim(lines, count)


MARKER_ROOM = 256  # bytes the marker line may take
_MIN_SEGMENT = 4 * KiB


class SliceLog:
    """A slice's log file kept within `limit` bytes, whatever its host sends.

    Lines go to the file until it holds half the limit. Past that they go to two rolling tail
    files next to it, each a quarter of the limit: when the newer one is full, the older one is
    dropped and counted. `close()` appends one marker line saying how many bytes were dropped,
    then the tail, so the log still ends with the build's real last lines. Only one line at a
    time is ever held in memory. `on_truncate` is told once, when the first line goes to the tail.
    """

    def __init__(
        self, path: Path, limit: int, on_truncate: Callable[[], None] | None = None
    ) -> None:
        self.path, self.limit = path, limit
        self.dropped = 0  # bytes of whole lines (or of cut lines' ends) left out
        self._on_truncate = on_truncate
        self._file = path.open("ab")
        self._head = limit // 2
        # The tail fits in what the head leaves (a resumed log may already hold more).
        room = limit - max(self._file.tell(), self._head) - MARKER_ROOM
        self._segment = max(room // 2, _MIN_SEGMENT)
        self._tails = [path.with_name(f".{path.name}.tail{n}") for n in (0, 1)]
        self._newer: BinaryIO | None = None  # the tail file being written, once truncated

    @property
    def truncated(self) -> bool:
        """True once the log went past its first half and keeps only a rolling tail."""
        return self._newer is not None

    def write(self, line: str) -> None:
        """Stamp and keep one line (or a multi-line message), within the limit."""
        data = (stamp(line) + "\n").encode("utf-8", LOG_ERRORS)  # the host's bytes, as sent
        if self._newer is None and self._file.tell() + len(data) <= self._head:
            self._file.write(data)
            self._file.flush()  # so `tail -f` on the log follows the build
            return
        self._keep_in_tail(data)

    def _keep_in_tail(self, data: bytes) -> None:
        if self._newer is None:
            self._tails[0].write_bytes(b"")
            self._newer = self._tails[1].open("wb")
            if self._on_truncate is not None:
                self._on_truncate()
        if len(data) > self._segment:  # a line longer than a tail file: keep its start
            self.dropped += len(data) - self._segment
            data = data[: self._segment - 1] + b"\n"
        if self._newer.tell() + len(data) > self._segment:
            self.dropped += self._tails[0].stat().st_size
            self._newer.close()
            self._tails[1].replace(self._tails[0])
            self._newer = self._tails[1].open("wb")
        self._newer.write(data)

    def close(self) -> None:
        """Put the marker line and the tail into the log, and close it (idempotent)."""
        if self._file.closed:
            return
        try:
            if self._newer is not None:
                self._newer.close()
                self._file.write(self._marker())
                for tail in self._tails:
                    with tail.open("rb") as part:
                        shutil.copyfileobj(part, self._file)
        finally:
            self._file.close()
            for tail in self._tails:
                tail.unlink(missing_ok=True)

    def _marker(self) -> bytes:
        text = (
            f"# kdist: log over {format_size(self.limit)}: {self.dropped} bytes dropped here "
            "(the first part is above, the last lines below)"
        )
        return (stamp(text) + "\n").encode()[:MARKER_ROOM]

    def __enter__(self) -> SliceLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
