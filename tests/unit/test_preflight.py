"""Unit tests for kdist.engine.preflight: problems found before any connection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kdist.config.profile import KUBERNETES
from kdist.engine.preflight import Checks, make_needs, writable_folder
from kdist.errors import ConfigError, ExitStatus, PreflightError
from kdist.model import Layout, Profile

PROFILE = Profile("tool", Layout.GENERIC, (), ("make", "binaries"), "bin", source="kdist.yaml")


def test_checks_collect_every_problem_then_stop_with_exit_2() -> None:
    """Failed checks do not stop the others; done() raises all of them, one per line."""
    checks = Checks()

    def bad() -> int:
        raise ConfigError("hosts.yaml: hosts.h1.port: must be 1..65535")

    assert checks.run(bad) is None
    assert checks.run(lambda: 7) == 7
    checks.add(["kdist.yaml: build: `make` needs a Makefile in /src"])
    with pytest.raises(PreflightError) as caught:
        checks.done()
    assert caught.value.problems == (
        "hosts.yaml: hosts.h1.port: must be 1..65535",
        "kdist.yaml: build: `make` needs a Makefile in /src",
    )
    assert caught.value.exit_status == ExitStatus.CONFIG_ERROR


def test_no_problem_no_error() -> None:
    """done() is silent when every check passed."""
    Checks().done()


def test_make_needs_a_makefile_where_it_runs(tmp_path: Path) -> None:
    """`make`, `make -C sub`, `make -f other.mk`: each needs its makefile; other tools nothing."""
    assert make_needs(tmp_path, PROFILE, ["build"]) == [
        f"kdist.yaml: build: `make` needs a Makefile in {tmp_path} "
        "(none of GNUmakefile, makefile, Makefile is there)"
    ]
    (tmp_path / "GNUmakefile").write_text("all:\n")
    assert make_needs(tmp_path, PROFILE, ["build"]) == []
    sub = dataclasses.replace(PROFILE, build=("make", "-C", "sub", "x"), test=("go", "test"))
    assert "needs a Makefile in " + str(tmp_path / "sub") in make_needs(tmp_path, sub, ["build"])[0]
    assert make_needs(tmp_path, sub, ["test", "package"]) == []
    other = dataclasses.replace(PROFILE, build=("gmake", "--file=build/other.mk"))
    assert make_needs(tmp_path, other, ["build"]) == [
        f"kdist.yaml: build: `gmake` needs {tmp_path}/build/other.mk, which does not exist"
    ]


def test_the_kubernetes_profile_needs_the_trees_makefile(tmp_path: Path) -> None:
    """The built-in profile's make cross needs the Makefile at the top of the tree."""
    (problem,) = make_needs(tmp_path, KUBERNETES, ["build", "test"])[:1]
    assert problem.startswith("<built-in>: build: `make` needs a Makefile in")


def test_writable_folder(tmp_path: Path) -> None:
    """A folder to be made under a writable one is fine; a file in the way is a problem."""
    assert writable_folder(tmp_path / "a/b/c", "--output") == []
    (tmp_path / "f").write_text("x")
    assert writable_folder(tmp_path / "f", "--output") == [f"--output {tmp_path}/f: not a folder"]
    assert writable_folder(tmp_path / "f/out", "--output") == [
        f"--output {tmp_path}/f/out: {tmp_path}/f is not a folder"
    ]
    assert writable_folder(tmp_path / "none", "--timeline", create=False) == [
        f"--timeline {tmp_path}/none: no such folder"
    ]
    assert not list(tmp_path.glob("a"))  # nothing was written to find out
