"""What a build host sends is bounded: slice logs, output lines, helper output, artifacts, disk."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
from pathlib import Path

import pytest

from kdist.cli.documents import exit_status
from kdist.cli.options import ReleaseOptions, parse
from kdist.config.loader import load_yaml_text
from kdist.config.profile import parse_profile
from kdist.engine import pipeline
from kdist.engine.job import Job, RunResult
from kdist.engine.logtail import MARKER_ROOM, SliceLog, excerpt, unstamp
from kdist.errors import ExitStatus, IntegrityError, OutputTooLarge, ProfileError
from kdist.events import LogTruncated
from kdist.model import (
    Host,
    KiB,
    Limits,
    MiB,
    Status,
    format_size,
    parse_size,
)
from kdist.remote.probe import PROBE_SCRIPT, probe_host
from kdist.stages.sync import take_lock
from kdist.testing.builders import FAST, GENERIC, FakeFarm, host, is_build, job, tool_for
from kdist.testing.fake import FakeTransport, Reply
from kdist.testing.reporter import RecordingReporter
from kdist.transport import TAIL_LINES, LineReader, OutputCollector
from kdist.transport.local import LocalTransport
from tests.unit.test_collect import is_manifest


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small source tree."""
    tree = tmp_path / "src"
    (tree / "cmd").mkdir(parents=True)
    (tree / "Makefile").write_text("all:\n")
    return tree


def _run(the_job: Job, farm: FakeFarm, reporter: RecordingReporter | None = None) -> RunResult:
    """One run of `the_job` on the fake farm."""
    return asyncio.run(
        pipeline.run(the_job, farm.hosts, farm.factory, reporter or RecordingReporter())
    )


def _lines(path: Path) -> list[str]:
    """The log's lines as the build printed them (stamps removed)."""
    return [unstamp(line) for line in path.read_text().splitlines()]


# --- sizes and options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", MiB),
        ("512K", 512 * KiB),
        ("64M", 64 * MiB),
        ("64MiB", 64 * MiB),
        ("2g", 2 << 30),
    ],
)
def test_sizes_are_bytes_or_binary_units(text: str, size: int) -> None:
    """A size is a byte count or a number with K, M or G (binary), with or without `iB`."""
    assert parse_size(text) == size


def test_a_size_that_is_not_one_is_refused() -> None:
    """Words, fractions and negative numbers are not sizes."""
    for text in ("lots", "1.5M", "-1", "M"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(text)


def test_log_limit_default_is_written_once_and_the_option_overrides_it() -> None:
    """--log-limit is typed; without it the run options leave the choice to the profile."""
    bare = parse(["release"]).command
    assert isinstance(bare, ReleaseOptions)
    assert (
        bare.run.log_limit is None and bare.run.limits.log_limit == Limits().log_limit == 64 * MiB
    )
    given = parse(["release", "--log-limit", "1M"]).command
    assert isinstance(given, ReleaseOptions)
    assert given.run.log_limit == MiB
    assert format_size(Limits().log_limit) == "64 MiB"


def test_a_log_limit_too_small_to_keep_a_line_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Below 64 KiB a log could not keep one long line of head and of tail: a usage error."""
    with pytest.raises(SystemExit):
        parse(["release", "--log-limit", "1K"])
    assert "at least 64 KiB" in capsys.readouterr().err


def test_the_profile_may_set_the_log_limit() -> None:
    """`log_limit: 16M` in kdist.yaml; a value that is no size names its key."""
    text = "name: t\nbuild: make\nartifacts: bin\nplatforms: [linux/amd64]\nlog_limit: {}\n"
    assert parse_profile(load_yaml_text(text.format("16M"), "p"), "p").log_limit == 16 * MiB
    assert parse_profile(load_yaml_text(text.format("131072"), "p"), "p").log_limit == 128 * KiB
    with pytest.raises(ProfileError, match="log_limit"):
        parse_profile(load_yaml_text(text.format("huge"), "p"), "p")


# --- slice logs ----------------------------------------------------------------------------------


def test_a_log_under_its_limit_is_kept_whole(tmp_path: Path) -> None:
    """Below half the limit nothing is dropped, no marker is written and no tail file stays."""
    path = tmp_path / "linux-amd64.log"
    told: list[bool] = []
    with SliceLog(path, 64 * KiB, lambda: told.append(True)) as log:
        for n in range(100):
            log.write(f"line {n}")
    assert _lines(path) == [f"line {n}" for n in range(100)]
    assert told == [] and not log.truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linux-amd64.log"]


def test_a_flooded_log_keeps_its_head_a_marker_and_the_real_last_lines(tmp_path: Path) -> None:
    """2 MB into a 64 KiB log: at most 64 KiB, the first lines, one marker, the last lines."""
    path = tmp_path / "linux-amd64.log"
    told: list[bool] = []
    limit, count = 64 * KiB, 40_000
    with SliceLog(path, limit, lambda: told.append(True)) as log:
        for n in range(count):
            log.write(f"spam line {n:06d} " + "x" * 20)
    size = path.stat().st_size
    assert size <= limit
    lines = _lines(path)
    assert lines[0].startswith("spam line 000000")
    assert lines[-1].startswith(f"spam line {count - 1:06d}")
    markers = [line for line in lines if line.startswith("# kdist: log over 64 KiB")]
    assert len(markers) == 1 and told == [True]
    dropped = int(markers[0].split(": ")[2].split()[0])
    written = sum(
        len(f"2026-01-02T03:04:05.678Z spam line {n:06d} {'x' * 20}\n") for n in range(count)
    )
    assert dropped + size - len(markers[0]) - 26 == written  # every byte is kept or counted
    numbers = [int(line.split()[2]) for line in lines if line.startswith("spam")]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[-1] - numbers[len(numbers) // 2] > 100  # a rolling tail, not a few lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linux-amd64.log"]
    assert limit // 64 > MARKER_ROOM


def test_a_line_longer_than_the_tail_is_cut_not_kept_whole(tmp_path: Path) -> None:
    """One giant line past the head keeps only its start; the log stays within its limit."""
    path = tmp_path / "log"
    with SliceLog(path, 64 * KiB) as log:
        log.write("a" * 40_000)
        log.write("b" * 200_000)
        log.write("the end")
    assert path.stat().st_size <= 64 * KiB
    assert _lines(path)[-1] == "the end"
    assert log.dropped >= 200_000 - 16 * KiB


def test_a_resumed_log_stays_near_its_limit(tmp_path: Path) -> None:
    """A log reopened after an earlier truncated writer adds a short tail, not a second limit."""
    path = tmp_path / "log"
    for _ in range(2):
        with SliceLog(path, 64 * KiB) as log:
            for n in range(20_000):
                log.write(f"line {n}")
    assert path.stat().st_size <= 64 * KiB + 8 * KiB + MARKER_ROOM
    assert _lines(path)[-1] == "line 19999"


def _flood(lines: int, code: int = 0) -> Reply:
    """A build that prints `lines` numbered lines, then exits `code`."""
    text = "\n".join(f"compiling step {n:06d} of a long build" for n in range(lines))
    return Reply(returncode=code, output=text + "\nlast words of the build")


def test_a_talkative_build_succeeds_with_a_bounded_log(tmp_path: Path, source: Path) -> None:
    """Talking is not failing: the release succeeds, the log is capped, the view is told once."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    farm["h1"].on(
        is_build, lambda call: dataclasses.replace(_flood(30_000), files=tool_for(call).files)
    )
    reporter = RecordingReporter()
    the_job = job(source, limits=dataclasses.replace(FAST, log_limit=64 * KiB))
    result = _run(the_job, farm, reporter)
    assert result.ok
    log = source / "_output/logs/linux-amd64.log"
    assert log.stat().st_size <= 64 * KiB
    told = [e for e in reporter.events if isinstance(e, LogTruncated)]
    assert [(e.key, e.limit) for e in told] == [("linux-amd64", 64 * KiB)]
    assert "keeps the first part and the last lines, at most 64 KiB" in told[0].text
    assert told[0].text in result.notes
    assert "last words of the build" in _lines(log)[-1]


def test_a_failed_flood_still_shows_its_real_last_lines(tmp_path: Path, source: Path) -> None:
    """The failure summary's excerpt comes from the log's tail: the build's real last lines."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    farm["h1"].on(is_build, _flood(30_000, code=2))
    the_job = job(source, limits=dataclasses.replace(FAST, log_limit=64 * KiB))
    result = _run(the_job, farm)
    slc = result.results[0]
    assert slc.status is Status.FAILED
    assert slc.excerpt[-1] == "last words of the build"
    assert slc.excerpt[-2] == "compiling step 029999 of a long build"
    assert excerpt(Path(slc.log))[-1] == "last words of the build"


# --- what a command prints -----------------------------------------------------------------------


def test_a_long_line_is_cut_and_says_how_much() -> None:
    """One line longer than the line limit keeps its start and counts the rest, in any chunking."""
    got: list[str] = []
    collector = OutputCollector(got.append, line_limit=10)
    for piece in ("abcdefgh", "ijklmnop", "qrst\nshort\nend"):
        collector.feed_text(piece)
    collector.close()
    assert got == ["abcdefghij [kdist: 10 more characters of this line dropped]", "short", "end"]


def test_only_a_tail_is_kept_without_max_output() -> None:
    """A flood keeps TAIL_LINES lines in memory; the sink sees every one."""
    seen = [0]
    collector = OutputCollector(lambda _line: seen.__setitem__(0, seen[0] + 1))
    for n in range(10_000):
        collector.feed_text(f"line {n}\n")
    assert seen[0] == 10_000
    assert collector.text().splitlines() == [
        f"line {n}" for n in range(10_000 - TAIL_LINES, 10_000)
    ]


def test_max_output_keeps_everything_up_to_it_then_raises() -> None:
    """With max_output every line is kept; one character more raises OutputTooLarge."""
    collector = OutputCollector(None, max_output=20)
    collector.feed_text("012345678\n")
    collector.feed_text("abcdefgh\n")
    collector.feed_text("z")
    assert collector.text() == "012345678\nabcdefgh"
    with pytest.raises(OutputTooLarge) as caught:
        collector.feed_text("x")
    assert caught.value.limit == 20


def test_line_reader_cuts_a_giant_line() -> None:
    """A lock holder's answer is read a line at a time, never more than the line limit."""
    pieces = iter(["locked ", "r" * 100_000, "\nnext\n"])

    async def read(_size: int) -> str:
        return next(pieces, "")

    async def lines() -> list[str]:
        reader = LineReader(read, line_limit=20)
        return [await reader.readline() for _ in range(3)]

    first, second, end = asyncio.run(lines())
    assert first == "locked rrrrrrrrrrrrr [kdist: 99987 characters dropped]\n"
    assert (second, end) == ("next\n", "")


def _peak_kib() -> int:
    """The peak resident memory of the test process so far, in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_local_command_that_never_stops_talking_is_stopped_at_max_output() -> None:
    """`yes` with max_output: OutputTooLarge naming the limit, the process gone, every time.

    A killed command whose pipe was left full is read to its end before it is waited for
    (asyncio waits for the pipe too): five floods in a row end, none hangs.
    """
    transport = LocalTransport(Host(name="local", address="localhost", local=True))

    async def five() -> list[str]:
        said = []
        for _ in range(5):
            with pytest.raises(OutputTooLarge) as caught:
                await asyncio.wait_for(transport.run(["yes", "spam"], max_output=MiB), 60)
            said.append(str(caught.value))
        return said

    said = asyncio.run(five())
    assert all(text.endswith("yes printed more than 1048576 characters; stopped") for text in said)


def test_a_local_line_without_end_is_cut_in_memory() -> None:
    """64 MB on one line reaches the caller as one cut line; memory does not hold it whole."""
    transport = LocalTransport(Host(name="local", address="localhost", local=True))
    before = _peak_kib()
    got: list[str] = []
    argv = ["sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' x; echo; echo done"]
    result = asyncio.run(transport.run(argv, sink=got.append))
    assert result.ok and got[-1] == "done"
    assert got[0].startswith("x" * 100) and "more characters of this line dropped" in got[0]
    assert len(got[0]) < 2 * Limits().line_limit
    assert _peak_kib() - before < 48 * 1024  # far less than the 64 MB the line had


# --- what a host lists and offers (the artifact limits: see test_collect.py) ------------------


def test_a_flooding_probe_is_an_integrity_failure(tmp_path: Path) -> None:
    """A host whose probe never stops printing is refused at the helper_output limit."""
    transport = FakeTransport(host("h1"), tmp_path / "h1")
    transport.on(["sh", "-c", PROBE_SCRIPT], Reply(output="arch=x86_64\n" * 200_000))
    with pytest.raises(IntegrityError, match="h1: the probe printed over the helper_output limit"):
        asyncio.run(probe_host(transport, transport.host))


def test_a_giant_lock_answer_is_cut_and_the_host_not_locked(tmp_path: Path) -> None:
    """A lock holder answering with a huge line: read a line at a time, refused (integrity)."""
    transport = FakeTransport(host("h1"), tmp_path / "h1")
    transport.busy = "x" * 10_000_000
    with pytest.raises(
        IntegrityError, match=r"h1: the lock holder's answer is over the line_limit"
    ):
        asyncio.run(take_lock(transport, "/w", "run1", 0.0))


def test_an_endless_manifest_leaves_the_host_out_and_keeps_the_others(
    tmp_path: Path, source: Path
) -> None:
    """One host floods its artifact list: left out for integrity (its slice moves), h2's kept."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"), host("h2", "linux/arm64")))
    flood = "\t".join(["f", "1", "0" * 64, "1", b"x".hex()]) + "\n"
    farm["h1"].on(is_manifest, Reply(output=flood * 100_000))
    the_job = job(source, platforms="linux/amd64,linux/arm64")
    result = _run(
        dataclasses.replace(the_job, limits=dataclasses.replace(FAST, manifest_bytes=MiB)), farm
    )
    by_platform = {str(r.slice.platform): r for r in result.results}
    (violation,) = by_platform["linux/amd64"].violations  # then built again on h2, kept
    assert violation.startswith("h1: ") and "manifest_bytes limit (1 MiB)" in violation
    assert by_platform["linux/arm64"].ok and (source / "_output/bin/linux/arm64/tool").is_file()
    assert not result.ok and exit_status(result) is ExitStatus.INTEGRITY_ERROR


def test_talkative_unit_tests_keep_a_bounded_log(tmp_path: Path, source: Path) -> None:
    """The unit tests' log (logs/test.log) has the same limit as a slice's; the view is told."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    farm["h1"].on(["make", "test"], _flood(30_000))
    tested = dataclasses.replace(GENERIC, test=("make", "test"))
    limits = dataclasses.replace(FAST, log_limit=64 * KiB)
    reporter = RecordingReporter()
    result = _run(job(source, run_tests=True, profile=tested, limits=limits), farm, reporter)
    assert result.ok
    log = source / "_output/logs/test.log"
    assert log.stat().st_size <= 64 * KiB
    lines = _lines(log)
    assert lines[0] == "$ make test" and lines[-1] == "last words of the build"
    told = "unit tests: their log keeps the first part and the last lines, at most 64 KiB"
    assert any(told in note for note in result.notes)
