"""What a build host sends is bounded: slice logs, output lines, helper output, artifacts, disk."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from kdist.cli.options import ReleaseOptions, parse
from kdist.config.loader import load_yaml_text
from kdist.config.profile import parse_profile
from kdist.engine import pipeline
from kdist.engine.job import Job, RunResult
from kdist.engine.logtail import MARKER_ROOM, SliceLog, excerpt, unstamp
from kdist.errors import ProfileError
from kdist.events import LogTruncated
from kdist.model import KiB, Limits, MiB, Status, format_size, parse_size
from kdist.testing.builders import FAST, FakeFarm, host, is_build, job, tool_for
from kdist.testing.fake import Reply
from kdist.testing.reporter import RecordingReporter


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
