"""Unit tests for kdist.engine.watch: notes kept, and what an interrupt stopped on each host."""

from __future__ import annotations

from kdist.engine.watch import RunWatch
from kdist.events import Event, HostSetup, Note, PhaseStarted, SliceFinished
from kdist.model import Platform, Slice, SliceResult, Status
from kdist.testing.reporter import RecordingReporter

AMD64 = Slice(Platform("linux", "amd64"), "h1", False, "/w", ("make",), "/w/bin")


def test_notes_are_kept_and_every_event_passes_on() -> None:
    """Notes are kept for the summary; the inner reporter sees everything."""
    inner = RecordingReporter()
    watch = RunWatch(inner)
    events: list[Event] = [Note("h3 left out", "warning"), PhaseStarted("linux-amd64", "sync", "h1", 1)]
    for event in events:
        watch.emit(event)
    assert watch.notes == ["h3 left out"]
    assert inner.events == events


def test_stopped_says_per_host_what_each_unfinished_slice_was_doing() -> None:
    """One line per host; the host of an attempt is kept through later phases; done slices go."""
    watch = RunWatch(RecordingReporter())
    for event in (
        PhaseStarted("linux-amd64", "sync", "h1", 1),
        PhaseStarted("linux-amd64", "build"),
        PhaseStarted("linux-arm64", "sync", "h2", 1),
        PhaseStarted("linux-s390x", "sync", "h2", 1),
        PhaseStarted("linux-s390x", "queued"),
        PhaseStarted("linux-386", "sync", "h3", 2),
        PhaseStarted("linux-386", "build"),
        PhaseStarted("linux-ppc64le", "sync", "h3", 1),
        SliceFinished(SliceResult(
            Slice(Platform("linux", "ppc64le"), "h3", True, "/w", (), "/w/b"), Status.OK, 1.0
        )),
    ):  # fmt: skip
        watch.emit(event)
    assert watch.stopped() == [
        "h1: stopped the build of linux/amd64 (attempt 1)",
        "h2: stopped while connecting and syncing for linux/arm64; "
        "linux/s390x, waiting for a free build slot",
        "h3: stopped the build of linux/386 (attempt 2)",
    ]


def test_stopped_during_tests_or_publish_names_that_stage() -> None:
    """After the slices, the unit tests' host or this machine's publishing is what stopped."""
    watch = RunWatch(RecordingReporter())
    watch.stage, watch.test_host = "tests", "h2"
    assert watch.stopped() == ["h2: stopped the unit tests"]
    watch.stage = "publish"
    assert watch.stopped()[0].startswith("this machine: stopped publishing")


def test_hosts_being_set_up_are_named_when_stopped() -> None:
    """Ctrl-C while hosts connect and sync (no slice there yet): one line per such host."""
    watch = RunWatch(RecordingReporter())
    for event in (HostSetup("h1"), HostSetup("h2"), HostSetup("h2", done=True)):
        watch.emit(event)
    assert watch.stopped() == [
        "h1: stopped while connecting and syncing",
        "h2: stopped before its first build began",
    ]
    watch.emit(PhaseStarted("linux-arm64", "build", "h2", 1))  # h2's attempt says what it does
    assert watch.stopped() == [
        "h1: stopped while connecting and syncing",
        "h2: stopped the build of linux/arm64 (attempt 1)",
    ]
