"""The run: connect, plan, then sync → build → pull → package per slice, then publish.

This is the only module that spawns tasks. Per-slice failure is data (a SliceResult);
one bad host never hides the other slices' results.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdist.config.version import version_defs, version_warnings
from kdist.engine import hedging, plan, reproduce, toolchain
from kdist.engine.context import RunContext
from kdist.engine.job import Job, RunResult
from kdist.engine.journal import Memo
from kdist.engine.logtail import SliceLog, excerpt
from kdist.engine.prepare import (
    Connections,
    Prepared,
    TransportFactory,
    check_output,
    prepare,
)
from kdist.engine.scheduler import HostSession, Scheduler
from kdist.engine.timeline import span
from kdist.engine.watch import RunWatch
from kdist.errors import (
    CommandFailed,
    ConnectError,
    HeadNodeError,
    InfraError,
    IntegrityError,
    Interrupted,
    KdistError,
    PackageError,
    head_node_faults,
)
from kdist.events import (
    Note,
    OutputLine,
    PhaseStarted,
    PlanReady,
    Reporter,
    RunStarted,
    SliceFinished,
    Transfer,
)
from kdist.model import (
    BuildRecord,
    Host,
    Layout,
    Limits,
    Plan,
    Slice,
    SliceResult,
    Status,
)
from kdist.packaging import registry
from kdist.packaging.images import ImagePlan, image_specs, preflight
from kdist.stages import sync
from kdist.stages.build import INFRA_EXIT_CODES, build_slice, host_fault
from kdist.stages.collect import collect_slice
from kdist.stages.gitrepo import MIRROR, Shipped, ship
from kdist.stages.publish import Packager
from kdist.stages.smoke import smoke_slice
from kdist.stages.tests import run_tests
from kdist.text import inert
from kdist.transport import Progress, Transport

if TYPE_CHECKING:
    from kdist.stages import container

__all__ = ["execute", "run"]

GO_MISSING = "go: not found"  # a host's toolchain when `go version` failed there


async def execute(
    job: Job,
    prepared: Prepared,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
    images: ImagePlan | None = None,
    started: float | None = None,
) -> RunResult:
    """Run every slice of the plan; package as platforms arrive; publish when all are done."""
    the_plan = prepared.plan
    reporter = RunWatch(reporter)
    run_id, started = secrets.token_hex(4), time.time() if started is None else started
    boxes = await _container_setup(job, run_id)
    memo = await Memo.open(job, boxes.head.key(boxes.spec) if boxes else "")
    shipped = await _git_answers(job)
    memo.git = f"{shipped.commit} {shipped.digest}" if shipped is not None else ""
    memo.images = images.identity() if images is not None else []
    reporter.emit(_run_started(job, the_plan, hosts, run_id, started, memo))
    for warning in version_warnings(job.version):
        reporter.emit(Note(warning, "warning"))
    reporter.emit(PlanReady(the_plan))
    for note in the_plan.notes:
        reporter.emit(Note(note))
    published = memo.unchanged_release(job, the_plan.slices)
    if published is not None:
        reporter.emit(Note("nothing changed since the last release: re-verified, not rebuilt"))
    gate = toolchain.Gate(job.go_pin, job.allow_toolchain_drift)
    sched = _scheduler(job, prepared, hosts, conns, reporter, run_id, boxes, gate, shipped)
    packager = Packager(job, images) if job.package and published is None else None
    ctx = RunContext(job, run_id, sched, reporter, memo, packager)
    try:
        if published is None:
            await _agree_toolchains(
                gate, sched, reporter, containers=boxes is not None, limits=job.limits
            )
            # Hosts with slices to build are set up at once; reused slices need no host.
            fresh = [s for s in the_plan.slices if memo.reuse(job, s, str(ctx.log_path(s))) is None]
            sched.warm(dict.fromkeys(s.host for s in fresh))
            ctx.sampled = reproduce.sample(
                the_plan.slices, job.reproduce, run_id, lambda s: sched.candidate(s, avoid={s.host})
            )
        if packager is not None:
            packager.start()
        results = await _all_or_none(_slice_task(ctx, s) for s in the_plan.slices)
        outcome = RunResult(the_plan, results, notes=reporter.notes, run_id=run_id,
                            started=started, toolchain=gate.as_dict(),
                            estimates=reporter.estimates)  # fmt: skip
        if published is not None:
            outcome.tarballs = published  # the tests passed for exactly these inputs already
        else:
            await _conclude(ctx, outcome, reporter)
    except asyncio.CancelledError:
        raise Interrupted(tuple(reporter.stopped())) from None
    finally:
        if packager is not None:
            packager.abort()  # nothing left behind, whatever happened (a no-op once published)
        await sched.release()
        if boxes is not None:
            boxes.head.close()
    outcome.finished = time.time()
    return outcome


async def _all_or_none(coros: Iterable[Coroutine[Any, Any, SliceResult]]) -> list[SliceResult]:
    """Run every slice at once; if one raises (the head node failed), cancel the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # no-op for finished tasks; stops the rest after a failure or a ^C
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return [task.result() for task in tasks]


async def _git_answers(job: Job) -> Shipped | None:
    """The repository that gives build hosts the head node's git answers (profile permitting)."""
    if not job.profile.git_answers:
        return None
    return await asyncio.to_thread(ship, job.source, job.output / MIRROR)


async def _container_setup(job: Job, run_id: str) -> container.Setup | None:
    """Container builds: the head node's view of the images (to compare ids and to send)."""
    if job.container is None:
        return None
    from kdist.stages import container  # docker is imported only for container builds

    head = await asyncio.to_thread(container.HeadImages.load, job.container)
    return container.Setup(job.container, head, job.source, job.profile.name, job.tree_id, run_id)


def _run_started(
    job: Job, the_plan: Plan, hosts: Sequence[Host], run_id: str, started: float, memo: Memo
) -> RunStarted:
    """The live view's header: what runs where, and how long it took last time."""
    return RunStarted(
        project=job.profile.name,
        version=job.version.version,
        run_id=run_id,
        hosts=the_plan.hosts,
        platforms=tuple(str(s.platform) for s in the_plan.slices),
        output=str(job.output),
        started=started,
        command="release" if job.package else "build",
        capacity={h.name: h.capacity for h in hosts},
        expected={k: end - start for k, (start, end) in the_plan.expected.items()},
    )


def _scheduler(
    job: Job,
    prepared: Prepared,
    hosts: Sequence[Host],
    conns: Connections,
    reporter: Reporter,
    run_id: str,
    boxes: container.Setup | None,
    gate: toolchain.Gate,
    shipped: Shipped | None,
) -> Scheduler:
    async def opener(host: Host) -> Transport:
        failed = await conns.open([host])
        if failed:
            raise ConnectError(failed[host.name])
        return conns[host.name]

    heard: dict[str, str] = {}
    return Scheduler(
        hosts=hosts,
        natives=prepared.natives,
        request=job.request(tuple(s.platform for s in prepared.plan.slices)),
        the_plan=prepared.plan,
        opener=opener,
        setup=lambda session: _setup_host(
            job, session, run_id, boxes, reporter, gate, shipped, heard
        ),
        reporter=reporter,
        excluded=dict(prepared.down),
        estimates=dataclasses.replace(prepared.estimates, margin=job.limits.hedge_margin),
        hedge=job.hedge,
        go_versions=heard,
    )


async def _conclude(ctx: RunContext, outcome: RunResult, reporter: RunWatch) -> None:
    """Unit tests, then publish; remember the release for the next no-op run."""
    job, sched, packager, memo = ctx.job, ctx.sched, ctx.packager, ctx.memo
    if job.run_tests and job.profile.test and outcome.ok:
        reporter.stage, reporter.test_host = "tests", outcome.plan.test_host
        await run_tests(job, sched, outcome, reporter)
    if packager is not None:
        reporter.stage = "publish"
        with span(reporter, "publish", ""):
            await packager.finish(outcome, memo.tree)
        if outcome.ok:
            memo.remember_release(job, outcome.results)


async def _agree_toolchains(
    gate: toolchain.Gate,
    sched: Scheduler,
    reporter: Reporter,
    *,
    containers: bool,
    limits: Limits,
) -> None:
    """Before building: every planned host's toolchain must match the pin and the others.

    On the host: `go version` there. In containers: each host's session is set up first (its
    build image provided), then the Go in that image and the image's id are compared.
    """

    async def on_host(name: str) -> toolchain.Toolchain:
        env = toolchain.probe_env(sched.the_plan.env.get(name) or {})
        transport = await sched.opener(next(h for h in sched.hosts if h.name == name))
        found = await transport.run(
            toolchain.GO_VERSION_ARGV,
            env=env,
            timeout=limits.command_timeout,
            max_output=limits.helper_output,
        )
        # The host's setup would ask again just before its first build; it takes this answer.
        sched.go_versions[name] = found.stdout.strip() if found.ok else GO_MISSING
        return toolchain.Toolchain(toolchain.parse_go_version(found.stdout))

    async def in_container(name: str) -> toolchain.Toolchain:
        return _session_toolchain(await sched.session(name))

    names = [n for n in sched.the_plan.hosts if n not in sched.excluded]
    for name, why in (await gate.settle(names, in_container if containers else on_host)).items():
        sched.exclude(name, why)
    assert gate.agreement is not None
    for line in gate.agreement.drift:
        reporter.emit(Note(f"toolchain drift allowed: {line}", "warning"))


def _session_toolchain(session: HostSession) -> toolchain.Toolchain:
    """What a set-up host builds with: its Go, and in container mode the image name and id."""
    go = toolchain.parse_go_version(session.toolchain)
    if not session.image:
        return toolchain.Toolchain(go)
    return toolchain.Toolchain(go, f"{session.image_name}@{session.image}")


async def _setup_host(
    job: Job,
    session: HostSession,
    run_id: str,
    boxes: container.Setup | None,
    reporter: Reporter,
    gate: toolchain.Gate,
    shipped: Shipped | None,
    heard: Mapping[str, str],
) -> None:
    """Once per host and run: lock the workdir, sync the tree and git answers, the version.

    `heard` holds what hosts said to `go version` in the toolchain check, by host name.
    """
    workdir = plan.tree_workdir(session.host, job.request())
    name = session.host.name
    if not session.host.local:
        wait = job.limits.lock_wait
        with span(reporter, "lock", name):
            session.lock = await sync.take_lock(session.transport, workdir, run_id, wait)
    with span(reporter, "sync", name), _metered(reporter, name, "", "sync") as progress:
        moved = [0]

        def counted(done: int) -> None:
            moved[0] = done
            progress(done)

        await sync.sync_tree(session.transport, job.source, workdir, counted, limits=job.limits)
        base = moved[0]  # the git answers' bytes count as the same sync
        await sync.ship_git(
            session.transport, shipped, workdir, lambda n: progress(base + n), limits=job.limits
        )
    if boxes is not None:
        from kdist.stages import container

        def note(text: str) -> None:
            reporter.emit(Note(text))

        runner, session.toolchain = await container.prepare(session.transport, workdir, boxes, note)
        session.runner, session.image = runner, runner.image.id
        session.image_name = runner.image.name
    elif name in heard:  # the toolchain check asked this host already, with the same env
        session.toolchain = heard[name]
    else:
        # A `go` that never answers holds no host for ever: past the deadline the host is
        # left out (CommandTimeout, an infrastructure failure) and its slices move.
        version = await session.transport.run(
            toolchain.GO_VERSION_ARGV,
            env=toolchain.probe_env(session.env),
            timeout=job.limits.command_timeout,
            max_output=job.limits.helper_output,
        )
        session.toolchain = version.stdout.strip() if version.ok else GO_MISSING
    gate.admit(session.host.name, _session_toolchain(session))
    if job.profile.layout is Layout.KUBERNETES:
        defs = session.env["KUBE_GIT_VERSION_FILE"]
        await sync.write_remote_file(
            session.transport, defs, version_defs(job.version), limits=job.limits
        )


async def _slice_task(ctx: RunContext, slc: Slice) -> SliceResult:
    """One slice: reused, or built from the queue (off failed hosts), then checked and packed."""
    job, memo = ctx.job, ctx.memo
    log_path = ctx.log_path(slc)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    reused = memo.reuse(job, slc, str(log_path))
    if reused is None:
        log_path.write_text("")
        memo.forget(slc)
    with ctx.open_log(slc):
        if reused is not None:
            result, attempt = await _check(ctx, reused), 1
            if not result.ok:
                memo.forget(slc)
        else:
            result, attempt = await _attempts(ctx, slc)
    return await _finish(ctx, result, start, attempt)


# A host that failed, or that sent something failing verification, is left out; the slice moves.
_MOVES = (Status.INFRA, Status.INTEGRITY)


async def _attempts(ctx: RunContext, slc: Slice) -> tuple[SliceResult, int]:
    """Attempts from the queue, host after host while hosts fail, then the checks; how many."""
    job, sched, reporter = ctx.job, ctx.sched, ctx.reporter
    violations: list[str] = []
    attempt, result = 1, _left_out(ctx, slc)  # a planned host found dead counts as tried
    while True:
        if result is None:
            host = await sched.queue.acquire(slc.platform)
            if host is None:
                result = _no_host(ctx, slc)
                break
            here = sched.slice_on(slc.platform, host)
            result = await hedging.race(
                here, sched, functools.partial(_on_slot, ctx), reporter, attempt, ctx.memo
            )
        if result.status is Status.INTEGRITY:  # the host is left out like a broken one
            violations += result.error.splitlines()  # one line per refused file
        violations += result.violations  # a twin's, caught during a race
        if result.ok or result.status not in _MOVES or attempt >= job.limits.attempts:
            break
        why = result.error.splitlines()[0] if result.error else result.status.value
        sched.exclude(result.slice.host, why)
        reporter.emit(Note(f"{slc.platform}: back in the queue (attempt {attempt + 1}): {why}"))
        await asyncio.sleep(min(job.limits.backoff * 2 ** (attempt - 1), 30.0))
        attempt, result = attempt + 1, None
    result = dataclasses.replace(result, violations=tuple(violations))
    if result.ok:
        result = await _check(ctx, result)
    if result.ok:
        ctx.memo.remember(job, slc, result, sched.toolchain(result.slice.host))
    return result, attempt


async def _on_slot(
    ctx: RunContext, slc: Slice, number: int | str, claim: Callable[[str], bool]
) -> SliceResult:
    """One attempt in a slot the queue granted; the slot is given back however it ends."""
    try:
        result = await _attempt(ctx, slc, number, claim=claim)
    finally:
        ctx.sched.queue.release(slc.platform, slc.host)
    if result.ok and result.record is not None:
        ctx.memo.learn(slc.platform, slc.host, result.record.finished - result.record.started)
    return result


def _left_out(ctx: RunContext, slc: Slice) -> SliceResult | None:
    """The failure of a slice whose planned host was left out before the slice began."""
    why = ctx.sched.excluded.get(slc.host)
    if why is None:
        return None
    error = InfraError(f"{slc.host}: left out of this run: {why}")
    return _failed(slc, "sync", error, 0.0, str(ctx.log_path(slc)))


def _no_host(ctx: RunContext, slc: Slice) -> SliceResult:
    """The result of a slice that no host left may build."""
    excluded = sorted(ctx.sched.excluded.items())
    why = "; ".join(f"{h}: {r.splitlines()[0]}" for h, r in excluded)
    text = f"{slc.platform}: no host left that may build it" + (f" ({why})" if why else "")
    return _failed(slc, "sync", InfraError(text), 0.0, str(ctx.log_path(slc)))


async def _check(ctx: RunContext, result: SliceResult) -> SliceResult:
    """What a built slice must pass before it is packed: a second build (when sampled), smoke."""
    job = ctx.job
    if result.slice.platform in ctx.sampled:

        async def rebuild(slc: Slice, label: str) -> SliceResult:
            return await _attempt(ctx, slc, label, reproduce.scratch(job.output, slc))

        result = await reproduce.rebuild_and_compare(
            result, ctx.sched, ctx.reporter, rebuild, job.limits.attempts, job.output
        )
    if result.ok:
        result = await smoke_slice(job, result, ctx.sched, ctx.reporter)
    return result


async def _finish(ctx: RunContext, result: SliceResult, start: float, attempts: int) -> SliceResult:
    """Pack a verified slice's platform as soon as it arrives; report the slice's end."""
    packager, reporter = ctx.packager, ctx.reporter
    slc = result.slice
    log_path = ctx.log_path(slc)
    if result.ok and packager is not None:
        try:
            reporter.emit(PhaseStarted(slc.key, "package"))
            with span(reporter, "package", "", slc.key):
                await packager.platform(slc.platform)
        except PackageError as exc:
            result = _failed(result.slice, "package", exc, 0.0, str(log_path))
    lines = () if result.ok else tuple(excerpt(log_path))
    result = dataclasses.replace(
        result, duration=time.monotonic() - start, attempts=attempts, excerpt=lines
    )
    reporter.emit(SliceFinished(result))
    return result


async def _attempt(
    ctx: RunContext,
    slc: Slice,
    number: int | str,
    dest: Path | None = None,
    claim: Callable[[str], bool] | None = None,
) -> SliceResult:
    """One attempt of one slice on one host: set up the host, build, pull and verify.

    The binaries land in the output (or `dest`, for a reproducibility rebuild); with twins,
    only the attempt that `claim`s the slice first moves its binaries in.
    """
    job, sched, reporter = ctx.job, ctx.sched, ctx.reporter
    attempt_id = ctx.attempt_id(slc, number)
    log_path = ctx.log_path(slc)
    start = time.monotonic()
    phase = "sync"
    # A straggler and its twin write one log: the twin's lines say so.
    twin = isinstance(number, str) and number.endswith(hedging.TWIN)
    sink = _log_sink(ctx.logs[slc.key], slc, reporter, f"[twin on {slc.host}] " if twin else "")
    sink(f"# kdist: attempt {attempt_id}: {slc.platform} on {slc.host}"
         + (" (cross)" if slc.cross else ""))  # fmt: skip
    try:
        moves = number if isinstance(number, int) else 0  # a rebuild is no move
        reporter.emit(PhaseStarted(slc.key, phase, slc.host, moves))
        session = await sched.session(slc.host)
        if session.gate.locked():  # the host is busy with `capacity` other slices
            reporter.emit(PhaseStarted(slc.key, "queued", slc.host))
        async with session.gate:
            if slc.tree:  # its own copy of the tree: outputs of other slices stay out
                await sync.slot(session.transport, slc.tree, slc.workdir, limits=job.limits)
            phase, started = "build", time.time()
            sched.queue.building(slc.platform, slc.host)
            # Each phase names its host: a straggler and its twin report on one slice.
            reporter.emit(PhaseStarted(slc.key, phase, slc.host))
            with span(reporter, "build", slc.host, slc.key, attempt_id):
                built = await build_slice(
                    session.transport,
                    slc,
                    slc.env or session.env,
                    sink,
                    attempt_id,
                    job.deadlines,
                    session.runner,
                )
            if not built.ok:
                raise _build_error(slc, built.returncode, built.tail(10))
            phase = "pull"
            reporter.emit(PhaseStarted(slc.key, phase, slc.host))
            with (
                span(reporter, "pull", slc.host, slc.key, attempt_id),
                _metered(reporter, slc.host, slc.key, "pull") as progress,
            ):
                artifacts = await collect_slice(
                    session.transport,
                    slc,
                    dest or job.dest(slc.platform),
                    job.expected(slc.platform),
                    job.artifact_root,
                    attempt_id,
                    progress,
                    (lambda: claim(attempt_id)) if claim is not None else None,
                    limits=job.limits,
                )
    except HeadNodeError:
        raise  # the run stops: no build host is to blame
    except KdistError as exc:
        for line in f"{phase} failed: {exc}".splitlines():  # the tail repeats the log
            sink(f"# kdist: {line}")
        return _failed(slc, phase, exc, time.monotonic() - start, str(log_path))
    took = time.monotonic() - start
    record = _record(session, slc, attempt_id, started)
    return SliceResult(
        slc, Status.OK, took, "done", "", str(log_path), artifacts, image=session.image,
        record=record,
    )  # fmt: skip


def _record(session: HostSession, slc: Slice, attempt_id: str, started: float) -> BuildRecord:
    """What the provenance says about one finished attempt."""
    host = session.host
    return BuildRecord(
        attempt=attempt_id,
        host=host.name,
        address=host.address,
        port=host.port,
        host_key=session.transport.host_key,
        toolchain=toolchain.parse_go_version(session.toolchain),
        argv=slc.argv,
        env=dict(slc.env or session.env),
        workdir=slc.workdir,
        cross=slc.cross,
        started=started,
        finished=time.time(),
        image=_session_toolchain(session).image,
    )


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
    elif isinstance(exc, InfraError):
        status = Status.INFRA
    else:
        status = Status.FAILED
    # The boundary where an error (often carrying host output) enters the run's result.
    return SliceResult(slc, status, took, phase, inert(str(exc), newlines=True), log)


@contextlib.contextmanager
def _metered(reporter: Reporter, host: str, key: str, direction: str) -> Iterator[Progress]:
    """A byte counter for one transfer whose counts become Transfer events (the last, final)."""
    moved = [0]

    def progress(done: int) -> None:
        moved[0] = done
        reporter.emit(Transfer(host, key, direction, done))

    try:
        yield progress
    finally:
        reporter.emit(Transfer(host, key, direction, moved[0], finished=True))


def _log_sink(
    log: SliceLog, slc: Slice, reporter: Reporter, prefix: str = ""
) -> Callable[[str], None]:
    def sink(line: str) -> None:
        line = prefix + line
        log.write(line)  # raw: the log is the evidence
        reporter.emit(OutputLine(slc.key, inert(line)))  # the boundary: events carry no controls

    return sink


async def plan_images(job: Job) -> ImagePlan | None:
    """The release's server images with every base image found, or None when none are made.

    Runs before anything connects or builds, so a missing base image costs nothing.
    """
    if job.images is None or not job.package or job.profile.layout is not Layout.KUBERNETES:
        return None
    if job.profile.package:  # the repository's own packaging makes its images
        return None
    specs = image_specs(job.images, job.version.version, job.platforms)
    if not specs:
        return None
    cache = job.output / ".kdist" / "images"
    cache.mkdir(parents=True, exist_ok=True)
    found = await asyncio.to_thread(
        preflight, specs, cache, docker_save=_docker_save, registry_pull=registry.pull
    )
    return ImagePlan(specs, found)


def _docker_save(name: str) -> Iterator[bytes]:
    """`docker save NAME` on the head node; docker is imported only when a base needs it."""
    from kdist.stages import container

    return container.save_image(name)


async def run(
    job: Job, hosts: Sequence[Host], factory: TransportFactory, reporter: Reporter
) -> RunResult:
    """Plan and run a job end to end; connections are closed whatever happens."""
    await asyncio.to_thread(check_output, job.output)  # before any host is used
    started = time.time()
    conns = Connections(factory, reporter)
    try:
        with head_node_faults():  # transports raise no OSError: any that gets here is ours
            image_plan = await plan_images(job)  # a missing base image fails before any build
            prepared = await prepare(job, hosts, conns, reporter)
            return await execute(job, prepared, hosts, conns, reporter, image_plan, started)
    finally:
        with contextlib.suppress(Exception):
            await conns.close()
