"""Cancelling a run (Ctrl-C) stops every remote build and leaves nothing behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kdist.engine import pipeline
from kdist.errors import Interrupted
from kdist.testing.builders import FakeFarm, host, job
from kdist.testing.fake import Reply
from kdist.testing.reporter import RecordingReporter


async def _cancel_when_building(farm: FakeFarm, run: asyncio.Task[Any], builds: int) -> None:
    while sum(len(f.runs(["make"])) for f in farm.transports.values()) < builds:
        await asyncio.sleep(0.005)
    run.cancel()


def test_cancel_stops_remote_builds_and_releases_locks(tmp_path: Path) -> None:
    """Cancelled mid-build: kill sent per attempt, locks and connections closed, hosts named."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.go").write_text("package main\n")
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/arm64")])
    for name in ("h1", "h2"):
        farm[name].on(["make"], Reply(hang=True, output="compiling"))
    the_job = job(source, platforms="linux/amd64,linux/arm64")

    async def scenario() -> None:
        run = asyncio.create_task(
            pipeline.run(the_job, farm.hosts, farm.factory, RecordingReporter())
        )
        await _cancel_when_building(farm, run, 2)
        await run

    with pytest.raises(Interrupted) as caught:
        asyncio.run(scenario())
    assert sorted(caught.value.stopped) == [
        "h1: stopped the build of linux/amd64 (attempt 1)",
        "h2: stopped the build of linux/arm64 (attempt 1)",
    ]
    assert [len(farm[n].killed) for n in ("h1", "h2")] == [1, 1]
    assert all(s.closed for n in ("h1", "h2") for s in farm[n].spawned)
    assert not farm["h1"].connected and not farm["h2"].connected
    out = source / "_output"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert not (out / "release-tars").exists()
