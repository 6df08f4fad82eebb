"""The run: connect, plan, then sync → build → pull → package per slice, then publish.

This is the only module that spawns tasks. Per-slice failure is data (a SliceResult);
one bad host never hides the other slices' results.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kdist import commands, images, kubernetes, plan, sync
from kdist.build import INFRA_EXIT_CODES, Deadlines, build_slice, host_fault
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
from kdist.events import (
    Event,
    Note,
    OutputLine,
    PhaseStarted,
    PlanReady,
    Reporter,
    SliceFinished,
)
from kdist.journal import Memo
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
from kdist.scheduler import HostSession, Scheduler
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
    idle_timeout: float | None = 900.0
    lock_wait: float = 30.0
    attempts: int = 3  # per slice: infrastructure failures move it to another host
    reuse: bool = True  # release: skip slices the journal shows are built and unchanged
    images: bool = False  # release --images: server images (see kdist.images)
    backoff: float = 1.0  # seconds before the first retry; doubles each time

    def expected(self, platform: Platform) -> tuple[str, ...] | None:
        """The binaries a slice must bring back (None: whatever the build made)."""
        if self.profile.layout is not Layout.KUBERNETES or self.what:
            return None
        return kubernetes.expected_binaries(platform)

    @property
    def deadlines(self) -> Deadlines:
        """The build deadlines of this job."""
        return Deadlines(idle=self.idle_timeout, total=self.slice_timeout)

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


@dataclass(frozen=True)
class Prepared:
    """The outcome of planning: the plan, every host's platforms, and the hosts found dead."""

    plan: Plan
    natives: dict[str, tuple[Platform, ...]]
    down: dict[str, str]


class NoteKeeper:
    """Passes events on and keeps every note's text, so the summary has them too."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.notes: list[str] = []

    def emit(self, event: Event) -> None:
        """Keep notes, forward everything."""
        if isinstance(event, Note):
            self.notes.append(event.text)
        self.inner.emit(event)

    def close(self) -> None:
        """Close the wrapped reporter."""
        self.inner.close()


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
    job: Job, hosts: Sequence[Host], conns: Connections, reporter: Reporter
) -> Prepared:
    """Detect the platforms of hosts that do not declare them, then plan (pure).

    Planned hosts are connected lazily when their first slice starts; a host that cannot be
    reached then is left out and its slices move, so a dead host costs one failed connect.
    """
    natives: dict[str, tuple[Platform, ...]] = {
        h.name: h.platforms for h in hosts if h.platforms is not None
    }
    down: dict[str, str] = {}
    await _detect(hosts, natives, conns, down, reporter)
    if job.pin in down:
        raise ConnectError(down[job.pin])
    alive = [h for h in hosts if h.name not in down]
    if not alive:
        raise ConnectError("no usable build host:\n" + "\n".join(down.values()))
    the_plan = plan.make_plan(alive, natives, job.request(_own_platform(job, alive, natives)))
    return Prepared(the_plan, natives, down)


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
    prepared: Prepared,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
) -> RunResult:
    """Run every slice of the plan; package as platforms arrive; publish when all are done."""
    the_plan = prepared.plan
    reporter = NoteKeeper(reporter)
    reporter.emit(PlanReady(the_plan))
    for note in the_plan.notes:
        reporter.emit(Note(note))
    if job.images and job.profile.layout is Layout.KUBERNETES:
        why = await asyncio.to_thread(images.why_not)
        reporter.emit(Note(f"server images not built: {why}", "warning"))
    memo = await Memo.open(job)
    published = memo.unchanged_release(job, the_plan.slices)
    if published is not None:
        reporter.emit(Note("nothing changed since the last release: re-verified, not rebuilt"))
    packager = Packager(job) if job.package and published is None else None
    if packager is not None:
        packager.start()
    run_id = secrets.token_hex(4)
    sched = _scheduler(job, prepared, hosts, conns, reporter, run_id)
    try:
        results = list(
            await asyncio.gather(
                *(
                    _slice_task(job, s, sched, packager, reporter, run_id, memo)
                    for s in the_plan.slices
                )
            )
        )
    except BaseException:
        if packager is not None:
            packager.abort()
        await sched.release()
        raise
    outcome = RunResult(the_plan, results, notes=reporter.notes)
    if published is not None:
        outcome.tarballs = published  # the tests passed for exactly these inputs already
    else:
        await _conclude(job, outcome, sched, packager, memo, reporter)
    await sched.release()
    return outcome


def _scheduler(
    job: Job,
    prepared: Prepared,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
    run_id: str,
) -> Scheduler:
    async def opener(host: Host) -> Transport:
        failed = await conns.open([host])
        if failed:
            raise ConnectError(failed[host.name])
        return conns[host.name]

    return Scheduler(
        hosts=hosts,
        natives=prepared.natives,
        request=job.request(tuple(s.platform for s in prepared.plan.slices)),
        the_plan=prepared.plan,
        opener=opener,
        setup=lambda session: _setup_host(job, session, run_id),
        reporter=reporter,
        excluded=dict(prepared.down),
    )


async def _conclude(
    job: Job,
    outcome: RunResult,
    sched: Scheduler,
    packager: Packager | None,
    memo: Memo,
    reporter: Reporter,
) -> None:
    """Unit tests, then publish; remember the release for the next no-op run."""
    if job.run_tests and job.profile.test and outcome.ok:
        await _run_tests(job, sched, outcome, reporter)
    if packager is not None:
        await packager.finish(outcome)
        if outcome.ok:
            memo.remember_release(job, outcome.results)


async def _run_tests(job: Job, sched: Scheduler, outcome: RunResult, reporter: Reporter) -> None:
    """Run the profile's unit tests once, on the plan's test host; a failure blocks the publish."""
    name = outcome.plan.test_host
    if name in sched.excluded:
        name = next(r.slice.host for r in outcome.results if r.slice.host not in sched.excluded)
    command = commands.to_shell(job.profile.test)
    reporter.emit(Note(f"unit tests on {name}: {command}"))
    log_path = job.output / "logs" / "test.log"
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {command}\n")
        try:
            session = await sched.session(name)
            result = await session.transport.run(
                job.profile.test,
                cwd=plan.tree_workdir(session.host, job.request()),
                env=session.env,
                sink=lambda line: print(line, file=log),
                timeout=job.slice_timeout,
            )
        except KdistError as exc:
            outcome.test_error = f"{name}: unit tests could not run: {exc}"
            return
    outcome.tests = result
    if result.ok:
        reporter.emit(Note(f"unit tests passed on {name} in {result.duration:.1f}s"))
    else:
        outcome.test_error = (
            f"{name}: unit tests failed (exit {result.returncode}); "
            f"see {log_path}\n{result.tail(10)}"
        )
        reporter.emit(Note(outcome.test_error, "error"))


async def _setup_host(job: Job, session: HostSession, run_id: str) -> None:
    """Once per host and run: take the workdir lock, sync the tree, hand over the version."""
    workdir = plan.tree_workdir(session.host, job.request())
    if not session.host.local:
        session.lock = await sync.take_lock(session.transport, workdir, run_id, job.lock_wait)
    await sync.sync_tree(session.transport, job.source, workdir)
    version = await session.transport.run(["go", "version"], env=session.env)
    session.toolchain = version.stdout.strip() if version.ok else "go: not found"
    if job.profile.layout is Layout.KUBERNETES:
        defs = session.env["KUBE_GIT_VERSION_FILE"]
        await sync.write_remote_file(session.transport, defs, version_defs(job.version))


async def _slice_task(
    job: Job,
    slc: Slice,
    sched: Scheduler,
    packager: Packager | None,
    reporter: Reporter,
    run_id: str,
    memo: Memo,
) -> SliceResult:
    """Attempts of one slice until it succeeds, fails for real, or no host is left; then pack."""
    log_path = job.output / "logs" / f"{slc.key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    current, attempt, start = slc, 1, time.monotonic()
    reused = memo.reuse(job, slc, str(log_path))
    if reused is not None:
        return await _finish(reused, slc, packager, reporter, start, 1, log_path)
    log_path.write_text("")
    memo.forget(slc)
    while True:
        result = await _attempt(job, current, sched, reporter, f"{run_id}-{slc.key}-{attempt}")
        if result.ok or result.status is not Status.INFRA or attempt >= job.attempts:
            break
        sched.exclude(current.host, result.error.splitlines()[0] if result.error else "failed")
        moved = sched.reassign(current)
        if moved is None:
            break
        why = result.error.splitlines()[0] if result.error else result.status.value
        reporter.emit(
            Note(f"{slc.platform}: retrying on {moved.host} (attempt {attempt + 1}): {why}")
        )
        await asyncio.sleep(min(job.backoff * 2 ** (attempt - 1), 30.0))
        current, attempt = moved, attempt + 1
    if result.ok:
        memo.remember(job, slc, result, sched.toolchain(result.slice.host))
    return await _finish(result, slc, packager, reporter, start, attempt, log_path)


async def _finish(
    result: SliceResult,
    slc: Slice,
    packager: Packager | None,
    reporter: Reporter,
    start: float,
    attempts: int,
    log_path: Path,
) -> SliceResult:
    if result.ok and packager is not None:
        try:
            reporter.emit(PhaseStarted(slc.key, "package"))
            await packager.platform(slc.platform)
        except (KdistError, OSError) as exc:
            result = _failed(result.slice, "package", exc, 0.0, str(log_path))
    result = dataclasses.replace(result, duration=time.monotonic() - start, attempts=attempts)
    reporter.emit(SliceFinished(result))
    return result


async def _attempt(
    job: Job, slc: Slice, sched: Scheduler, reporter: Reporter, attempt_id: str
) -> SliceResult:
    """One attempt of one slice on one host: set up the host, build, pull and verify."""
    log_path = job.output / "logs" / f"{slc.key}.log"
    start = time.monotonic()
    phase = "sync"
    with log_path.open("a", encoding="utf-8") as log:
        sink = _log_sink(log, slc, reporter)
        sink(f"# kdist: attempt {attempt_id}: {slc.platform} on {slc.host}"
             + (" (cross)" if slc.cross else ""))  # fmt: skip
        try:
            reporter.emit(PhaseStarted(slc.key, phase))
            session = await sched.session(slc.host)
            if session.gate.locked():  # the host is busy with `capacity` other slices
                reporter.emit(PhaseStarted(slc.key, "queued"))
            async with session.gate:
                phase = "build"
                reporter.emit(PhaseStarted(slc.key, phase))
                built = await build_slice(
                    session.transport, slc, session.env, sink, attempt_id, job.deadlines
                )
                if not built.ok:
                    raise _build_error(slc, built.returncode, built.tail(10))
                phase = "pull"
                reporter.emit(PhaseStarted(slc.key, phase))
                expected = job.expected(slc.platform)
                artifacts = await collect_slice(
                    session.transport,
                    slc,
                    job.dest(slc.platform),
                    expected,
                    job.output,
                    attempt_id,
                )
        except (KdistError, OSError) as exc:
            sink(f"# kdist: {phase} failed: {exc}")
            return _failed(slc, phase, exc, time.monotonic() - start, str(log_path))
    took = time.monotonic() - start
    return SliceResult(slc, Status.OK, took, "done", "", str(log_path), artifacts)


def _build_error(slc: Slice, code: int, tail: str) -> KdistError:
    if code in INFRA_EXIT_CODES:
        return InfraError(f"{slc.host}: {INFRA_EXIT_CODES[code]} (exit {code})\n{tail}")
    cause = host_fault(code, tail)
    if cause:
        return InfraError(f"{slc.host}: {slc.platform}: {cause} (exit {code})\n{tail}")
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
        prepared = await prepare(job, hosts, conns, reporter)
        return await execute(job, prepared, hosts, conns, reporter)
    finally:
        with contextlib.suppress(Exception):
            await conns.close()
