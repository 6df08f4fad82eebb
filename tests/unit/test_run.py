"""The run logic against fake hosts: placement, failover, classification, head-node faults."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from kdist.cli import documents
from kdist.cli.documents import exit_status
from kdist.engine import pipeline
from kdist.engine.job import Job, RunResult
from kdist.errors import ConfigError, ConnectError, ExitStatus, HeadNodeError, PlanError
from kdist.events import Note, SliceFinished
from kdist.model import Host, Limits, Platform, Status
from kdist.testing.builders import GENERIC, FakeFarm, host, is_build, job
from kdist.testing.fake import Call, Reply, binary
from kdist.testing.reporter import RecordingReporter

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small source tree."""
    tree = tmp_path / "src"
    (tree / "cmd").mkdir(parents=True)
    (tree / "cmd" / "main.go").write_text("package main\n")
    (tree / "Makefile").write_text("all:\n")
    return tree


def make_farm(tmp_path: Path, *hosts: Host) -> FakeFarm:
    """Fake hosts h1 (amd64) and h2 (arm64) unless others are given."""
    return FakeFarm(
        tmp_path / "farm", hosts or (host("h1", "linux/amd64"), host("h2", "linux/arm64"))
    )


def run(
    the_job: Job, farm: FakeFarm, reporter: RecordingReporter | None = None,
    hosts: Sequence[Host] | None = None,
) -> RunResult:  # fmt: skip
    """One run of `the_job` on the fake farm."""
    return asyncio.run(
        pipeline.run(the_job, hosts or farm.hosts, farm.factory, reporter or RecordingReporter())
    )


def notes(reporter: RecordingReporter) -> list[str]:
    """Every note's text."""
    return [e.text for e in reporter.events if isinstance(e, Note)]


def test_each_platform_builds_on_its_native_host_and_is_published(
    tmp_path: Path, source: Path
) -> None:
    """Two platforms, two native hosts: each builds where it is native; both tarballs appear."""
    farm = make_farm(tmp_path)
    result = run(job(source, platforms="linux/amd64,linux/arm64"), farm)
    assert exit_status(result) is ExitStatus.OK
    assert {str(r.slice.platform): r.slice.host for r in result.results} == {
        "linux/amd64": "h1",
        "linux/arm64": "h2",
    }
    assert not any(r.slice.cross for r in result.results)
    assert sorted(n for n, _ in result.tarballs) == [
        "tool-linux-amd64.tar.gz",
        "tool-linux-arm64.tar.gz",
    ]
    tool = source / "_output/bin/linux/arm64/tool"
    assert tool.read_bytes() == binary(ARM64)
    assert (source / "_output/release-tars/SHA256SUMS").is_file()


def test_each_host_is_set_up_once_and_closed(tmp_path: Path, source: Path) -> None:
    """Per host: one connect, one lock, one sync, however many slices it builds."""
    farm = make_farm(tmp_path, host("h1", "linux/amd64", capacity=3))
    run(job(source, platforms="linux/amd64,linux/arm64,linux/386"), farm)
    ops = [c.op for c in farm["h1"].calls]
    assert (ops.count("connect"), ops.count("spawn"), ops.count("push")) == (1, 1, 1)
    assert ops[-1] == "close" and not farm["h1"].connected
    assert len(farm["h1"].runs(["make"])) == 3


def test_a_platform_without_a_native_host_is_cross_compiled(tmp_path: Path, source: Path) -> None:
    """linux/s390x has no native host: it is cross-compiled on the least loaded host, and said."""
    farm = make_farm(tmp_path)
    reporter = RecordingReporter()
    result = run(job(source, platforms="linux/amd64,linux/s390x"), farm, reporter)
    s390x = next(r for r in result.results if r.slice.platform.arch == "s390x")
    assert s390x.ok and s390x.slice.cross and s390x.slice.host == "h2"
    assert any("linux/s390x: no native host" in n for n in notes(reporter))


def test_native_only_refuses_a_platform_without_a_native_host(tmp_path: Path, source: Path) -> None:
    """--native-only makes a platform without a native host a plan error, before any build."""
    farm = make_farm(tmp_path)
    with pytest.raises(PlanError, match="linux/s390x"):
        run(job(source, platforms="linux/s390x", native_only=True), farm)
    assert farm.calls("run") == {"h1": 0, "h2": 0}


def test_undeclared_platforms_are_detected_with_the_probe(tmp_path: Path, source: Path) -> None:
    """A host without `platforms` is probed once; its detected platform counts as native."""
    farm = make_farm(tmp_path, host("h1", "linux/amd64"), host("h2"))
    farm["h2"].platform = ARM64
    result = run(job(source, platforms="linux/arm64"), farm)
    assert result.results[0].slice.host == "h2" and not result.results[0].slice.cross


def test_an_unreachable_host_is_left_out_and_its_slice_moves(tmp_path: Path, source: Path) -> None:
    """h2 refuses the login: arm64 moves to h1 (cross), the note names h2, exit 0.

    The toolchain check finds h2 dead before any slice starts; arm64 was planned there, so
    that counts as its first attempt and h1 builds it at the second.
    """
    farm = make_farm(tmp_path)
    farm["h2"].refuse = "authentication failed (publickey)"
    reporter = RecordingReporter()
    result = run(job(source, platforms="linux/amd64,linux/arm64"), farm, reporter)
    assert exit_status(result) is ExitStatus.OK
    arm = next(r for r in result.results if r.slice.platform == ARM64)
    assert (arm.slice.host, arm.slice.cross, arm.attempts) == ("h1", True, 2)
    assert any("h2 left out" in n and "authentication failed" in n for n in notes(reporter))
    assert farm.calls("connect")["h2"] == 1  # tried once, never again


def test_no_host_left_is_an_infrastructure_failure(tmp_path: Path, source: Path) -> None:
    """Every host refuses: exit 3, every slice says why, nothing is published."""
    farm = make_farm(tmp_path)
    farm["h1"].refuse = "unreachable: no SSH answer within 10s"
    farm["h2"].refuse = "unreachable: connection refused"
    result = run(job(source, platforms="linux/amd64"), farm)
    assert exit_status(result) is ExitStatus.INFRA_FAILED
    assert result.results[0].status is Status.INFRA
    assert not (source / "_output/release-tars").exists()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(returncode=127, output="sh: 1: make: not found"), "command not found"),
        (Reply(returncode=2, output="write /tmp/x: no space left on device"), "ENOSPC"),
        (Reply(returncode=137), "SIGKILL"),
        (Reply(drop=True, output="compiling"), "connection lost"),
    ],
)
def test_host_faults_move_the_slice(tmp_path: Path, source: Path, reply: Reply, why: str) -> None:
    """A host fault (tool missing, disk full, OOM kill, dropped link) moves the slice."""
    farm = make_farm(tmp_path)
    farm["h1"].on(["make"], reply)
    reporter = RecordingReporter()
    result = run(job(source, platforms="linux/amd64"), farm, reporter)
    assert exit_status(result) is ExitStatus.OK
    assert (result.results[0].slice.host, result.results[0].attempts) == ("h2", 2)
    assert any(why in n for n in notes(reporter) if "left out" in n)


def test_a_build_failure_is_not_retried(tmp_path: Path, source: Path) -> None:
    """The compiler said no: exit 1, the log tail in the error, no other host tried."""
    farm = make_farm(tmp_path)
    farm["h1"].on(["make"], Reply(returncode=2, output="main.go:3: undefined: x"))
    result = run(job(source, platforms="linux/amd64"), farm)
    slc = result.results[0]
    assert exit_status(result) is ExitStatus.BUILD_FAILED
    assert (slc.status, slc.phase, slc.attempts) == (Status.FAILED, "build", 1)
    assert "undefined: x" in slc.error and "exit 2" in slc.error
    assert farm["h2"].runs(["make"]) == []
    log = Path(slc.log).read_text()
    assert "main.go:3: undefined: x" in log and "build failed" in log


def test_attempts_bound_the_failover(tmp_path: Path, source: Path) -> None:
    """With --attempts 2 and three dropping hosts, the slice stops after two hosts (exit 3)."""
    farm = make_farm(
        tmp_path, host("h1", "linux/amd64"), host("h2", "linux/amd64"), host("h3", "linux/amd64")
    )
    for name in ("h1", "h2", "h3"):
        farm[name].on(["make"], Reply(drop=True))
    the_job = job(source, limits=Limits(backoff=0.0, attempts=2))
    result = run(the_job, farm)
    assert exit_status(result) is ExitStatus.INFRA_FAILED
    assert result.results[0].attempts == 2
    assert sum(bool(farm[n].runs(["make"])) for n in ("h1", "h2", "h3")) == 2


def test_a_busy_workdir_moves_the_slice(tmp_path: Path, source: Path) -> None:
    """Another run holds h1's workdir lock: h1 is reported busy and the slice moves."""
    farm = make_farm(tmp_path)
    farm["h1"].busy = "run-1234 other-head 1700000000"
    reporter = RecordingReporter()
    result = run(job(source), farm, reporter)
    assert result.ok and result.results[0].slice.host == "h2"
    assert any("busy" in n and "run-1234" in n for n in notes(reporter))


def test_a_failed_sync_moves_the_slice(tmp_path: Path, source: Path) -> None:
    """rsync to h1 fails: a transfer failure of h1, the slice moves."""
    farm = make_farm(tmp_path)
    farm["h1"].push_reply = Reply(returncode=12, output="rsync: connection unexpectedly closed")
    result = run(job(source), farm)
    assert result.ok and result.results[0].slice.host == "h2"


def test_a_silent_build_is_stopped_and_moves(tmp_path: Path, source: Path) -> None:
    """A build that hangs past the idle deadline is killed on its host and moves elsewhere."""
    farm = make_farm(tmp_path)
    farm["h1"].on(["make"], Reply(hang=True, output="starting"))
    the_job = job(source, limits=Limits(backoff=0.0, idle_timeout=0.05))
    result = run(the_job, farm)
    assert result.ok and result.results[0].slice.host == "h2"
    assert len(farm["h1"].killed) == 1  # kill_attempt was sent over a fresh channel


def test_a_slice_timeout_stops_a_chatty_build(tmp_path: Path, source: Path) -> None:
    """--slice-timeout stops a build that keeps printing; the error says so (exit 3 alone)."""
    farm = make_farm(tmp_path, host("h1", "linux/amd64"))
    farm["h1"].on(["make"], Reply(hang=True))
    the_job = job(source, limits=Limits(backoff=0.0, slice_timeout=0.05, idle_timeout=None))
    result = run(the_job, farm)
    assert exit_status(result) is ExitStatus.INFRA_FAILED
    assert "not finished after 0.05s" in result.results[0].error


def test_wrong_architecture_is_an_integrity_violation(tmp_path: Path, source: Path) -> None:
    """An arm64 binary for linux/amd64: exit 4, nothing published, nothing moved in."""
    farm = make_farm(tmp_path)
    farm["h1"].on(["make"], Reply(files={"bin/linux/amd64/tool": binary(ARM64)}))
    result = run(job(source, limits=Limits(attempts=1)), farm)
    assert exit_status(result) is ExitStatus.INTEGRITY_ERROR
    assert result.results[0].status is Status.INTEGRITY
    assert "a linux/arm64 binary" in result.results[0].error
    assert not (source / "_output/bin/linux/amd64").exists()
    assert not (source / "_output/release-tars").exists()


def test_an_integrity_violation_leaves_the_host_out_and_the_slice_moves(
    tmp_path: Path, source: Path
) -> None:
    """h1 sends a wrong binary: left out; h2 builds the slice, kept; still exit 4, no publish."""
    farm = make_farm(tmp_path, host("h1", "linux/amd64"), host("h2", "linux/amd64"))
    farm["h1"].on(["make"], Reply(files={"bin/linux/amd64/tool": binary(ARM64)}))
    reporter = RecordingReporter()
    result = run(job(source, limits=Limits(backoff=0.0)), farm, reporter)
    (slc,) = result.results
    assert slc.ok and slc.slice.host == "h2" and slc.attempts == 2
    (violation,) = slc.violations
    assert "h1: linux/amd64: tool is a linux/arm64" in violation
    assert any("h1 left out" in n for n in notes(reporter))
    assert exit_status(result) is ExitStatus.INTEGRITY_ERROR and not result.ok
    assert (source / "_output/bin/linux/amd64/tool").read_bytes() == binary(AMD64)
    assert not (source / "_output/release-tars").exists()
    assert documents.run_summary(job(source), result)["title"].startswith(
        "FAILED: integrity violation, nothing published: h1: linux/amd64"
    )


def test_the_gravest_class_wins(tmp_path: Path, source: Path) -> None:
    """Integrity beats a build failure beats an infrastructure failure."""
    farm = make_farm(
        tmp_path, host("h1", "linux/amd64"), host("h2", "linux/arm64"), host("h3", "linux/386")
    )
    farm["h1"].on(["make"], Reply(returncode=1, output="error"))
    farm["h3"].on(["make"], Reply(drop=True))
    the_job = job(source, platforms="linux/amd64,linux/386", limits=Limits(attempts=1))
    assert exit_status(run(the_job, farm)) is ExitStatus.BUILD_FAILED
    farm["h2"].on(["make"], Reply(files={"bin/linux/arm64/tool": binary(AMD64)}))
    # Native only: otherwise arm64 may cross-compile on h1 while h2 is busy, and fail there.
    three = job(
        source, platforms="linux/amd64,linux/386,linux/arm64", limits=Limits(attempts=1),
        native_only=True,
    )  # fmt: skip
    assert exit_status(run(three, farm)) is ExitStatus.INTEGRITY_ERROR


def test_an_oserror_on_the_head_node_excludes_no_host(tmp_path: Path, source: Path) -> None:
    """The head node's disk fails during an attempt: no host is left out, one error names the path."""
    out = tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    blocked = out / "bin" / "linux"
    blocked.write_text("a file where the platform folders must go")
    farm = make_farm(tmp_path, host("h1", "linux/amd64"), host("h2", "linux/amd64"))
    reporter = RecordingReporter()
    with pytest.raises(HeadNodeError, match=str(blocked)) as caught:
        run(job(source, out, platforms="linux/amd64,linux/arm64"), farm, reporter)
    assert caught.value.exit_status is ExitStatus.HEAD_NODE_FAILED
    assert not any("left out" in n for n in notes(reporter))
    assert len(farm["h1"].runs(["make"]) + farm["h2"].runs(["make"])) == 2  # no retry anywhere
    assert [p.name for p in out.rglob(".kdist-*")] == []
    assert not list(out.glob(".release-tars*"))


def test_a_read_only_output_fails_before_any_host_is_used(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output folder that cannot be written is a head-node error before any connect."""
    out = tmp_path / "out"
    out.write_text("not a folder")
    farm = make_farm(tmp_path)
    with pytest.raises(HeadNodeError, match=str(out)):
        run(job(source, out), farm)
    assert farm.calls("connect") == {"h1": 0, "h2": 0}


def test_an_unknown_pin_is_a_config_error(tmp_path: Path, source: Path) -> None:
    """--host naming a host that is down is a connect error naming it."""
    farm = make_farm(tmp_path, host("h1"))
    farm["h1"].refuse = "unreachable"
    with pytest.raises(ConnectError, match="h1"):
        run(job(source, pin="h1"), farm)
    with pytest.raises((ConfigError, PlanError)):
        run(job(source, pin="nope"), make_farm(tmp_path / "other"))


def test_slices_finish_once_each(tmp_path: Path, source: Path) -> None:
    """Every slice ends with exactly one SliceFinished event, failover or not."""
    farm = make_farm(tmp_path)
    farm["h2"].refuse = "unreachable"
    reporter = RecordingReporter()
    run(job(source, platforms="linux/amd64,linux/arm64"), farm, reporter)
    finished = [e.result.slice.platform for e in reporter.events if isinstance(e, SliceFinished)]
    assert sorted(finished) == [AMD64, ARM64]


ASKS_GIT = dataclasses.replace(GENERIC, git_answers=True)  # as a parsed generic kdist.yaml is


def _in_git(source: Path) -> None:
    """Make `source` a git repository with one commit tagged v1.2.3."""
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "import"),
                 ("tag", "v1.2.3")):  # fmt: skip
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=source,
                       check=True, capture_output=True)  # fmt: skip


def test_git_answers_go_to_every_host_with_the_tree(tmp_path: Path, source: Path) -> None:
    """A generic profile in git: each host gets the repository in .kdist/git and a .git for it."""
    _in_git(source)
    farm = make_farm(tmp_path)
    result = run(job(source, platforms="linux/amd64,linux/arm64", profile=ASKS_GIT), farm)
    assert exit_status(result) is ExitStatus.OK
    for name in ("h1", "h2"):
        pushed = [c.path for c in farm[name].calls if c.op == "push"]
        assert pushed[1:] == [f"{pushed[0]}/.kdist/git"]
        head = farm[name].path(f"{pushed[0]}/.kdist/git/kdist/HEAD")
        assert head.read_text() == "ref: refs/heads/main\n"
        installs = [c.argv[4:] for c in farm[name].calls if c.argv[3:4] == ("kdist-git",)]
        assert installs == [(pushed[0], "install")]


def test_git_answers_off_removes_them_and_sends_nothing(tmp_path: Path, source: Path) -> None:
    """git_answers: false: nothing is pushed but the tree, and the host is told to remove them."""
    _in_git(source)
    farm = make_farm(tmp_path, host("h1", "linux/amd64"))
    assert exit_status(run(job(source), farm)) is ExitStatus.OK  # GENERIC: git_answers off
    assert len([c for c in farm["h1"].calls if c.op == "push"]) == 1
    assert [c.argv[5] for c in farm["h1"].calls if c.argv[3:4] == ("kdist-git",)] == ["remove"]


def test_a_new_tag_rebuilds_and_the_same_answers_do_not(tmp_path: Path, source: Path) -> None:
    """The journal's key holds the git answers: unchanged is reused, a new tag is built again."""
    _in_git(source)
    farm = make_farm(tmp_path, host("h1", "linux/amd64"))
    assert not any(r.reused for r in run(job(source, profile=ASKS_GIT), farm).results)
    assert all(r.reused for r in run(job(source, profile=ASKS_GIT), farm).results)
    subprocess.run(["git", "tag", "other-tag"], cwd=source, check=True)
    assert not any(r.reused for r in run(job(source, profile=ASKS_GIT), farm).results)


def test_platformless_slices_build_at_once_in_their_own_trees(
    tmp_path: Path, source: Path
) -> None:
    """artifacts without the platform, capacity 2: each slice is made its own tree, builds there."""
    profile = dataclasses.replace(GENERIC, artifacts="out")
    farm = make_farm(tmp_path, host("h1", "linux/amd64", capacity=2))

    def tool_in_out(call: Call) -> Reply:
        return Reply(files={"out/tool": binary(Platform(call.argv[1], call.argv[2]))})

    farm["h1"].on(is_build, tool_in_out)
    result = run(job(source, platforms="linux/amd64,linux/arm64", profile=profile), farm)
    assert exit_status(result) is ExitStatus.OK
    tree = result.plan.slices[0].tree
    assert tree
    slots = [c.argv[4:] for c in farm["h1"].calls if c.argv[3:4] == ("kdist-slot",)]
    assert sorted(slots) == [(tree, f"{tree}/.kdist/slots/linux-amd64"),
                             (tree, f"{tree}/.kdist/slots/linux-arm64")]  # fmt: skip
    builds = {c.argv[1:3]: c.cwd for c in farm["h1"].calls if is_build(c)}
    assert builds == {("linux", "amd64"): f"{tree}/.kdist/slots/linux-amd64",
                      ("linux", "arm64"): f"{tree}/.kdist/slots/linux-arm64"}  # fmt: skip
    assert (source / "_output/bin/linux/arm64/tool").read_bytes() == binary(ARM64)


def test_git_failing_on_the_head_node_stops_the_run_with_exit_5(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged repository on the head node is the head node's failure: no host is blamed."""
    from kdist.stages import gitrepo

    def damaged(_source: Path, _mirror: Path) -> None:
        raise gitrepo.GitError("git rev-list in /src failed: fatal: bad object")

    monkeypatch.setattr(pipeline, "ship", damaged)
    farm = make_farm(tmp_path, host("h1", "linux/amd64"))
    with pytest.raises(HeadNodeError, match="bad object") as caught:
        run(job(source, profile=ASKS_GIT), farm)
    assert caught.value.exit_status is ExitStatus.HEAD_NODE_FAILED
    assert not any(c.op == "push" for c in farm["h1"].calls)
