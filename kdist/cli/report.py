"""Draw progress for humans: a rich live table on a terminal, plain tagged lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kdist.events import (
    Event,
    Note,
    NullReporter,
    OutputLine,
    PhaseStarted,
    PlanReady,
    Reporter,
    RunFinished,
    SliceFinished,
)
from kdist.model import Plan, Slice, SliceResult, Status

_log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("platform", "host", "status", "duration", "artifacts", "error")
TARBALL_COLUMNS = ("tarball", "sha256")
_MAX_LINE = 400  # the live view never needs more of an output line than this

_STATUS_STYLE = {
    Status.OK: "green",
    Status.FAILED: "red",
    Status.INFRA: "magenta",
    Status.INTEGRITY: "red",
    Status.CANCELLED: "yellow",
}
_NOTE_STYLE = {"info": "cyan", "warning": "yellow", "error": "bold red"}
# What each way of failing is called on screen (the README's exit code table says the same).
FAILURE_CLASS = {
    Status.FAILED: "build failure",
    Status.INFRA: "infrastructure failure",
    Status.INTEGRITY: "integrity violation",
    Status.CANCELLED: "cancelled",
}


# --- shared bookkeeping -------------------------------------------------------------------------


@dataclass
class _Row:
    """What the display knows about one slice."""

    slice: Slice
    phase: str = "queued"
    started: float | None = None
    line: str = ""
    result: SliceResult | None = None

    @property
    def ok(self) -> bool:
        """True when the slice finished ok."""
        return self.result is not None and self.result.ok


class _Board:
    """Per-slice state, keyed by Slice.key, in plan order."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}

    def load(self, plan: Plan) -> None:
        """Queue every slice of the plan."""
        self.rows = {s.key: _Row(s) for s in plan.slices}

    def finish(self, result: SliceResult) -> _Row:
        """Record a final result (adding the slice if the plan never mentioned it)."""
        row = self.rows.setdefault(result.slice.key, _Row(result.slice))
        row.slice = result.slice  # a slice that failed over finished on another host
        row.result = result
        row.phase = result.status.value
        if not result.ok and result.error:
            row.line = _first_line(result.error)
        return row

    def snapshot(self) -> list[_Row]:
        """Copy the rows, so another thread can update them while we iterate."""
        return list(self.rows.values())


def _first_line(text: str) -> str:
    """Return the first non-blank line of `text`, stripped."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _seconds(value: float) -> str:
    """Format a duration the way every view shows it."""
    return f"{value:.1f}s"


def _host_label(s: Slice) -> str:
    """Return the host name, marked when the slice is cross-compiled."""
    return f"{s.host} (cross)" if s.cross else s.host


def _summary_rows(rows: Sequence[_Row]) -> list[list[str]]:
    """One summary row per slice: platform, host, status, duration, #artifacts, error."""
    out: list[list[str]] = []
    for row in rows:
        res = row.result
        if res is None:
            out.append([str(row.slice.platform), row.slice.host, "unfinished", "", "", ""])
            continue
        out.append(
            [
                str(res.slice.platform),
                res.slice.host,
                res.status.value,
                _seconds(res.duration),
                str(len(res.artifacts)),
                _first_line(res.error),
            ]
        )
    return out


def _tarballs(summary: dict[str, object]) -> list[list[str]]:
    """Return (name, first 12 hex of sha256) rows of `summary["tarballs"]`, skipping junk."""
    items = summary.get("tarballs")
    if not isinstance(items, list):
        return []
    return [
        [str(item.get("name", "?")), str(item.get("sha256", ""))[:12]]
        for item in items
        if isinstance(item, dict)
    ]


def failure_block(result: SliceResult) -> tuple[str, list[str]]:
    """A failed slice as a heading and its lines: the error, the log path, the log's last lines."""
    where = f"{result.slice.platform} on {result.slice.host}"
    kind = FAILURE_CLASS.get(result.status, result.status.value)
    heading = f"FAILED {where}: {kind} in {result.phase}"
    error = [ln.rstrip() for ln in result.error.splitlines() if ln.strip()]
    # Without a log excerpt the error's own lines (a command's tail) are the evidence.
    lines = error[:1] if result.excerpt else error
    if result.log:
        shown = f" (last {len(result.excerpt)} lines)" if result.excerpt else ""
        lines.append(f"log: {result.log}{shown}")
    lines += [f"| {ln}" for ln in result.excerpt]
    return heading, lines


def _failures(rows: Sequence[_Row]) -> list[tuple[str, list[str]]]:
    return [failure_block(r.result) for r in rows if r.result is not None and not r.result.ok]


def _verdict(ok: bool, summary: dict[str, object], rows: Sequence[_Row]) -> str:
    """Return the last line: the summary title, or "release ok" / "release FAILED: ..."."""
    title = summary.get("title")
    if isinstance(title, str) and title:
        return title
    if ok:
        return "release ok"
    failed = sum(1 for r in rows if not r.ok)
    if failed:
        return f"release FAILED: {failed} of {len(rows)} slices failed"
    return "release FAILED"


# --- plain text ---------------------------------------------------------------------------------


def _cell(value: str) -> str:
    """One plain cell: a single line, no runs of spaces (they separate columns), never empty."""
    return " ".join(value.split()) or "-"


def _plain_lines(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Header then one line per row, columns padded and separated by at least two spaces."""
    table = [[_cell(c) for c in columns]] + [[_cell(c) for c in row] for row in rows]
    count = max(len(r) for r in table)
    table = [r + ["-"] * (count - len(r)) for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(count)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _is_terminal(stream: TextIO) -> bool:
    """Tell whether `stream` is an open terminal."""
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed or detached
        return False


def _rich_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]], style: str = ""
) -> Table:
    """Build a rich table of plain-text cells (never markup)."""
    table = Table(title=title, title_style=style, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    return table


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    stream: TextIO | None = None,
    ok: bool = True,
) -> None:
    """Print a table: rich on a terminal, grep-friendly aligned columns (header first) otherwise."""
    out = stream if stream is not None else sys.stdout
    if _is_terminal(out):
        style = "bold green" if ok else "bold red"
        Console(file=out).print(_rich_table(title, columns, rows, style))
        return
    out.write("".join(line + "\n" for line in _plain_lines(columns, rows)))
    out.flush()


# --- reporters ----------------------------------------------------------------------------------


class RichReporter:
    """A live per-slice table on a terminal, notes above it, and a summary at the end."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        auto_refresh: bool = True,
        refresh_per_second: float = 4,
    ) -> None:
        self.console = console
        self.clock = clock
        self.auto_refresh = auto_refresh
        self.refresh_per_second = refresh_per_second
        self.errors: list[str] = []  # display failures swallowed by emit()
        self._board = _Board()
        self._live: Live | None = None

    def emit(self, event: Event) -> None:
        """Update the display; display errors are logged and kept in `errors`, never raised."""
        try:
            self._dispatch(event)
            if self._live is not None and not self.auto_refresh:
                self._live.refresh()
        except (Exception, SystemExit) as exc:  # rich exits on a broken pipe; the build must not
            self.errors.append(f"{type(exc).__name__}: {exc}")
            _log.debug("display error on %s", type(event).__name__, exc_info=True)

    def close(self) -> None:
        """Stop the live view (idempotent, never raises)."""
        live, self._live = self._live, None
        if live is None:
            return
        try:
            live.stop()
        except (Exception, SystemExit) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _dispatch(self, event: Event) -> None:
        """Route one event to its handler."""
        match event:
            case PlanReady(plan=plan):
                self._board.load(plan)
                self._start()
            case PhaseStarted(key=key, phase=phase):
                self._phase(key, phase)
            case OutputLine(key=key, line=line):
                row = self._board.rows.get(key)
                if row is not None:
                    row.line = line.rstrip()[:_MAX_LINE]
            case SliceFinished(result=result):
                self._board.finish(result)
            case Note(text=text, level=level):
                self._note(text, level)
            case RunFinished(ok=ok, summary=summary):
                self.close()
                self._summary(ok, summary)

    def _start(self) -> None:
        """Start (or keep) the live view."""
        if self._live is not None:
            return
        self._live = Live(
            console=self.console,
            get_renderable=self._render,
            transient=False,
            auto_refresh=self.auto_refresh,
            refresh_per_second=self.refresh_per_second,
        )
        self._live.start()

    def _phase(self, key: str, phase: str) -> None:
        """Move a slice into `phase`, starting its clock on the first one."""
        row = self._board.rows.get(key)
        if row is None or row.result is not None:
            return
        if row.started is None:
            row.started = self.clock()
        row.phase = phase

    def _note(self, text: str, level: str) -> None:
        """Print a note above the live view."""
        prefix = "" if level == "info" else f"{level}: "
        self.console.print(Text(prefix + text, style=_NOTE_STYLE.get(level, "")))

    def _elapsed(self, row: _Row) -> str:
        """Seconds since the slice's first phase, or its final duration."""
        if row.result is not None:
            return _seconds(row.result.duration)
        if row.started is None:
            return ""
        return _seconds(max(0.0, self.clock() - row.started))

    def _phase_text(self, row: _Row) -> Text:
        """Colour the phase cell by how things stand."""
        if row.result is not None:
            return Text(row.phase, style=_STATUS_STYLE.get(row.result.status, "red"))
        return Text(row.phase, style="dim" if row.started is None else "cyan")

    def _render(self) -> Table:
        """Draw the live table: one row per slice."""
        table = Table(expand=True)
        table.add_column("platform", no_wrap=True)
        table.add_column("host", no_wrap=True)
        table.add_column("phase", no_wrap=True)
        table.add_column("elapsed", no_wrap=True, justify="right")
        table.add_column("output", no_wrap=True, overflow="ellipsis", ratio=1)
        for row in self._board.snapshot():
            table.add_row(
                Text(str(row.slice.platform)),
                Text(_host_label(row.slice)),
                self._phase_text(row),
                Text(self._elapsed(row)),
                Text(row.line, style="dim"),
            )
        return table

    def _summary(self, ok: bool, summary: dict[str, object]) -> None:
        """Print the summary table, the tarballs and the verdict."""
        rows = self._board.snapshot()
        table = _rich_table("summary", SUMMARY_COLUMNS, [])
        for row, cells in zip(rows, _summary_rows(rows), strict=True):
            style = "green" if row.ok else "red"
            table.add_row(*(Text(c, style=style if i == 2 else "") for i, c in enumerate(cells)))
        self.console.print(table)
        tarballs = _tarballs(summary)
        if tarballs:
            self.console.print(_rich_table("tarballs", TARBALL_COLUMNS, tarballs))
        for heading, lines in _failures(rows):
            self.console.print(Text(heading, style="bold red"))
            for line in lines:
                self.console.print(Text("  " + line, style="" if line.startswith("|") else "red"))
        verdict = _verdict(ok, summary, rows)
        self.console.print(Text(verdict, style="bold green" if ok else "bold red"))


class PlainReporter:
    """One tagged, timestamp-free line per interesting event, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.errors: list[str] = []  # write failures swallowed by emit()
        self._board = _Board()

    def emit(self, event: Event) -> None:
        """Write the event's lines; write errors are kept in `errors`, never raised."""
        try:
            for line in self._lines(event):
                self.stream.write(line + "\n")
                self.stream.flush()
        except Exception as exc:  # a closed pipe must not break the build
            self.errors.append(f"{type(exc).__name__}: {exc}")
            _log.debug("plain report error on %s", type(event).__name__, exc_info=True)

    def close(self) -> None:
        """Flush the stream (never raises)."""
        try:
            self.stream.flush()
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _lines(self, event: Event) -> list[str]:
        """Return the lines one event is worth (none for output lines)."""
        match event:
            case PlanReady(plan=plan):
                self._board.load(plan)
                return [f"[plan] {s.platform} -> {_host_label(s)}" for s in plan.slices]
            case PhaseStarted(key=key, phase=phase):
                return [f"{self._tag(key)} {phase}"]
            case SliceFinished(result=result):
                self._board.finish(result)
                return [self._finished(result)]
            case Note(text=text, level=level):
                return [f"[{'note' if level == 'info' else level}] {text}"]
            case RunFinished(ok=ok, summary=summary):
                return self._summary(ok, summary)
        return []

    def _tag(self, key: str) -> str:
        """`[host os/arch]` for a slice key (the bare key if the plan never named it)."""
        row = self._board.rows.get(key)
        return f"[{row.slice.host} {row.slice.platform}]" if row else f"[{key}]"

    def _finished(self, result: SliceResult) -> str:
        """`ok in 12.3s (17 artifacts)` or `FAILED in build: <first error line>`."""
        tag = self._tag(result.slice.key)
        if result.ok:
            n = len(result.artifacts)
            noun = "artifact" if n == 1 else "artifacts"
            return f"{tag} ok in {_seconds(result.duration)} ({n} {noun})"
        error = _first_line(result.error)
        line = f"{tag} {result.status.value.upper()} in {result.phase}"
        return f"{line}: {error}" if error else line

    def _summary(self, ok: bool, summary: dict[str, object]) -> list[str]:
        """Return a blank line, the summary table, the tarball table and the verdict."""
        rows = self._board.snapshot()
        lines = [""]
        if rows:
            lines += _plain_lines(SUMMARY_COLUMNS, _summary_rows(rows))
        tarballs = _tarballs(summary)
        if tarballs:
            lines += _plain_lines(TARBALL_COLUMNS, tarballs)
        for heading, body in _failures(rows):
            lines += ["", heading, *(f"  {ln}" for ln in body)]
        return [*lines, _verdict(ok, summary, rows)]


def make_reporter(*, json_mode: bool, quiet: bool, stream: TextIO | None = None) -> Reporter:
    """Pick the reporter: silent for --json/--quiet, rich on a terminal, plain lines otherwise."""
    if json_mode or quiet:
        return NullReporter()
    out = stream if stream is not None else sys.stdout
    if _is_terminal(out):
        return RichReporter(Console(file=out))
    return PlainReporter(out)
