"""The run: connect, plan, then sync → build → pull → package per slice, then publish.

This is the only module that spawns tasks. Per-slice failure is data (a SliceResult);
one bad host never hides the other slices' results.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kdist import commands, kubernetes, plan, sync
from kdist.build import INFRA_EXIT_CODES, build_slice
from kdist.check import probe_host
from kdist.collect import collect_slice
from kdist.errors import (
    CommandFailed,
    ConnectError,
    InfraError,
    IntegrityError,
    KdistError,
    PlanError,
)
from kdist.events import Note, OutputLine, PhaseStarted, PlanReady, Reporter, SliceFinished
from kdist.model import (
    CommandResult,
    Host,
    Layout,
    Plan,
    Platform,
    Profile,
    Slice,
    SliceResult,
    Status,
    VersionInfo,
)
from kdist.profile import fields_for, substitute
from kdist.publish import Packager
from kdist.transport import Transport
from kdist.version import version_defs

TransportFactory = Callable[[Host], Transport]


@dataclass(frozen=True)
class Job:
    """What the user asked for, after the CLI parsed and validated it."""

    source: Path
    output: Path
    profile: Profile
    platforms: tuple[Platform, ...]
    version: VersionInfo
    tree_id: str
    pin: str | None = None
    native_only: bool = False
    what: tuple[str, ...] = ()
    package: bool = True  # release: make tarballs; build: binaries only
    in_tree: bool = False  # build: binaries land where the profile's build puts them locally
    run_tests: bool = False  # release: the profile's unit tests gate the publish
    slice_timeout: float | None = None

    @property
    def binaries(self) -> Path:
        """The folder that holds the release's `<os>/<arch>/` binary folders."""
        sub = "dockerized/bin" if self.profile.layout is Layout.KUBERNETES else "bin"
        return self.output / sub

    def dest(self, platform: Platform) -> Path:
        """Where one platform's verified binaries land on the head node."""
        if self.in_tree:
            fields = fields_for(platform, self.version.version)
            return self.source / substitute((self.profile.artifacts,), fields)[0]
        return self.binaries / platform.os / platform.arch

    def request(self, platforms: tuple[Platform, ...] | None = None) -> plan.PlanRequest:
        """The pure planning input of this job (`platforms` fills in an empty platform list)."""
        return plan.PlanRequest(
            platforms=self.platforms or platforms or (),
            profile=self.profile,
            source=str(self.source),
            tree_id=self.tree_id,
            version=self.version,
            pin=self.pin,
            native_only=self.native_only,
            what=self.what,
        )


@dataclass
class RunResult:
    """Everything a run produced: the plan, a result per slice, the tarballs."""

    plan: Plan
    results: list[SliceResult]
    tarballs: list[tuple[str, str]] = field(default_factory=list)  # (name, sha256)
    notes: list[str] = field(default_factory=list)
    package_error: str = ""
    tests: CommandResult | None = None  # the unit test run, when the job asked for one
    test_error: str = ""

    @property
    def ok(self) -> bool:
        """True when every slice, the tests and packaging (each if asked for) succeeded."""
        slices_ok = all(r.ok for r in self.results)
        return slices_ok and not self.package_error and not self.test_error


class Connections:
    """One transport per host, opened at most once per run and closed together."""

    def __init__(self, factory: TransportFactory) -> None:
        self._factory = factory
        self._open: dict[str, Transport] = {}

    async def open(self, hosts: Sequence[Host]) -> dict[str, str]:
        """Connect to `hosts` in parallel; return {host: error} for those that failed."""
        todo = [h for h in hosts if h.name not in self._open]
        outcomes = await asyncio.gather(*(self._connect(h) for h in todo))
        return {h.name: err for h, err in zip(todo, outcomes, strict=True) if err}

    async def _connect(self, host: Host) -> str:
        transport = self._factory(host)
        try:
            await transport.connect()
        except KdistError as exc:
            await transport.close()
            return str(exc)
        self._open[host.name] = transport
        return ""

    def __getitem__(self, name: str) -> Transport:
        return self._open[name]

    async def close(self) -> None:
        """Close every open transport."""
        await asyncio.gather(*(t.close() for t in self._open.values()), return_exceptions=True)
        self._open.clear()


async def prepare(
    job: Job,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
    *,
    connect: bool = True,
) -> Plan:
    """Detect what must be detected, plan, connect the planned hosts; re-plan around dead ones.

    With `connect=False` (dry runs) only hosts whose platforms must be detected are contacted.
    """
    down: dict[str, str] = {}
    natives: dict[str, tuple[Platform, ...]] = {
        h.name: h.platforms for h in hosts if h.platforms is not None
    }
    while True:
        alive = [h for h in hosts if h.name not in down]
        if not alive:
            raise ConnectError("no usable build host:\n" + "\n".join(down.values()))
        await _detect(alive, natives, conns, down, reporter)
        if job.pin in down:
            raise ConnectError(down[job.pin])
        alive = [h for h in alive if h.name not in down]
        if not alive:
            continue
        the_plan = plan.make_plan(alive, natives, job.request(_own_platform(job, alive, natives)))
        if not connect:
            return the_plan
        failed = await conns.open([h for h in alive if h.name in the_plan.hosts])
        if not failed:
            return the_plan
        for error in failed.values():
            reporter.emit(Note(f"{error} — left out of this run", "warning"))
        down.update(failed)
        if job.pin in failed:
            raise ConnectError(failed[job.pin])


def _own_platform(
    job: Job, hosts: Sequence[Host], natives: Mapping[str, tuple[Platform, ...]]
) -> tuple[Platform, ...]:
    # `kdist build` without --platform builds for the building host's own platform.
    name = job.pin or hosts[0].name
    own = natives.get(name, ())[:1]
    if not job.platforms and not own:
        msg = f"{name}: its platform is unknown; pass --platform"
        raise PlanError(msg)
    return own


async def _detect(
    hosts: Sequence[Host],
    natives: dict[str, tuple[Platform, ...]],
    conns: Connections,
    down: dict[str, str],
    reporter: Reporter,
) -> None:
    unknown = [h for h in hosts if h.name not in natives]
    failed = await conns.open(unknown)
    for host in unknown:
        if host.name in failed:
            continue
        try:
            facts = await probe_host(conns[host.name], host)
        except KdistError as exc:
            failed[host.name] = str(exc)
            continue
        natives[host.name] = (facts.platform,) if facts.platform else ()
    for error in failed.values():
        reporter.emit(Note(f"{error} — left out of this run", "warning"))
    down.update(failed)


async def execute(
    job: Job,
    the_plan: Plan,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
) -> RunResult:
    """Run every slice of the plan; package as platforms arrive; publish when all are done."""
    reporter.emit(PlanReady(the_plan))
    for note in the_plan.notes:
        reporter.emit(Note(note))
    packager = Packager(job) if job.package else None
    if packager is not None:
        packager.start()
    by_name = {h.name: h for h in hosts}
    runs = [
        _run_host(job, the_plan, by_name[name], conns[name], packager, reporter)
        for name in the_plan.hosts
    ]
    results = [r for batch in await asyncio.gather(*runs) for r in batch]
    order = {s.key: i for i, s in enumerate(the_plan.slices)}
    results.sort(key=lambda r: order[r.slice.key])
    outcome = RunResult(the_plan, results, notes=list(the_plan.notes))
    if job.run_tests and job.profile.test and outcome.ok:
        await _run_tests(job, the_plan, conns[the_plan.test_host], outcome, reporter)
    if packager is not None:
        await packager.finish(outcome)
    return outcome


async def _run_tests(
    job: Job, the_plan: Plan, transport: Transport, outcome: RunResult, reporter: Reporter
) -> None:
    """Run the profile's unit tests once, on the plan's test host; a failure blocks the publish."""
    workdir = the_plan.for_host(the_plan.test_host)[0].workdir
    command = commands.to_shell(job.profile.test)
    reporter.emit(Note(f"unit tests on {the_plan.test_host}: {command}"))
    log_path = job.output / "logs" / "test.log"
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {command}\n")
        try:
            result = await transport.run(
                job.profile.test,
                cwd=workdir,
                env=the_plan.env[the_plan.test_host],
                sink=lambda line: print(line, file=log),
                timeout=job.slice_timeout,
            )
        except KdistError as exc:
            outcome.test_error = f"{the_plan.test_host}: unit tests could not run: {exc}"
            return
    outcome.tests = result
    if result.ok:
        reporter.emit(Note(f"unit tests passed on {the_plan.test_host} in {result.duration:.1f}s"))
    else:
        outcome.test_error = (
            f"{the_plan.test_host}: unit tests failed (exit {result.returncode}); "
            f"see {log_path}\n{result.tail(10)}"
        )
        reporter.emit(Note(outcome.test_error, "error"))


async def _run_host(
    job: Job,
    the_plan: Plan,
    host: Host,
    transport: Transport,
    packager: Packager | None,
    reporter: Reporter,
) -> list[SliceResult]:
    """Sync the tree once for this host, then run its slices, `capacity` at a time."""
    slices = the_plan.for_host(host.name)
    start = time.monotonic()
    for s in slices:
        reporter.emit(PhaseStarted(s.key, "sync"))
    try:
        await _sync_host(job, the_plan, host, transport)
    except KdistError as exc:
        return [_failed(s, "sync", exc, time.monotonic() - start, "") for s in slices]
    gate = asyncio.Semaphore(host.capacity)
    env = the_plan.env[host.name]
    return list(
        await asyncio.gather(
            *(_run_slice(job, s, env, transport, gate, packager, reporter) for s in slices)
        )
    )


async def _sync_host(job: Job, the_plan: Plan, host: Host, transport: Transport) -> None:
    workdir = plan.tree_workdir(host, job.request())
    await sync.sync_tree(transport, job.source, workdir)
    if job.profile.layout is Layout.KUBERNETES:
        defs = the_plan.env[host.name]["KUBE_GIT_VERSION_FILE"]
        await sync.write_remote_file(transport, defs, version_defs(job.version))


async def _run_slice(
    job: Job,
    slc: Slice,
    env: Mapping[str, str],
    transport: Transport,
    gate: asyncio.Semaphore,
    packager: Packager | None,
    reporter: Reporter,
) -> SliceResult:
    """Build → pull → package for one slice; every failure becomes this slice's result."""
    log_path = job.output / "logs" / f"{slc.key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    async with gate:
        start = time.monotonic()
        phase = "build"
        with log_path.open("w", encoding="utf-8") as log:
            sink = _log_sink(log, slc, reporter)
            try:
                reporter.emit(PhaseStarted(slc.key, phase))
                sink(f"# kdist: {slc.platform} on {slc.host}{' (cross)' if slc.cross else ''}")
                built = await build_slice(transport, slc, env, sink, job.slice_timeout)
                if not built.ok:
                    raise _build_error(slc, built.returncode, built.tail(10))
                phase = "pull"
                reporter.emit(PhaseStarted(slc.key, phase))
                dest = job.dest(slc.platform)
                expected = _expected(job, slc.platform)
                artifacts = await collect_slice(transport, slc, dest, expected, job.output)
                if packager is not None:
                    phase = "package"
                    reporter.emit(PhaseStarted(slc.key, phase))
                    await packager.platform(slc.platform)
            except (KdistError, OSError) as exc:
                sink(f"# kdist: {phase} failed: {exc}")
                result = _failed(slc, phase, exc, time.monotonic() - start, str(log_path))
            else:
                result = SliceResult(
                    slc, Status.OK, time.monotonic() - start, "done", "", str(log_path), artifacts
                )
    reporter.emit(SliceFinished(result))
    return result


def _expected(job: Job, platform: Platform) -> tuple[str, ...] | None:
    if job.profile.layout is not Layout.KUBERNETES or job.what:
        return None
    return kubernetes.expected_binaries(platform)


def _build_error(slc: Slice, code: int, tail: str) -> KdistError:
    if code in INFRA_EXIT_CODES:
        return InfraError(f"{slc.host}: {INFRA_EXIT_CODES[code]} (exit {code})\n{tail}")
    return CommandFailed(f"{slc.host}: {slc.platform}: build failed (exit {code})", code, tail)


def _failed(slc: Slice, phase: str, exc: BaseException, took: float, log: str) -> SliceResult:
    if isinstance(exc, IntegrityError):
        status = Status.INTEGRITY
    elif isinstance(exc, InfraError | OSError):
        status = Status.INFRA
    else:
        status = Status.FAILED
    return SliceResult(slc, status, took, phase, str(exc), log)


def _log_sink(log: TextIO, slc: Slice, reporter: Reporter) -> Callable[[str], None]:
    def sink(line: str) -> None:
        log.write(line + "\n")
        log.flush()
        reporter.emit(OutputLine(slc.key, line))

    return sink


async def run(
    job: Job, hosts: Sequence[Host], factory: TransportFactory, reporter: Reporter
) -> RunResult:
    """Plan and run a job end to end; connections are closed whatever happens."""
    conns = Connections(factory)
    try:
        the_plan = await prepare(job, hosts, conns, reporter)
        return await execute(job, the_plan, hosts, conns, reporter)
    finally:
        with contextlib.suppress(Exception):
            await conns.close()
