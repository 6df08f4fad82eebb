"""Every remote wait has a deadline: an audit of every call a run makes, and the stops."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from kdist.cli.documents import exit_status
from kdist.cli.options import parse
from kdist.engine import check, pipeline
from kdist.engine.job import Job, RunResult
from kdist.errors import ConfigError, ExitStatus
from kdist.model import Limits, Status, TransferDeadline
from kdist.remote.argv import HOST_GRACE, bounded, rsync_pull, rsync_push
from kdist.testing.builders import FAST, GENERIC, FakeFarm, host, job
from kdist.testing.fake import Call, FakeTransport, Reply
from kdist.testing.reporter import RecordingReporter

TESTED = dataclasses.replace(GENERIC, test=("make", "test"), smoke=("{bin}", "--version"))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A source tree with a Makefile (the fake hosts build without reading it)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/Makefile").write_text("all:\n")
    return tmp_path / "src"


def run(the_job: Job, farm: FakeFarm) -> RunResult:
    """One run of `the_job` on the fake farm."""
    return asyncio.run(pipeline.run(the_job, farm.hosts, farm.factory, RecordingReporter()))


def unbounded(calls: list[Call]) -> list[Call]:
    """Remote commands and transfers without a deadline (a guarded build is watched instead)."""
    return [
        c for c in calls if c.op in ("run", "push", "pull") and c.timeout is None and not c.held
    ]


def test_every_call_of_a_release_has_a_deadline(tmp_path: Path, source: Path) -> None:
    """A whole release (detection, toolchains, sync, build, pull, smoke, tests): none unbounded."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"), host("h2")))  # h2 detected
    result = run(
        job(source, platforms="linux/amd64,linux/arm64", profile=TESTED, run_tests=True), farm
    )
    assert exit_status(result) is ExitStatus.OK, [r.error for r in result.results]
    calls = [c for fake in farm.transports.values() for c in fake.calls]
    assert {c.op for c in calls} >= {"run", "push", "pull"}
    assert unbounded(calls) == []
    held = [c for c in calls if c.held]
    assert len(held) == 3  # two builds and the unit tests, under the guard and watched
    assert {c.timeout for c in calls if c.op in ("push", "pull")} == {Limits().transfer_timeout}


def test_hosts_check_probes_have_deadlines(tmp_path: Path) -> None:
    """`hosts check` probes with a deadline too."""
    fake = FakeTransport(host("h1", "linux/amd64"), tmp_path / "h1")
    asyncio.run(check.check_all([fake.host], lambda _: fake))
    assert fake.runs() and unbounded(fake.calls) == []


def test_a_hanging_go_leaves_the_host_out_and_the_slice_moves(tmp_path: Path, source: Path) -> None:
    """h1's `go version` never answers: past --command-timeout h1 is left out, h2 builds."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"), host("h2", "linux/amd64")))
    farm["h1"].on(["go", "version"], Reply(hang=True))
    limits = dataclasses.replace(FAST, command_timeout=0.2)
    result = run(job(source, limits=limits), farm)
    (slc,) = result.results
    assert slc.ok and slc.slice.host == "h2"
    assert exit_status(result) is ExitStatus.OK


def test_a_hanging_pull_is_stopped_and_the_slice_moves(tmp_path: Path, source: Path) -> None:
    """A pull that never ends (a FIFO on the host): stopped at the deadline, an infra failure."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"), host("h2", "linux/amd64")))
    farm["h1"].pull_reply = Reply(hang=True)
    limits = dataclasses.replace(FAST, transfer_timeout=0.2)
    result = run(job(source, limits=limits), farm)
    (slc,) = result.results
    assert slc.ok and slc.slice.host == "h2" and slc.attempts == 2
    alone = FakeFarm(tmp_path / "alone", (host("h1", "linux/amd64"),))  # nowhere to move
    alone["h1"].pull_reply = Reply(hang=True)
    one = run(job(source, tmp_path / "out", limits=limits), alone)
    assert one.results[0].status is Status.INFRA
    assert "rsync did not finish within 0.2s; stopped" in one.results[0].error


def test_unit_tests_that_never_end_are_stopped_on_their_host(tmp_path: Path, source: Path) -> None:
    """Tests silent past --idle-timeout: stopped (the guard's attempt killed), a test error."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    farm["h1"].on(["make", "test"], Reply(hang=True))
    limits = dataclasses.replace(FAST, idle_timeout=0.2)
    result = run(job(source, profile=TESTED, run_tests=True, limits=limits), farm)
    assert "no output for 0.2s; the unit tests were stopped" in result.test_error
    assert any("-test-" in attempt for attempt in farm["h1"].killed)
    assert exit_status(result) is ExitStatus.BUILD_FAILED


def test_bounded_runs_under_the_hosts_timeout_a_little_later() -> None:
    """The host-side limit: coreutils timeout when present, the head node's deadline + grace."""
    argv = bounded(["go", "version"], 2.5)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [str(3 + HOST_GRACE), "go", "version"]
    assert "exec timeout -k 5" in argv[2] and 'exec "$@"' in argv[2]
    with pytest.raises(ValueError, match="needs a command"):
        bounded([], 1)


def test_rsync_gets_an_io_timeout_and_a_host_side_wall_clock() -> None:
    """Both directions: --timeout for silence, --rsync-path under `timeout` for the whole."""
    deadline = TransferDeadline(idle=7.5, total=60)
    pull = rsync_pull("relay", "/w/out", Path("/tmp/s"), deadline=deadline)
    push = rsync_push("relay", Path("/src"), "/w", deadline=deadline)
    for argv in (pull, push):
        assert "--timeout=8" in argv
        (path,) = [a for a in argv if a.startswith("--rsync-path=")]
        assert path.endswith(f" {60 + HOST_GRACE} rsync") and "timeout -k 5" in path
    local = rsync_pull(None, "/w/out", Path("/tmp/s"), deadline=deadline)
    assert "--timeout=8" in local and not any(a.startswith("--rsync-path") for a in local)


@pytest.mark.parametrize("option", ["--command-timeout", "--transfer-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "inf"])
def test_deadlines_cannot_be_turned_off(option: str, value: str, tmp_path: Path) -> None:
    """A remote wait always has a deadline: 0, negative or infinite values are refused."""
    with pytest.raises(ConfigError, match=option):
        parse(["release", "--source", str(tmp_path), option, value])
