"""Release trust in the run logic, on fake hosts: the reproducibility gate, smoke, toolchains."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from kdist.cli.documents import exit_status
from kdist.engine import pipeline
from kdist.engine.job import Job, RunResult
from kdist.errors import ConfigError, ExitStatus
from kdist.model import REPRODUCE_ALL, Platform, Status
from kdist.testing.builders import GENERIC, FakeFarm, host, is_build, job
from kdist.testing.fake import FAKE_HOST_KEY, Call, Reply, binary
from kdist.testing.reporter import RecordingReporter

AMD64 = Platform("linux", "amd64")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small source tree."""
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    return tree


def _farm(tmp_path: Path) -> FakeFarm:
    """Two amd64 hosts, so every slice has a second host to be rebuilt on."""
    return FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"), host("h2", "linux/amd64")))


def _run(the_job: Job, farm: FakeFarm) -> RunResult:
    return asyncio.run(pipeline.run(the_job, farm.hosts, farm.factory, RecordingReporter()))


def _stamp(name: str) -> Reply:
    """A build whose binary embeds the name of the host that built it."""
    return Reply(files={"bin/linux/amd64/tool": binary(AMD64, b"built on " + name.encode())})


def test_two_hosts_agreeing_is_recorded_and_published(tmp_path: Path, source: Path) -> None:
    """Same bytes from both hosts: published, and the provenance names both builds."""
    farm = _farm(tmp_path)
    result = _run(job(source, reproduce=REPRODUCE_ALL), farm)
    assert exit_status(result) is ExitStatus.OK
    [slice_result] = result.results
    rep = slice_result.reproduction
    assert rep is not None and rep.agreed and rep.record is not None
    assert {rep.record.host, slice_result.slice.host} == {"h1", "h2"}
    statement = json.loads((source / "_output/release-tars/provenance.intoto.json").read_text())
    [doc] = statement["predicate"]["buildDefinition"]["internalParameters"]["slices"]
    assert doc["build"]["host"]["hostKeyFingerprint"] == FAKE_HOST_KEY
    assert doc["reproducibility"]["agreed"] is True


def test_hosts_building_different_bytes_block_the_publish(tmp_path: Path, source: Path) -> None:
    """A binary that embeds its host's name differs: integrity failure naming both hosts."""
    farm = _farm(tmp_path)
    for name in ("h1", "h2"):
        farm[name].on(is_build, _stamp(name))
    result = _run(job(source, reproduce=1), farm)
    assert exit_status(result) is ExitStatus.INTEGRITY_ERROR
    [slice_result] = result.results
    assert slice_result.status is Status.INTEGRITY
    assert "h1 and h2 built different bytes" in slice_result.error
    assert "tool:" in slice_result.error and "first difference at offset" in slice_result.error
    assert not (source / "_output/release-tars").exists()


def test_no_second_host_for_the_gate_is_a_configuration_error(
    tmp_path: Path, source: Path
) -> None:
    """One host cannot check itself: --verify-reproducible fails before anything is built."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    with pytest.raises(ConfigError, match="none for: linux/amd64"):
        _run(job(source, reproduce=1), farm)
    assert not any(is_build(c) for c in farm["h1"].calls)


def test_a_failing_rebuild_host_is_left_out_and_another_one_used(
    tmp_path: Path, source: Path
) -> None:
    """The second build's host breaks: it is left out and a third host rebuilds."""
    farm = FakeFarm(tmp_path / "farm", tuple(host(n, "linux/amd64") for n in ("h1", "h2", "h3")))
    farm["h2"].on(is_build, Reply(returncode=127, output="make: not found"))
    result = _run(job(source, reproduce=1), farm)
    [slice_result] = result.results
    rep = slice_result.reproduction
    assert slice_result.slice.host == "h1"
    assert rep is not None and rep.agreed, slice_result.error
    assert rep.record is not None and rep.record.host == "h3"


def test_smoke_failure_names_binary_and_host(tmp_path: Path, source: Path) -> None:
    """A binary whose smoke command fails on its native host fails the slice (exit 1)."""
    farm = _farm(tmp_path)
    for name in ("h1", "h2"):
        farm[name].on(lambda c: c.argv[-1:] == ("--version",), Reply(returncode=2, output="bad"))
    profile = dataclasses.replace(GENERIC, smoke=("{bin}", "--version"))
    result = _run(job(source, profile=profile), farm)
    assert exit_status(result) is ExitStatus.BUILD_FAILED
    [slice_result] = result.results
    assert "smoke test failed: tool on h1" in slice_result.error


def test_smoke_without_native_host_marks_binaries_untested(tmp_path: Path, source: Path) -> None:
    """linux/arm64 built on an amd64 host with no arm64 host: published, marked untested."""
    farm = FakeFarm(tmp_path / "farm", (host("h1", "linux/amd64"),))
    profile = dataclasses.replace(GENERIC, smoke=("{bin}", "--version"))
    result = _run(job(source, platforms="linux/arm64", profile=profile), farm)
    assert exit_status(result) is ExitStatus.OK
    [slice_result] = result.results
    assert [(s.binary, s.tested) for s in slice_result.smoke] == [("tool", False)]


def test_hosts_with_different_go_are_refused_before_building(tmp_path: Path, source: Path) -> None:
    """h2 answers `go version` with another Go: exit 2 naming both, and nothing built."""
    farm = _farm(tmp_path)
    other = Reply(output="go version go1.21.13 linux/amd64")
    farm["h2"].on(lambda c: c.argv == ("go", "version"), other)
    with pytest.raises(ConfigError, match=r"h2 go1\.21\.13"):
        _run(job(source, platforms="linux/amd64,linux/386"), farm)
    assert not any(is_build(c) for name in ("h1", "h2") for c in farm[name].calls)


def test_is_build_is_a_call_predicate() -> None:
    """The builders' predicate matches GENERIC's build only (a guard for the tests above)."""
    assert is_build(Call("run", ("make", "linux", "amd64")))
    assert not is_build(Call("run", ("go", "version")))
