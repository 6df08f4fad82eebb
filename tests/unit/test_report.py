"""Unit tests for kdist.cli.report: the rich and plain reporters, make_reporter and print_table."""

from __future__ import annotations

import dataclasses
import errno
import io
import re

import pytest
from rich.console import Console

from kdist.cli.report import (
    PlainReporter,
    RichReporter,
    failure_block,
    make_reporter,
    print_table,
)
from kdist.events import (
    Estimate,
    Event,
    Hedged,
    Note,
    NullReporter,
    OutputLine,
    PhaseStarted,
    PlanReady,
    RunFinished,
    RunStarted,
    SliceFinished,
    Transfer,
)
from kdist.model import Artifact, Plan, Platform, Slice, SliceResult, Status

SHA = "0123456789abcdef" * 4
AMD64 = Slice(Platform("linux", "amd64"), "h1", False, "/w", ("make",), "_output/bin")
ARM64 = Slice(Platform("linux", "arm64"), "h2", True, "/w", ("make",), "_output/bin")
PLAN = Plan(slices=(AMD64, ARM64), env={})
OK = SliceResult(
    AMD64,
    Status.OK,
    12.34,
    artifacts=tuple(Artifact(f"bin/b{i}", SHA, 1) for i in range(17)),
)
FAILED = SliceResult(
    ARM64,
    Status.FAILED,
    3.0,
    phase="build",
    error="make: *** [all] Error 2\nsecond line stays hidden",
    log="/out/logs/linux-arm64.log",
    excerpt=("main.go:3:2: undefined: x", "make: *** [all] Error 2"),
)
SUMMARY: dict[str, object] = {
    "tarballs": [{"name": "kubernetes-server-linux-amd64.tar.gz", "sha256": SHA}],
}


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        """Return the current fake time."""
        return self.now


class TtyStream(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True


class BrokenStream(io.StringIO):
    """A stream whose every write fails, like a hung-up terminal."""

    def write(self, s: str) -> int:
        """Fail the way a vanished terminal does."""
        raise OSError(errno.EIO, "Input/output error")


def events(ok: bool = False, summary: dict[str, object] | None = None) -> list[Event]:
    """Return the canonical run: plan, phases, output, an ok and a failed slice, a note, the end."""
    return [
        PlanReady(PLAN),
        PhaseStarted("linux-amd64", "connect"),
        PhaseStarted("linux-arm64", "connect"),
        PhaseStarted("linux-amd64", "build"),
        OutputLine("linux-amd64", "+++ [0101] Building go targets for linux/amd64"),
        SliceFinished(OK),
        PhaseStarted("linux-arm64", "build"),
        SliceFinished(FAILED),
        Note("h3 left out: unreachable", level="warning"),
        RunFinished(ok=ok, summary=SUMMARY if summary is None else summary),
    ]


def rich_console() -> tuple[Console, io.StringIO]:
    """Make a deterministic, colourless terminal console writing into a buffer."""
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100, color_system=None), buf


def run_rich(evts: list[Event]) -> tuple[RichReporter, str]:
    """Drive a RichReporter through `evts` with a fake clock and return its output."""
    console, buf = rich_console()
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock, auto_refresh=False)
    try:
        for event in evts:
            clock.now += 1.0
            reporter.emit(event)
    finally:
        reporter.close()
    return reporter, buf.getvalue()


def summary_part(output: str) -> str:
    """Cut out the text printed after the live view stopped (the summary table onwards)."""
    return output[output.rindex("summary") :]


def row_with(text: str, needle: str) -> str:
    """Return the single line of `text` that contains `needle`."""
    (line,) = [ln for ln in text.splitlines() if needle in ln]
    return line


def test_rich_summary_lists_every_slice_with_status_and_duration() -> None:
    """The rich summary shows each platform, host, status, duration and artifact count."""
    reporter, out = run_rich(events())
    summary = summary_part(out)
    ok_row = row_with(summary, "linux/amd64")
    assert re.search(r"h1\s.*ok\s.*12\.3s\s.*17", ok_row)
    bad_row = row_with(summary, "│ linux/arm64")
    assert re.search(r"h2\s.*failed\s.*3\.0s\s.*0\s.*make: \*\*\* \[all\] Error 2", bad_row)
    assert "second line stays hidden" not in out
    assert reporter.errors == []


def test_rich_summary_shows_each_failure_with_class_log_path_and_last_lines() -> None:
    """A failed slice is shown with host, class, log path and its log's last lines."""
    _, out = run_rich(events())
    tail = out[out.index("FAILED linux/arm64 on h2: build failure in build") :]
    assert "log: /out/logs/linux-arm64.log (last 2 lines)" in tail
    assert "| main.go:3:2: undefined: x" in tail


def test_failure_without_excerpt_shows_the_whole_error() -> None:
    """An infrastructure failure with no build output shows every line of its error."""
    result = dataclasses.replace(FAILED, status=Status.INFRA, phase="sync", excerpt=())
    heading, lines = failure_block(result)
    assert heading == "FAILED linux/arm64 on h2: infrastructure failure in sync"
    assert lines == [
        "make: *** [all] Error 2",
        "second line stays hidden",
        "log: /out/logs/linux-arm64.log",
    ]


def test_rich_summary_ends_with_tarballs_and_failure_verdict() -> None:
    """The tarball list shows names with 12 hex digits, then the failure count verdict."""
    _, out = run_rich(events())
    summary = summary_part(out)
    assert re.search(r"kubernetes-server-linux-amd64\.tar\.gz\s.*0123456789ab\b", summary)
    assert SHA[:13] not in summary
    assert summary.rstrip().splitlines()[-1] == "release FAILED: 1 of 2 slices failed"


def test_rich_verdict_prefers_summary_title_and_says_ok() -> None:
    """A summary title replaces the verdict, and a good run says "release ok"."""
    _, titled = run_rich(events(summary={"title": "v1.31.0 built"}))
    assert titled.rstrip().splitlines()[-1] == "v1.31.0 built"
    _, good = run_rich(events(ok=True))
    assert good.rstrip().splitlines()[-1] == "release ok"


def test_rich_live_view_shows_phase_host_mark_output_and_elapsed() -> None:
    """Mid-run the live table shows the cross mark, current phase, elapsed time and last line."""
    console, buf = rich_console()
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock, auto_refresh=False)
    try:
        reporter.emit(PlanReady(PLAN))
        reporter.emit(PhaseStarted("linux-arm64", "sync"))
        clock.now += 4.5
        reporter.emit(OutputLine("linux-arm64", "compiling kubelet " + "x" * 300))
        frame = buf.getvalue().rsplit("\x1b[2K", 1)[-1]  # after the last erase-line code
    finally:
        reporter.close()
    assert "h2 (cross)" in frame
    assert re.search(r"h1\s.*queued", frame)
    line = row_with(frame, "linux/arm64")
    assert re.search(r"sync\s.*4\.5s\s.*compiling kubelet x+…", line)
    assert all(len(ln) <= 100 for ln in frame.splitlines())


def test_rich_note_is_printed_with_level() -> None:
    """A warning note is printed with its level while the live view runs."""
    _, out = run_rich(events())
    assert "warning: h3 left out: unreachable" in out


def test_rich_emit_never_raises_on_broken_output() -> None:
    """Display failures are swallowed and recorded instead of raised."""
    console = Console(file=BrokenStream(), force_terminal=True, width=100, color_system=None)
    reporter = RichReporter(console, clock=FakeClock(), auto_refresh=False)
    for event in events():
        reporter.emit(event)
    reporter.close()
    assert reporter.errors


class PipeConsole(Console):
    """A console that gives up on a broken pipe like rich does, minus the dup2 onto stdout."""

    def on_broken_pipe(self) -> None:
        """Go quiet and exit, as rich's default handler does."""
        self.quiet = True
        raise SystemExit(1)


class PipeStream(io.StringIO):
    """A stream whose reader went away."""

    def write(self, s: str) -> int:
        """Fail like a closed pipe."""
        raise BrokenPipeError("gone")


def test_rich_emit_swallows_richs_broken_pipe_exit() -> None:
    """Rich's SystemExit on a broken pipe does not escape emit or close."""
    console = PipeConsole(file=PipeStream(), force_terminal=True, width=100, color_system=None)
    reporter = RichReporter(console, clock=FakeClock(), auto_refresh=False)
    for event in events():
        reporter.emit(event)
    reporter.close()
    assert reporter.errors


def test_plain_reporter_writes_expected_lines() -> None:
    """The plain reporter writes exactly the tagged lines and summary, skipping output lines."""
    buf = io.StringIO()
    reporter = PlainReporter(buf)
    for event in events():
        reporter.emit(event)
    reporter.close()
    assert buf.getvalue().splitlines() == [
        "[plan] linux/amd64 -> h1",
        "[plan] linux/arm64 -> h2 (cross)",
        "[h1 linux/amd64] connect",
        "[h2 linux/arm64] connect",
        "[h1 linux/amd64] build",
        "[h1 linux/amd64] ok in 12.3s (17 artifacts)",
        "[h2 linux/arm64] build",
        "[h2 linux/arm64] FAILED in build: make: *** [all] Error 2",
        "[warning] h3 left out: unreachable",
        "",
        "platform     host  status  duration  artifacts  error",
        "linux/amd64  h1    ok      12.3s     17         -",
        "linux/arm64  h2    failed  3.0s      0          make: *** [all] Error 2",
        "tarball                               sha256",
        "kubernetes-server-linux-amd64.tar.gz  0123456789ab",
        "",
        "FAILED linux/arm64 on h2: build failure in build",
        "  make: *** [all] Error 2",
        "  log: /out/logs/linux-arm64.log (last 2 lines)",
        "  | main.go:3:2: undefined: x",
        "  | make: *** [all] Error 2",
        "release FAILED: 1 of 2 slices failed",
    ]
    assert reporter.errors == []


def test_plain_reporter_tags_info_notes_and_other_statuses() -> None:
    """Info notes are tagged [note]; infra failures name their status and phase."""
    buf = io.StringIO()
    reporter = PlainReporter(buf)
    reporter.emit(PlanReady(PLAN))
    reporter.emit(Note("building linux/arm64 on h2 by cross-compiling"))
    reporter.emit(SliceFinished(SliceResult(ARM64, Status.INFRA, 1.0, phase="connect")))
    assert buf.getvalue().splitlines()[-2:] == [
        "[note] building linux/arm64 on h2 by cross-compiling",
        "[h2 linux/arm64] INFRA in connect",
    ]


def test_plain_reporter_never_raises_on_broken_stream() -> None:
    """A broken pipe is recorded, not raised."""
    reporter = PlainReporter(BrokenStream())
    for event in events():
        reporter.emit(event)
    reporter.close()
    assert reporter.errors


@pytest.mark.parametrize(("json_mode", "quiet"), [(True, False), (False, True), (True, True)])
def test_make_reporter_is_silent_for_json_and_quiet(json_mode: bool, quiet: bool) -> None:
    """--json and --quiet get the NullReporter."""
    reporter = make_reporter(json_mode=json_mode, quiet=quiet, stream=TtyStream())
    assert isinstance(reporter, NullReporter)


def test_make_reporter_picks_rich_on_a_terminal_and_plain_otherwise() -> None:
    """A terminal gets the rich reporter, anything else the plain one."""
    assert isinstance(make_reporter(json_mode=False, quiet=False, stream=TtyStream()), RichReporter)
    plain = make_reporter(json_mode=False, quiet=False, stream=io.StringIO())
    assert isinstance(plain, PlainReporter)


def test_print_table_plain_has_header_then_one_line_per_row() -> None:
    """Plain tables print the header first, then one line per row, split by 2+ spaces."""
    buf = io.StringIO()
    rows = [["h1", "linux/amd64", "ok"], ["h2", "", "unreachable:  timed out\nafter 10s"]]
    print_table("hosts", ["host", "platforms", "status"], rows, stream=buf, ok=False)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 + len(rows)
    assert [re.split(r" {2,}", ln) for ln in lines] == [
        ["host", "platforms", "status"],
        ["h1", "linux/amd64", "ok"],
        ["h2", "-", "unreachable: timed out after 10s"],
    ]


def test_print_table_uses_rich_on_a_terminal() -> None:
    """On a terminal the table is drawn by rich, with its title."""
    stream = TtyStream()
    print_table("hosts", ["host", "status"], [["h1", "ok"]], stream=stream)
    out = stream.getvalue()
    assert "hosts" in out
    assert re.search(r"h1\s.*ok", out)
    assert "─" in out or "-" in out


RUN = RunStarted(
    project="cri-tools",
    version="v0.9.1",
    run_id="5eed1234",
    hosts=("h1", "h2"),
    platforms=("linux/amd64", "linux/arm64"),
    output="/out",
    started=0.0,
    capacity={"h1": 1, "h2": 1},
    expected={"linux-amd64": 20.0, "linux-arm64": 30.0},
)
DONE_SUMMARY: dict[str, object] = {
    "command": "release",
    "tarballs": [{"name": "t.tar.gz", "path": "/out/release-tars/t.tar.gz", "sha256": SHA}],
    "logs": "/out/logs",
    "document": "/out/logs/run.json",
    "timeline": "/tmp/trace.json",
}


def test_live_view_orients_header_counts_eta_bytes_and_moves() -> None:
    """Header, done/total, ETA from recorded durations, bytes, and a moved slice's new host."""
    console, buf = rich_console()
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock, auto_refresh=False)
    reporter.emit(RunStarted(**{**RUN.__dict__}))
    reporter.emit(PlanReady(PLAN))
    reporter.emit(PhaseStarted("linux-amd64", "sync", "h1", 1))
    reporter.emit(PhaseStarted("linux-arm64", "sync", "h2", 1))
    reporter.emit(Transfer("h1", "", "sync", 1_500_000))
    clock.now += 5
    reporter.emit(PhaseStarted("linux-arm64", "sync", "h1", 2))  # h2 failed: moved to h1
    reporter.emit(SliceFinished(OK))
    frame = buf.getvalue().split("kdist release")[-1]
    reporter.close()
    assert frame.startswith(" cri-tools v0.9.1 · run 5eed1234 · 2 hosts: h1 h2")
    assert "1/2 done" in frame
    assert "ETA 0:00:25" in frame  # linux/arm64 is expected to take 30 s and started 5 s ago
    assert "↑ 1.5 MB synced" in frame
    assert re.search(r"linux/arm64 │ h1 \(from h2\) │\s+2 │ sync", frame), frame


def test_eta_without_recorded_durations_is_unknown_until_a_slice_finishes() -> None:
    """No journal: no ETA at first; after one slice, the others are guessed from it."""
    console, buf = rich_console()
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock, auto_refresh=False)
    reporter.emit(RunStarted(**{**RUN.__dict__, "expected": {}}))
    reporter.emit(PlanReady(PLAN))
    assert "ETA unknown until a slice finishes" in buf.getvalue()
    reporter.emit(SliceFinished(OK))  # took 12.34 s; linux/arm64 has not started
    assert "ETA 0:00:12" in buf.getvalue().split("kdist release")[-1]
    reporter.close()


def test_the_end_says_where_tarballs_logs_json_and_timeline_are() -> None:
    """Both reporters end with the paths of the tarballs, the logs, the JSON and the timeline."""
    plain = io.StringIO()
    reporter = PlainReporter(plain)
    for event in (RunStarted(**{**RUN.__dict__}), PlanReady(PLAN), RunFinished(True, DONE_SUMMARY)):
        reporter.emit(event)
    _, rich_out = run_rich([PlanReady(PLAN), RunFinished(True, DONE_SUMMARY)])
    for out in (plain.getvalue(), rich_out):
        assert "tarballs: /out/release-tars (1 files, SHA256SUMS)" in out
        assert "logs:     /out/logs" in out
        assert "json:     /out/logs/run.json" in out
        assert "timeline: /tmp/trace.json" in out
    assert plain.getvalue().startswith("[run] kdist release cri-tools v0.9.1 · run 5eed1234")


def test_plain_lines_say_where_a_slice_moved_and_what_moved() -> None:
    """A moved slice says from where; finished transfers say how many bytes."""
    buf = io.StringIO()
    reporter = PlainReporter(buf)
    for event in (
        PlanReady(PLAN),
        PhaseStarted("linux-arm64", "sync", "h2", 1),
        PhaseStarted("linux-arm64", "sync", "h3", 2),
        Transfer("h3", "", "sync", 2_000_000, finished=True),
        Transfer("h3", "linux-arm64", "pull", 42_000, finished=True),
    ):
        reporter.emit(event)
    assert buf.getvalue().splitlines()[-3:] == [
        "[h3 linux/arm64] sync (attempt 2, moved from h2)",
        "[h3] sync: 2.0 MB moved",
        "[h3 linux/arm64] pull: 42.0 kB moved",
    ]


def test_live_view_shows_the_schedulers_eta_and_a_hedge() -> None:
    """The scheduler's estimate counts down on the view's clock; a twin and its win show."""
    console, buf = rich_console()
    clock = FakeClock()
    reporter = RichReporter(console, clock=clock, auto_refresh=False)
    for event in (RUN, PlanReady(PLAN), PhaseStarted("linux-amd64", "build", "h1", 1)):
        reporter.emit(event)
    reporter.emit(Estimate(40.0, 0.0))
    clock.now += 10
    reporter.emit(Hedged("linux-amd64", "h1", "h2", 30.0))
    reporter.emit(PhaseStarted("linux-amd64", "sync", "h2", 0))  # the twin's own phases
    frame = buf.getvalue().split("kdist release")[-1]
    assert "ETA 0:00:30" in frame
    assert re.search(r"linux/amd64 │ h1 \+ twin on h2", frame), frame
    reporter.emit(Hedged("linux-amd64", "h1", "h2", 30.0, winner="h2", stopped="h1"))
    reporter.emit(
        SliceFinished(dataclasses.replace(OK, slice=dataclasses.replace(AMD64, host="h2")))
    )
    frame = buf.getvalue().split("kdist release")[-1]
    reporter.close()
    assert "h2 (hedged: h2 won, h1 stopped)" in frame, frame


def test_plain_lines_add_the_eta_while_slices_are_left() -> None:
    """A finished slice's line ends with the scheduler's ETA while others still build."""
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.emit(PlanReady(PLAN))
    reporter.emit(Estimate(12.0, 0.0))
    reporter.emit(SliceFinished(OK))
    assert stream.getvalue().splitlines()[-1].endswith("(17 artifacts) · ETA 0:00:12")


def test_plain_lines_tag_a_twins_phases_with_its_own_host() -> None:
    """While a straggler on h1 has a twin on h2, the twin's phases say h2 and twin."""
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.emit(PlanReady(PLAN))
    reporter.emit(PhaseStarted("linux-amd64", "build", "h1", 1))
    reporter.emit(Hedged("linux-amd64", "h1", "h2", 9.0))
    reporter.emit(PhaseStarted("linux-amd64", "build", "h2"))
    assert stream.getvalue().splitlines()[-1] == "[h2 linux/amd64 twin] build"
