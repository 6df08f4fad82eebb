"""Smoke stage: each binary run on a host native for its platform before anything is packed.

The profile's `smoke:` template (e.g. `{bin} --version`) runs once per executable, with
`{bin}` the binary's path on the host. The verified bytes are what runs: they are pushed
from the output to the host, not taken from the build host's tree. A binary whose platform
no usable host runs natively is marked untested, and the provenance says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kdist.config.profile import fields_for, substitute
from kdist.engine import plan
from kdist.engine.job import Job
from kdist.engine.scheduler import HostSession, Scheduler
from kdist.errors import CommandTimeout, KdistError
from kdist.events import Note, Reporter
from kdist.model import Platform, SliceResult, SmokeTest, Status
from kdist.remote.argv import to_shell
from kdist.stages import binfmt

SMOKE_TIMEOUT = 120.0  # seconds one binary may take to answer


async def smoke_slice(
    job: Job, result: SliceResult, sched: Scheduler, reporter: Reporter
) -> SliceResult:
    """Run the smoke command for each binary of a built slice; a failure fails the slice."""
    if not job.profile.smoke:
        return result
    platform = result.slice.platform
    folder = job.dest(platform)
    names = [Path(a.path).name for a in result.artifacts if _executable(job.output / a.path)]
    host = native_host(sched, platform, result.record.host if result.record else result.slice.host)
    if host is None:
        reporter.emit(Note(f"{platform}: no native host: {', '.join(names)} untested", "warning"))
        return dataclasses.replace(result, smoke=tuple(SmokeTest(n, "") for n in names))
    try:
        session = await sched.session(host)
        remote = await _place(job, session, folder, result.slice.key)
        tests = [await _run(job, session, platform, remote, name) for name in names]
    except (KdistError, OSError) as exc:
        error = f"{platform}: smoke test on {host} could not run: {exc}"
        return dataclasses.replace(result, status=Status.INFRA, phase="smoke", error=error)
    failed = [t for t in tests if not t.ok]
    if not failed:
        reporter.emit(Note(f"{platform}: smoke test passed on {host} ({len(tests)} binaries)"))
        return dataclasses.replace(result, smoke=tuple(tests))
    error = "\n".join(
        f"{platform}: smoke test failed: {t.binary} on {t.host}: {to_shell(t.argv)}\n{t.output}"
        for t in failed
    )
    return dataclasses.replace(
        result, status=Status.FAILED, phase="smoke", error=error, smoke=tuple(tests)
    )


def native_host(sched: Scheduler, platform: Platform, prefer: str) -> str | None:
    """A usable host that runs `platform` natively, the building host first."""
    natives = [h.name for h in sched.hosts if platform in sched.natives.get(h.name, ())]
    alive = [n for n in natives if n not in sched.excluded]
    return prefer if prefer in alive else (alive[0] if alive else None)


def _executable(path: Path) -> bool:
    with path.open("rb") as handle:
        return binfmt.detect(handle.read(binfmt.HEADER_BYTES)) is not None


async def _place(job: Job, session: HostSession, folder: Path, key: str) -> str:
    """The verified binaries on the host: pushed beside the tree's workdir (here: in place)."""
    if session.host.local:
        return str(folder)
    remote = f"{plan.tree_workdir(session.host, job.request())}.smoke/{key}"
    pushed = await session.transport.push(folder, remote, deadline=job.limits.transfer)
    if not pushed.ok:
        msg = f"push of {folder} failed (rsync exit {pushed.returncode}): {pushed.tail(3)}"
        raise KdistError(msg)
    return remote


async def _run(
    job: Job, session: HostSession, platform: Platform, remote: str, name: str
) -> SmokeTest:
    fields = {**fields_for(platform, job.version.version), "bin": f"{remote}/{name}"}
    argv = substitute(job.profile.smoke, fields)
    try:
        ran = await session.transport.run(argv, cwd=remote, env=session.env, timeout=SMOKE_TIMEOUT)
    except CommandTimeout:
        return SmokeTest(name, session.host.name, argv, False, f"no exit within {SMOKE_TIMEOUT:g}s")
    tail = ran.tail(5) + (f"\n(exit {ran.returncode})" if not ran.ok else "")
    return SmokeTest(name, session.host.name, argv, ran.ok, tail.strip())
