"""The reproducibility gate: sampled slices rebuilt on a second host, every binary compared.

The second build goes through the same attempt as the first (sync, guarded build, listing,
pull into fresh staging, verification), into a scratch folder instead of the output. Equal
digests are recorded as agreement; any difference is an integrity failure of the slice
(exit 4, nothing published) that names both hosts, the files and where they differ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from kdist.engine.scheduler import Scheduler
from kdist.errors import ConfigError
from kdist.events import Note, Reporter
from kdist.model import REPRODUCE_ALL, Platform, Reproduction, Slice, SliceResult, Status
from kdist.packaging import difference

SCRATCH = ".kdist/reproduce"
Rebuild = Callable[[Slice, str], Awaitable[SliceResult]]  # (slice on its new host, "r1", ...)


def sample(
    slices: Sequence[Slice], count: int, seed: str, second: Callable[[Slice], Slice | None]
) -> frozenset[Platform]:
    """The platforms to rebuild: `count` of them (REPRODUCE_ALL: all), chosen with `seed`.

    Only platforms with a second eligible host can be checked; asking for more than there
    are is a configuration error that names the platforms left without one.
    """
    if count == 0:
        return frozenset()
    able = sorted((s.platform for s in slices if second(s) is not None), key=str)
    unable = sorted(str(s.platform) for s in slices if s.platform not in able)
    wanted = len(slices) if count == REPRODUCE_ALL else count
    if len(able) < wanted:
        msg = (
            f"--verify-reproducible: {wanted} slice(s) asked for, but only {len(able)} "
            f"can be rebuilt on a second host; none for: {', '.join(unable)}"
        )
        raise ConfigError(msg)
    return frozenset(random.Random(seed).sample(able, wanted))  # noqa: S311  # not a secret


def first_host(result: SliceResult) -> str:
    """The host whose build is in the output (from the journal, when it was reused)."""
    return result.record.host if result.record else result.slice.host


def scratch(output: Path, slc: Slice) -> Path:
    """Where the second build's binaries are pulled to."""
    return output / SCRATCH / slc.key


async def compare(first: SliceResult, second: SliceResult, output: Path) -> Reproduction:
    """Compare the binaries of two builds file by file; diffoscope reports when installed."""
    ours = {Path(a.path).name: a for a in first.artifacts}
    theirs = {Path(a.path).name: a for a in second.artifacts}
    lines, reports = [], []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours or name not in theirs:
            lines.append(f"{name}: built by only one of the two hosts")
            continue
        if ours[name].sha256 == theirs[name].sha256:
            continue
        a, b = output / ours[name].path, output / theirs[name].path
        found = await asyncio.to_thread(difference.compare, a, b)
        lines.append(found.describe() if found else f"{name}: digests differ")
        report = output / "logs" / f"{first.slice.key}.{name}.diffoscope.txt"
        made = await asyncio.to_thread(difference.diffoscope, a, b, report)
        if made is not None:
            reports.append(str(made))
    agreed = not lines
    if agreed:
        shutil.rmtree(scratch(output, first.slice), ignore_errors=True)
    return Reproduction(second.record, agreed, tuple(lines), "", tuple(reports))


def mismatch_message(first: SliceResult, rep: Reproduction, output: Path) -> str:
    """The error of a slice whose two builds differ: slice, hosts, files, where."""
    second = rep.record.host if rep.record else "?"
    head = (
        f"{first.slice.platform}: not reproducible: {first_host(first)} and {second} built "
        f"different bytes (second build kept in {scratch(output, first.slice)})"
    )
    lines = [f"  {line}" for line in rep.differences]
    lines += [f"  diffoscope report: {path}" for path in rep.reports]
    return "\n".join([head, *lines])


async def rebuild_and_compare(
    result: SliceResult,
    sched: Scheduler,
    reporter: Reporter,
    rebuild: Rebuild,
    attempts: int,
    output: Path,
) -> SliceResult:
    """Rebuild a slice on another host (the next one if that host fails), then compare."""
    slc, first = result.slice, first_host(result)
    avoid, rebuilt, where = {first}, None, ""
    for n in range(1, attempts + 1):
        second = sched.reassign(slc, avoid=avoid)
        if second is None:
            break
        where = second.host
        reporter.emit(Note(f"{slc.platform}: rebuilding on {where} to compare with {first}"))
        rebuilt = await rebuild(second, f"r{n}")
        if rebuilt.status is not Status.INFRA:
            break
        sched.exclude(where, rebuilt.error.splitlines()[0] if rebuilt.error else "failed")
        avoid.add(where)
    if rebuilt is None or not rebuilt.ok:
        return _not_rebuilt(result, rebuilt, where)
    rep = await compare(result, rebuilt, output)
    if rep.agreed:
        note = f"{slc.platform}: reproducible: {first} and {where} built identical binaries"
        reporter.emit(Note(note))
        return dataclasses.replace(result, reproduction=rep)
    error = mismatch_message(result, rep, output)
    reporter.emit(Note(error, "error"))
    return dataclasses.replace(
        result, status=Status.INTEGRITY, phase="reproduce", error=error, reproduction=rep
    )


def _not_rebuilt(result: SliceResult, rebuilt: SliceResult | None, where: str) -> SliceResult:
    """The slice fails the gate when no second build could be made (its status says why)."""
    why = rebuilt.error if rebuilt else "no second host that can build it is left"
    rep = Reproduction(rebuilt.record if rebuilt else None, False, error=why)
    on = f" on {where}" if where else ""
    error = f"{result.slice.platform}: reproducibility rebuild{on} failed: {why}"
    status = rebuilt.status if rebuilt else Status.INFRA
    return dataclasses.replace(
        result, status=status, phase="reproduce", error=error, reproduction=rep
    )
