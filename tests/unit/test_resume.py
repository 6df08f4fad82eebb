"""Journal reuse and invalidation, publish all-or-nothing, and the unit-test stage, on fake hosts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from kdist.cli.documents import exit_status
from kdist.engine import pipeline
from kdist.engine.job import Job, RunResult
from kdist.errors import ExitStatus, HeadNodeError
from kdist.events import Note
from kdist.model import Limits, Platform
from kdist.testing.builders import GENERIC, FakeFarm, host, job
from kdist.testing.fake import Reply, binary
from kdist.testing.reporter import RecordingReporter

AMD64 = Platform("linux", "amd64")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small source tree with a unit-test command."""
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "main.go").write_text("package main\n")
    return tree


@pytest.fixture
def farm(tmp_path: Path) -> FakeFarm:
    """Two fake hosts, amd64 and arm64."""
    return FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/arm64")])


def run(the_job: Job, farm: FakeFarm, reporter: RecordingReporter | None = None) -> RunResult:
    """One run on the fake farm."""
    return asyncio.run(
        pipeline.run(the_job, farm.hosts, farm.factory, reporter or RecordingReporter())
    )


def builds(farm: FakeFarm) -> int:
    """How many builds the farm ran so far."""
    return sum(len(f.runs(["make"])) for f in farm.transports.values())


TWO = "linux/amd64,linux/arm64"
TESTED = dataclasses.replace(GENERIC, test=("make", "test"))


def test_an_unchanged_release_builds_nothing_and_connects_nowhere(
    source: Path, farm: FakeFarm
) -> None:
    """The second release of the same tree reuses both slices and the published tarballs."""
    first = run(job(source, platforms=TWO), farm)
    assert first.ok and builds(farm) == 2
    reporter = RecordingReporter()
    second = run(job(source, platforms=TWO), farm, reporter)
    assert second.ok and builds(farm) == 2
    assert all(r.reused for r in second.results)
    assert second.tarballs == first.tarballs
    assert farm.calls("connect") == {"h1": 1, "h2": 1}
    assert any("nothing changed" in e.text for e in reporter.events if isinstance(e, Note))


def test_a_changed_source_file_rebuilds_every_slice(source: Path, farm: FakeFarm) -> None:
    """Editing a source file changes the tree digest: both slices build again."""
    run(job(source, platforms=TWO), farm)
    (source / "main.go").write_text("package main // changed\n")
    again = run(job(source, platforms=TWO), farm)
    assert again.ok and builds(farm) == 4 and not any(r.reused for r in again.results)


def test_a_tampered_binary_rebuilds_only_its_slice(source: Path, farm: FakeFarm) -> None:
    """A binary that no longer matches its journal digest is rebuilt; the other is reused."""
    run(job(source, platforms=TWO), farm)
    (source / "_output/bin/linux/amd64/tool").write_bytes(binary(AMD64, b"evil"))
    again = run(job(source, platforms=TWO), farm)
    reused = {str(r.slice.platform): r.reused for r in again.results}
    assert reused == {"linux/amd64": False, "linux/arm64": True}
    assert (source / "_output/bin/linux/amd64/tool").read_bytes() == binary(AMD64)


def test_rebuild_ignores_the_journal(source: Path, farm: FakeFarm) -> None:
    """--rebuild (reuse off) builds everything again."""
    run(job(source, platforms=TWO), farm)
    run(job(source, platforms=TWO, reuse=False), farm)
    assert builds(farm) == 4


def test_a_damaged_journal_is_an_empty_one(source: Path, farm: FakeFarm) -> None:
    """A journal that is not JSON is ignored: the release builds and rewrites it."""
    run(job(source), farm)
    (source / "_output/.kdist/journal.json").write_text("{not json")
    assert run(job(source), farm).ok and builds(farm) == 2


def test_a_failed_release_keeps_the_previous_one(source: Path, farm: FakeFarm) -> None:
    """A release that fails leaves the published release-tars/ as it was, and no staging."""
    first = run(job(source, platforms=TWO), farm)
    tars = source / "_output/release-tars"
    before = {p.name: p.read_bytes() for p in tars.iterdir()}
    (source / "main.go").write_text("package main // broken\n")
    farm["h2"].on(["make"], Reply(returncode=2, output="syntax error"))
    second = run(job(source, platforms=TWO), farm)
    assert exit_status(second) is ExitStatus.BUILD_FAILED and first.ok
    assert {p.name: p.read_bytes() for p in tars.iterdir()} == before
    assert [p.name for p in (source / "_output").iterdir() if p.name.startswith(".release")] == []


def test_unit_tests_run_once_before_the_publish(source: Path, farm: FakeFarm) -> None:
    """The profile's tests run once, on the plan's test host, in the tree's workdir."""
    result = run(job(source, run_tests=True, profile=TESTED), farm)
    tests = [c for f in farm.transports.values() for c in f.runs(["make", "test"])]
    assert result.ok and len(tests) == 1
    assert tests[0].cwd == "/var/tmp/kdist/tree-0123456789ab"
    assert "make test" in (source / "_output/logs/test.log").read_text()


def test_failing_unit_tests_block_the_publish(source: Path, farm: FakeFarm) -> None:
    """Tests exit 1: the release fails (exit 1) and nothing is published."""
    farm["h1"].on(["make", "test"], Reply(returncode=1, output="--- FAIL: TestX"))
    result = run(job(source, run_tests=True, profile=TESTED), farm)
    assert exit_status(result) is ExitStatus.BUILD_FAILED
    assert "FAIL: TestX" in result.test_error
    assert not (source / "_output/release-tars").exists()


def test_unit_tests_past_the_slice_timeout_fail_cleanly(source: Path, farm: FakeFarm) -> None:
    """Tests that outlive --slice-timeout: a test error (not an internal error), no staging left."""
    farm["h1"].on(["make", "test"], Reply(hang=True))
    limits = Limits(backoff=0.0, slice_timeout=0.1)
    result = run(job(source, run_tests=True, profile=TESTED, limits=limits), farm)
    assert exit_status(result) is ExitStatus.BUILD_FAILED
    assert "not finished after 0.1s; the unit tests were stopped" in result.test_error
    leftovers = [p.name for p in (source / "_output").iterdir() if p.name.startswith(".")]
    assert leftovers in ([], [".kdist"])


def test_journal_write_failure_leaves_no_temp_file(source: Path, farm: FakeFarm) -> None:
    """A journal that cannot be replaced leaves no journal.json.tmp behind."""
    run(job(source), farm)
    journal = source / "_output/.kdist/journal.json"
    journal.unlink()
    journal.mkdir()  # replacing a folder with a file fails, like a broken disk would
    with pytest.raises(HeadNodeError, match="journal"):
        run(job(source, reuse=False), farm)
    assert not journal.with_name("journal.json.tmp").exists()
    assert os.listdir(journal) == []


DELEGATE = (
    'mkdir -p "$OUT_DIR/release-tars" && '
    'printf "%s" "$KUBE_BUILD_PLATFORMS" > "$OUT_DIR/release-tars/own.tar.gz"'
)


def test_delegated_packaging_runs_the_repository_command(source: Path, farm: FakeFarm) -> None:
    """A profile `package:` command runs on this machine with OUT_DIR; kdist adds checksums."""
    profile = dataclasses.replace(GENERIC, package=("sh", "-c", DELEGATE))
    result = run(job(source, platforms=TWO, profile=profile), farm)
    tars = source / "_output/release-tars"
    assert result.ok and [n for n, _ in result.tarballs] == ["own.tar.gz"]
    assert (tars / "own.tar.gz").read_text() == "linux/amd64 linux/arm64"
    assert "own.tar.gz" in (tars / "SHA256SUMS").read_text()


def test_a_failing_delegate_is_a_packaging_error(source: Path, farm: FakeFarm) -> None:
    """The repository's packaging exits 1: exit 1, its log tail in the error."""
    profile = dataclasses.replace(GENERIC, package=("sh", "-c", "echo no tarballs today; exit 1"))
    result = run(job(source, profile=profile), farm)
    assert exit_status(result) is ExitStatus.BUILD_FAILED
    assert "no tarballs today" in result.package_error


def test_a_delegate_needs_the_output_inside_the_source(
    source: Path, farm: FakeFarm, tmp_path: Path
) -> None:
    """Delegated packaging with --output outside the tree is refused as a packaging error."""
    profile = dataclasses.replace(GENERIC, package=("true",))
    result = run(job(source, tmp_path / "elsewhere", profile=profile), farm)
    assert "must be inside" in result.package_error
