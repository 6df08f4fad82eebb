"""Scheduling on the sshd farm: a straggling host is hedged, and its build leaves nothing behind."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.engine.estimate import History
from kdist.engine.journal import save_history
from kdist.testing.devfarm import Farm
from kdist.testing.sleepy import make_sleepy_project
from tests.helpers import release

pytestmark = pytest.mark.e2e


@pytest.fixture
def amd64_farm(tmp_path: Path, gocache: Path) -> Iterator[Farm]:
    """Three interchangeable hosts, each native for linux/amd64."""
    platforms = [["linux/amd64"]] * 3
    with Farm(tmp_path / "farm", 3, first_address=91, platforms=platforms, gocache=gocache) as farm:
        yield farm


def _processes(marker: str, workdir: Path) -> list[str]:
    """Live processes with `marker` on their command line or working in `workdir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(proc / "cwd")
        except (OSError, IndexError):
            continue
        if state != "Z" and (marker in cmd or cwd.startswith(str(workdir))):
            found.append(cmd)
    return found


def test_a_slow_host_is_hedged_and_its_build_leaves_no_process(
    amd64_farm: Farm, tmp_path: Path
) -> None:
    """h1 sleeps 600 s where its history says 2 s: a twin on an idle host wins, h1's build dies."""
    marker = f"kdist-sleepy-{os.getpid()}-hedge"
    source = make_sleepy_project(
        tmp_path / "sleepy", {"linux/amd64": 2.0}, slow_host="h1", marker=marker
    )
    out = tmp_path / "out"
    learned = History().add("linux/amd64", "h1", 2.0).add("linux/amd64", "h2", 2.0)
    save_history(out, learned.add("linux/amd64", "h3", 2.0))  # h1 is first in the inventory
    start = time.monotonic()
    ran = release(source, hosts=amd64_farm.inventory_path, out=out, platforms="linux/amd64")
    took = time.monotonic() - start
    assert ran.code == 0, ran.stderr
    [built] = ran.json["slices"]
    hedge = built["hedge"]
    assert hedge is not None and hedge["host"] == "h1" and hedge["stopped"] == "h1"
    assert hedge["winner"] == hedge["twin"] == built["host"] != "h1"
    assert hedge["after"] >= 7.0  # max(1.5 x 2 s, 2 s + 5 s)
    assert ran.json["schedule"]["hedges"] == [hedge]
    assert ran.json["schedule"]["eta"], "the run's document keeps the estimates"
    assert took < 120  # bounded: far below the straggler's 600 s
    tool = out / "bin/linux/amd64/tool"
    assert tool.read_text().startswith("tool for linux/amd64 built on h")  # not h1's "slow"
    workdir = amd64_farm.host("h1").workdir
    deadline = time.monotonic() + 20
    while _processes(marker, workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes(marker, workdir) == []
    notes = json.dumps(ran.json["notes"])
    assert "h1 is slow" in notes and "build stopped" in notes
