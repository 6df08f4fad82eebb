"""Draw progress for humans: a rich live table on a terminal, plain tagged lines elsewhere.

Host text was made inert where it entered the run (kdist.text); everything drawn here passes
`inert` once more as the final guard, so no event can put a control sequence on the terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from kdist.events import (
    Estimate,
    Event,
    Hedged,
    LogTruncated,
    Note,
    NullReporter,
    OutputLine,
    PhaseStarted,
    PlanReady,
    Reporter,
    RunFinished,
    RunStarted,
    SliceFinished,
    Transfer,
)
from kdist.model import Plan, Slice, SliceResult, Status
from kdist.text import inert

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
    host: str = ""  # the host of the current attempt
    attempt: int = 1
    moved_from: str = ""  # the host of the attempt before, when the slice moved
    pulled: int = 0  # bytes its pull moved so far
    twin: str = ""  # the host of a straggler's twin, while both build
    hedge: str = ""  # after a hedge: who won, who was stopped

    @property
    def ok(self) -> bool:
        """True when the slice finished ok."""
        return self.result is not None and self.result.ok


class _Board:
    """Per-slice state, keyed by Slice.key, in plan order."""

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.run: RunStarted | None = None
        self.synced: dict[str, int] = {}  # host -> bytes its sync moved so far
        self.estimate: tuple[float, float] | None = None  # (clock when told, seconds left)

    def load(self, plan: Plan) -> None:
        """Queue every slice of the plan."""
        self.rows = {s.key: _Row(s, host=s.host) for s in plan.slices}

    def phase(self, key: str, phase: str, host: str, attempt: int, now: float) -> _Row | None:
        """Move a slice into `phase` (on `host`, when an attempt starts there); its clock starts."""
        row = self.rows.get(key)
        if row is None or row.result is not None:
            return None
        if host and host == row.twin:
            return row  # the twin's phases: the row follows the straggler until one wins
        if host and host != row.host and row.started is not None:
            row.moved_from = row.host  # a new attempt elsewhere (the queue may pick any host)
        row.host = host or row.host
        if row.started is None:
            row.started = now
        row.attempt = attempt or row.attempt
        row.phase = phase
        return row

    def update(self, event: Transfer | Estimate | Hedged, now: float) -> None:
        """Bytes moved, a new estimate of the end (told at `now`), or a hedge."""
        if isinstance(event, Transfer):
            self.transfer(event)
        elif isinstance(event, Estimate):
            self.estimate = (now, event.remaining)
        else:
            self.hedged(event)

    def hedged(self, event: Hedged) -> _Row | None:
        """A straggler got a twin, or the race between them ended."""
        row = self.rows.get(event.key)
        if row is None:
            return None
        if not event.winner:
            row.twin = event.twin
            return row
        row.twin, row.host = "", event.winner
        stopped = f", {event.stopped} stopped" if event.stopped else ""
        row.hedge = f"hedged: {event.winner} won{stopped}"
        return row

    def transfer(self, event: Transfer) -> None:
        """Count a transfer's bytes: a host's sync, or a slice's pull."""
        if event.direction == "sync":
            self.synced[event.host] = event.done
        elif event.key in self.rows:
            self.rows[event.key].pulled = event.done

    def moved(self, row: _Row) -> str:
        """The bytes a slice is moving: its host's sync while it syncs, then its own pull."""
        if row.phase == "sync" and self.synced.get(row.host):
            return f"↑ {_bytes(self.synced[row.host])}"
        return f"↓ {_bytes(row.pulled)}" if row.pulled else ""

    def finish(self, result: SliceResult) -> _Row:
        """Record a final result (adding the slice if the plan never mentioned it)."""
        row = self.rows.setdefault(result.slice.key, _Row(result.slice))
        row.slice = result.slice  # a slice that failed over finished on another host
        if row.host and row.host != result.slice.host:
            row.moved_from = row.host
        row.host = result.slice.host
        row.result = result
        row.phase = result.status.value
        if not result.ok and result.error:
            row.line = _first_line(result.error)
        return row

    def snapshot(self) -> list[_Row]:
        """Copy the rows, so another thread can update them while we iterate."""
        return list(self.rows.values())


def _first_line(text: str) -> str:
    """Return the first non-blank line of `text`, stripped and inert."""
    return inert(next((ln.strip() for ln in text.split("\n") if ln.strip()), ""))


def _seconds(value: float) -> str:
    """Format a duration the way every view shows it."""
    return f"{value:.1f}s"


def _bytes(count: int) -> str:
    """Bytes as people read them: 812 B, 3.4 kB, 12.3 MB."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def _clock(seconds: float) -> str:
    """`0:01:05`: how rich shows elapsed time, so the ETA reads the same."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def header(run: RunStarted) -> str:
    """The live view's first line: command, project, version, run id, hosts and platforms."""
    hosts = " ".join(run.hosts)
    platforms = " ".join(run.platforms)
    return (
        f"kdist {run.command} {run.project} {run.version} · run {run.run_id} · "
        f"{len(run.hosts)} hosts: {hosts} · {len(run.platforms)} platforms: {platforms}"
    )


def eta(board: _Board, now: float) -> float | None:
    """Seconds until every slice is done, from how long slices took (None: nothing to go by).

    The scheduler's estimate wins when it gave one (it knows the queue and each host's speed).
    Otherwise a slice's guess is what the plan expected of it, else the mean of those (or of
    this run's finished slices); each host works through its share at its capacity, and the
    busiest host decides.
    """
    if board.estimate is not None:  # the scheduler's own estimate, made as slices moved
        told, remaining = board.estimate
        return max(remaining - (now - told), 0.0)
    run = board.run
    expected = dict(run.expected) if run is not None else {}
    capacity = dict(run.capacity) if run is not None else {}
    done = [r.result.duration for r in board.rows.values() if r.result and not r.result.reused]
    known = list(expected.values()) or done
    fallback = sum(known) / len(known) if known else None
    left: dict[str, float] = {}
    for key, row in board.rows.items():
        if row.result is not None:
            continue
        guess = expected.get(key, fallback)
        if guess is None:
            return None
        spent = now - row.started if row.started is not None else 0.0
        left[row.host] = left.get(row.host, 0.0) + max(guess - spent, 0.0)
    return max((v / max(capacity.get(h, 1), 1) for h, v in left.items()), default=0.0)


def final_paths(summary: dict[str, object]) -> list[tuple[str, str]]:
    """Where a run left its results: binaries or tarballs, logs, the JSON and the timeline."""
    found: list[tuple[str, str]] = []
    tarballs = summary.get("tarballs")
    if isinstance(tarballs, list) and tarballs and isinstance(tarballs[0], dict):
        first = str(tarballs[0].get("path", ""))
        if first:
            folder = Path(first).parent
            found.append(("tarballs", f"{folder} ({len(tarballs)} files, SHA256SUMS)"))
    slices = summary.get("slices")
    if summary.get("command") == "build" and isinstance(slices, list):
        for item in slices:
            if isinstance(item, dict) and item.get("status") == "ok":
                found.append(("binaries", str(item.get("binaries", ""))))
    for label, key in (("logs", "logs"), ("json", "document"), ("timeline", "timeline")):
        value = summary.get(key)
        if isinstance(value, str) and value:
            found.append((label, value))
    return found


def _host_label(s: Slice) -> str:
    """Return the host name, marked when the slice is cross-compiled."""
    return f"{s.host} (cross)" if s.cross else s.host


def _row_host(row: _Row) -> str:
    """The slice's current host; after a move, `h3 (from h2)`."""
    host = row.host or row.slice.host
    if row.twin:
        return f"{host} + twin on {row.twin}"
    if row.hedge:
        return f"{host} ({row.hedge})"
    if row.moved_from:
        return f"{host} (from {row.moved_from})"
    return f"{host} (cross)" if row.host == row.slice.host and row.slice.cross else host


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
    error = [inert(ln.rstrip()) for ln in result.error.split("\n") if ln.strip()]
    # Without a log excerpt the error's own lines (a command's tail) are the evidence.
    lines = error[:1] if result.excerpt else error
    if result.log:
        shown = f" (last {len(result.excerpt)} lines)" if result.excerpt else ""
        lines.append(f"log: {result.log}{shown}")
    lines += [f"| {inert(ln)}" for ln in result.excerpt]
    return heading, lines


def _failures(rows: Sequence[_Row]) -> list[tuple[str, list[str]]]:
    return [failure_block(r.result) for r in rows if r.result is not None and not r.result.ok]


def _path_lines(summary: dict[str, object]) -> list[str]:
    found = final_paths(summary)
    width = max((len(label) for label, _ in found), default=0)
    return [f"{label + ':':<{width + 1}} {path}" for label, path in found]


def _verdict(ok: bool, summary: dict[str, object], rows: Sequence[_Row]) -> str:
    """Return the last line: the summary title, or "release ok" / "release FAILED: ..."."""
    title = summary.get("title")
    if isinstance(title, str) and title:
        return inert(title)  # a failed test's first line can be the title
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
    cells = [columns, *rows]  # newlines become spaces in _cell, every other control an escape
    table = [[_cell(inert(c, newlines=True)) for c in row] for row in cells]
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
        table.add_row(*(Text(inert(c)) for c in row))
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
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("done · elapsed {task.fields[elapsed]} · {task.fields[eta]}"),
            get_time=clock,
        )
        self._task: TaskID | None = None
        self._origin = clock()  # the reporter is made when the command starts

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
            case RunStarted():
                self._board.run = event
            case PlanReady(plan=plan):
                self._board.load(plan)
                self._start()
            case PhaseStarted(key=key, phase=phase, host=host, attempt=attempt):
                self._board.phase(key, phase, host, attempt, self.clock())
            case Transfer() | Estimate() | Hedged():
                self._board.update(event, self.clock())
            case OutputLine(key=key, line=line):
                row = self._board.rows.get(key)
                if row is not None:
                    row.line = inert(line.rstrip()[:_MAX_LINE])
            case SliceFinished(result=result):
                self._board.finish(result)
            case Note(text=text, level=level) | LogTruncated(text=text, level=level):
                self._note(text, level)
            case RunFinished(ok=ok, summary=summary):
                self.close()
                self._summary(ok, summary)

    def _start(self) -> None:
        """Start (or keep) the live view."""
        if self._live is not None:
            return
        self._task = self._progress.add_task("slices", total=len(self._board.rows), eta="")
        self._live = Live(
            console=self.console,
            get_renderable=self._render,
            transient=False,
            auto_refresh=self.auto_refresh,
            refresh_per_second=self.refresh_per_second,
        )
        self._live.start()

    def _note(self, text: str, level: str) -> None:
        """Print a note above the live view."""
        prefix = "" if level == "info" else f"{level}: "
        shown = prefix + inert(text, newlines=True)
        self.console.print(Text(shown, style=_NOTE_STYLE.get(level, "")))

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

    def _render(self) -> Group:
        """Draw the live view: the header, done/total with elapsed and ETA, a row per slice."""
        parts: list[Table | Text | Progress] = []
        if self._board.run is not None:
            parts.append(Text(header(self._board.run), style="bold", overflow="ellipsis"))
        if self._task is not None:
            parts.append(self._counts())
        parts.append(self._table())
        return Group(*parts)

    def _counts(self) -> Progress:
        """The progress line: slices done of all, elapsed, ETA and the bytes moved so far."""
        assert self._task is not None
        rows = self._board.snapshot()
        now = self.clock()
        left = eta(self._board, now)
        when = "ETA unknown until a slice finishes" if left is None else f"ETA {_clock(left)}"
        synced = sum(self._board.synced.values())
        pulled = sum(r.pulled for r in rows)
        moved = f" · ↑ {_bytes(synced)} synced · ↓ {_bytes(pulled)} pulled" if synced else ""
        self._progress.update(
            self._task,
            completed=sum(1 for r in rows if r.result is not None),
            elapsed=_clock(max(0.0, now - self._origin)),
            eta=when + moved,
        )
        return self._progress

    def _table(self) -> Table:
        """One row per slice: where it runs (and where it moved from), its try, phase and bytes."""
        table = Table(expand=True)
        table.add_column("platform", no_wrap=True)
        table.add_column("host", no_wrap=True)
        table.add_column("try", no_wrap=True, justify="right")
        table.add_column("phase", no_wrap=True)
        table.add_column("elapsed", no_wrap=True, justify="right")
        table.add_column("moved", no_wrap=True, justify="right")
        table.add_column("output", no_wrap=True, overflow="ellipsis", ratio=1)
        for row in self._board.snapshot():
            table.add_row(
                Text(str(row.slice.platform)),
                Text(_row_host(row)),
                Text(str(row.attempt)),
                self._phase_text(row),
                Text(self._elapsed(row)),
                Text(self._board.moved(row)),
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
        for line in _path_lines(summary):
            self.console.print(Text(line))
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
                self.stream.write("".join(inert(part) + "\n" for part in line.split("\n")))
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
            case RunStarted():
                self._board.run = event
                return [f"[run] {header(event)}"]
            case PlanReady(plan=plan):
                self._board.load(plan)
                return [f"[plan] {s.platform} -> {_host_label(s)}" for s in plan.slices]
            case PhaseStarted(key=key, phase=phase, host=host, attempt=attempt):
                row = self._board.phase(key, phase, host, attempt, 0.0)
                after = ""
                if row is not None and host and attempt > 1:
                    after = f" (attempt {attempt}, moved from {row.moved_from})"
                return [f"{self._tag(key, host)} {phase}{after}"]
            case Transfer(host=host, key=key, direction=direction, done=done, finished=True):
                tag = self._tag(key, host) if key else f"[{host}]"
                return [f"{tag} {direction}: {_bytes(done)} moved"] if done else []
            case SliceFinished(result=result):
                self._board.finish(result)
                return [self._finished(result) + self._eta()]
            case Estimate() | Hedged():
                self._board.update(event, 0.0)  # an estimate is read at once: no clock needed
            case Note(text=text, level=level) | LogTruncated(text=text, level=level):
                return [f"[{'note' if level == 'info' else level}] {text}"]
            case RunFinished(ok=ok, summary=summary):
                return self._summary(ok, summary)
        return []

    def _eta(self) -> str:
        """` · ETA 0:00:12` while slices are left and the scheduler has an estimate."""
        left = [r for r in self._board.rows.values() if r.result is None]
        if not left or self._board.estimate is None:
            return ""
        return f" · ETA {_clock(self._board.estimate[1])}"

    def _tag(self, key: str, host: str = "") -> str:
        """`[host os/arch]` for a slice key (the bare key if the plan never named it).

        `host` names where the event happened, when it says: a straggler's twin is on another.
        """
        row = self._board.rows.get(key)
        if row is None:
            return f"[{key}]"
        if host and host == row.twin:
            return f"[{host} {row.slice.platform} twin]"
        return f"[{row.host or row.slice.host} {row.slice.platform}]"

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
        return [*lines, *_path_lines(summary), _verdict(ok, summary, rows)]


def make_reporter(*, json_mode: bool, quiet: bool, stream: TextIO | None = None) -> Reporter:
    """Pick the reporter: silent for --json/--quiet, rich on a terminal, plain lines otherwise."""
    if json_mode or quiet:
        return NullReporter()
    out = stream if stream is not None else sys.stdout
    if _is_terminal(out):
        return RichReporter(Console(file=out))
    return PlainReporter(out)
