"""What each command does: options → Job → pipeline → report. Called by cli.main.program only."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kdist.cli import documents
from kdist.cli.options import (
    BuildOptions,
    CleanOptions,
    Display,
    Farm,
    HostsCheckOptions,
    HostsListOptions,
    PackageOptions,
    ReleaseOptions,
    VerifyOptions,
)
from kdist.cli.report import make_reporter, print_table
from kdist.config.inventory import HOSTS_ENV, load_inventory, missing_known_hosts
from kdist.config.limit import limit_hosts
from kdist.config.profile import build_template, choose_profile, container_spec
from kdist.config.version import compute_version, version_warnings
from kdist.engine import check, journal, pipeline, toolchain
from kdist.engine.job import Job, RunResult
from kdist.engine.preflight import Checks, make_needs, writable_folder
from kdist.engine.prepare import Connections, TransportFactory, prepare
from kdist.engine.timeline import TimelineRecorder
from kdist.engine.treedigest import TREE_CACHE, tree_digest
from kdist.errors import ConfigError, ExitStatus, KdistError, head_node_faults
from kdist.events import Reporter, RunFinished
from kdist.model import (
    LOCAL_HOST,
    ContainerSpec,
    DaemonReport,
    Host,
    Inventory,
    Layout,
    Limits,
    Plan,
    Platform,
    Profile,
)
from kdist.packaging import signing
from kdist.packaging.images import RELEASE_IMAGES, ImageSettings, describe
from kdist.packaging.tarballs import expected_tarballs
from kdist.packaging.verify import verify_release
from kdist.remote.argv import remove, remove_tree, to_shell
from kdist.stages import publish
from kdist.text import inert
from kdist.transport import (
    SshOptions,
    Transport,
    open_transport,
    raise_fd_limit,
    resolve_hosts,
    ssh_config_files,
)


def load_hosts(farm: Farm, *, connecting: bool = True) -> Inventory:
    """The hosts of --hosts or $KDIST_HOSTS (else the head node alone), --limit applied.

    Each host is resolved through ssh_config as `ssh -G` would; before a command connects,
    every known_hosts file the hosts need must exist (unless --accept-new-host-keys).
    """
    path = farm.hosts or (Path(os.environ[HOSTS_ENV]) if os.environ.get(HOSTS_ENV) else None)
    inventory = load_inventory(path) if path else Inventory(hosts=(LOCAL_HOST,))
    hosts = limit_hosts(inventory.hosts, farm.limit) if farm.limit else inventory.hosts
    if any(not host.local for host in hosts):
        hosts = resolve_hosts(hosts, ssh_config_files(farm.ssh_config))
    inventory = replace(inventory, hosts=hosts)
    if connecting and not farm.accept_new_host_keys:
        problems = missing_known_hosts(inventory)
        if problems:
            raise ConfigError("\n".join(problems))
    return inventory


def tree_id(source: Path) -> str:
    """Names this checkout's workdir on every host: two checkouts never share one."""
    digest = hashlib.sha256(f"{socket.gethostname()}:{source}".encode()).hexdigest()[:12]
    return f"{source.name or 'root'}-{digest}"


def _source_date_epoch() -> int | None:
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return None
    if not text.isdigit():
        msg = f"SOURCE_DATE_EPOCH={text!r}: must be a whole number of seconds"
        raise ConfigError(msg)
    return int(text)


def make_job(opts: ReleaseOptions | BuildOptions) -> tuple[Job, tuple[Host, ...]]:
    """Turn a release's or a build's options into a Job and its hosts, after preflight.

    Everything that can be checked before a connection is checked, and every problem is
    reported at once (PreflightError, exit 2); nothing is written before that.
    """
    run = opts.run
    source = run.tree.source
    checks = Checks()
    profile = checks.run(lambda: choose_profile(source, run.tree.profile))
    inventory = checks.run(lambda: load_hosts(run.farm, connecting=False))
    if inventory is not None:
        if not run.farm.accept_new_host_keys:
            checks.add(missing_known_hosts(inventory))
        if run.host and not inventory.host(run.host):
            names = ", ".join(h.name for h in inventory.hosts)
            checks.add([f"--host {run.host}: not in {inventory.source} (hosts: {names})"])
    epoch = checks.run(_source_date_epoch)
    version = checks.run(lambda: compute_version(source, epoch=epoch))
    what = opts.what if isinstance(opts, BuildOptions) else ()
    if profile is not None:
        checks.run(lambda: build_template(profile, what))  # no subset without build_what
        checks.add(make_needs(source, profile, _commands(opts, what)))
    output = opts.output.resolve() if isinstance(opts, ReleaseOptions) and opts.output else None
    checks.add(writable_folder(output or source / "_output", "--output" if output else "output"))
    if run.timeline is not None:
        checks.add(writable_folder(run.timeline.resolve().parent, "--timeline", create=False))
    sign_key = (
        checks.run(lambda: _sign_key(opts.sign_key)) if isinstance(opts, ReleaseOptions) else None
    )
    checks.done()
    assert profile is not None and inventory is not None and version is not None
    job = Job(
        source=source,
        output=output or source / "_output",
        profile=profile,
        platforms=(opts.platform,) if isinstance(opts, BuildOptions) and opts.platform else (),
        version=version,
        tree_id=tree_id(source),
        pin=run.host,
        native_only=run.native_only,
        limits=replace(
            run.limits, log_limit=run.log_limit or profile.log_limit or run.limits.log_limit
        ),
        hedge=run.hedge,
        container=container_spec(profile, source, os.environ, run.container),
        go_pin=toolchain.read_pin(source),
        allow_toolchain_drift=run.allow_toolchain_drift,
        compress=run.farm.compress,
    )
    if isinstance(opts, BuildOptions):
        # `kdist build` without --platform builds for the building host's own platform.
        return replace(job, what=opts.what, package=False, in_tree=True), inventory.hosts
    release = replace(
        job,
        platforms=opts.platforms or profile.platforms,
        run_tests=opts.tests,
        reuse=opts.reuse,
        reproduce=opts.verify_reproducible,
        sign_key=sign_key,
        images=_image_settings(profile, opts.images),
    )
    return release, inventory.hosts


def _commands(opts: ReleaseOptions | BuildOptions, what: tuple[str, ...]) -> list[str]:
    """The profile keys whose commands this run will run."""
    keys = ["build_what" if what else "build"]
    if isinstance(opts, ReleaseOptions):
        keys += ["test"] if opts.tests else []
        keys += ["package"]
    return keys


def _image_settings(profile: Profile, wanted: bool) -> ImageSettings | None:
    """Image settings from the environment and the profile, for a Kubernetes release."""
    if not wanted or profile.layout is not Layout.KUBERNETES:
        return None
    return ImageSettings.load(os.environ, profile.images)


def farm_transports(farm: Farm) -> TransportFactory:
    """The real transports (SSH, or local for the head node) with the farm's options."""
    raise_fd_limit()  # a descriptor per connected host: hundreds of hosts need more than 1024
    options = SshOptions(
        connect_timeout=farm.connect_timeout,
        accept_new_host_keys=farm.accept_new_host_keys,
        compress=farm.compress,
        ssh_config=ssh_config_files(farm.ssh_config),
        on_new_key=lambda text: print(f"kdist: {text}", file=sys.stderr),
    )

    def factory(host: Host) -> Transport:
        return open_transport(host, options)

    return factory


def _sign_key(key: Path | None) -> Path | None:
    """The --sign-key, tried once now so an unusable key fails before anything is built."""
    if key is None:
        return None
    path = key.expanduser().resolve()
    signing.check_key(path)
    return path


def print_json(doc: dict[str, Any]) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(documents.dumps(doc) + "\n")


async def build_or_release(
    opts: ReleaseOptions | BuildOptions, display: Display, factory: TransportFactory
) -> ExitStatus:
    """`release`, `quick-release` and `build`: plan, run, report (or with -n, only plan)."""
    started = time.time()
    job, hosts = make_job(opts)
    reporter = make_reporter(json_mode=display.json, quiet=display.quiet)
    try:
        if opts.run.dry_run:
            conns = Connections(factory)
            try:
                the_plan = (await prepare(job, hosts, conns, reporter)).plan
            finally:
                await conns.close()
            return _show_plan(job, hosts, the_plan, display, started)
        result = await _run(job, hosts, factory, reporter, opts.run.timeline)
        doc = documents.run_summary(job, result)
        if opts.run.timeline is not None:
            doc["timeline"] = str(opts.run.timeline.resolve())
        doc["document"] = str(_write_document(job.output, doc))
        reporter.emit(RunFinished(result.ok, doc))
    finally:
        reporter.close()
    if display.json:
        print_json(doc)
    return documents.exit_status(result)


async def _run(
    job: Job,
    hosts: Sequence[Host],
    factory: TransportFactory,
    reporter: Reporter,
    timeline: Path | None,
) -> RunResult:
    """The pipeline, and with --timeline the trace of its phases (even of a failed run)."""
    if timeline is None:
        return await pipeline.run(job, hosts, factory, reporter)
    recorder = TimelineRecorder(reporter)
    try:
        return await pipeline.run(job, hosts, factory, recorder)
    finally:
        recorder.write(timeline)


def _write_document(output: Path, doc: dict[str, Any]) -> Path:
    """OUTPUT/logs/run.json: the run's document, whether or not --json printed it."""
    path = output / documents.LOGS / documents.RUN_DOCUMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(documents.dumps({**doc, "document": str(path)}) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def critical_line(the_plan: Plan) -> str:
    """`h1: linux-s390x 0-40s` and so on for each slice of the slot that finishes last."""
    by_key = {s.key: s for s in the_plan.slices}
    steps = []
    for key in the_plan.critical:
        start, end = the_plan.expected[key]
        steps.append(f"{by_key[key].platform} on {by_key[key].host} {start:.0f}-{end:.0f}s")
    return " -> ".join(steps) or "none"


def _show_plan(
    job: Job, hosts: Sequence[Host], the_plan: Plan, display: Display, started: float
) -> ExitStatus:
    doc = documents.plan_summary(job, hosts, the_plan, started, time.time())
    if display.json:
        print_json(doc)
        return ExitStatus.OK
    rows = [
        [
            s["platform"],
            s["host"] + (" (cross)" if s["cross"] else ""),
            f"{s['expected_start']:.0f}s",
            f"{s['expected_end']:.0f}s",
            s.get("container_command", s["command"]),
        ]
        for s in doc["slices"]
    ]
    print_table(
        f"kdist plan: {job.profile.name} {job.version.version} (dry run)",
        ["platform", "host", "start", "end", "command on the host"],
        rows,
    )
    print(f"\nexpected: {doc['expected_seconds']:.0f}s; critical path: {critical_line(the_plan)}")
    for host in doc["hosts"]:
        print(f"\n{host['name']}: workdir {host['workdir']}")
        print(f"{host['name']}: sync    {host['sync']}")
        print(f"{host['name']}: env     {host['env']}")
        print(f"{host['name']}: git     {host['git']}")
    print()
    for s in doc["slices"]:  # the host's env with the slice's platform_env
        print(f"{s['platform']} on {s['host']}: env {s['env']}")
        if s["tree"]:
            print(f"{s['platform']} on {s['host']}: builds in {s['workdir']} (hard links)")
    for line in doc["after"]:
        print(f"then: {line}")
    for image in doc["images"]:
        print(f"image: {image['tags'][0]} on {image['base']} ({image['base_from']})")
    for warning in version_warnings(job.version):
        print(f"warning: {warning}")
    for note in the_plan.notes:
        print(f"note: {note}")
    return ExitStatus.OK


def hosts_list(opts: HostsListOptions, display: Display) -> ExitStatus:
    """`kdist hosts list`: the hosts as kdist will reach them, without connecting."""
    started = time.time()
    inventory = load_hosts(opts.farm, connecting=False)
    if display.json:
        head = documents.envelope("hosts", started, time.time(), ExitStatus.OK)
        print_json({**head, **documents.hosts_document(inventory)})
        return ExitStatus.OK
    print_table(
        f"kdist hosts list: {inventory.source}",
        documents.HOST_COLUMNS,
        [documents.host_row(host) for host in inventory.hosts],
    )
    return ExitStatus.OK


async def hosts_check(
    opts: HostsCheckOptions, display: Display, factory: TransportFactory
) -> ExitStatus:
    """Probe every host in parallel and print a table; non-zero when any host is unusable."""
    started = time.time()
    inventory = load_hosts(opts.farm)
    spec = _check_container(opts)
    docker: check.DaemonCheck | None = None
    if spec is not None:
        from kdist.stages import container

        async def docker(transport: Transport) -> DaemonReport:
            assert spec is not None
            return await container.check(transport, spec)

    reports = await check.check_all(inventory.hosts, factory, docker)
    status = ExitStatus.OK if all(r.ok for r in reports) else ExitStatus.INFRA_FAILED
    if display.json:
        head = documents.envelope("hosts-check", started, time.time(), status)
        print_json({**head, "hosts": [r.as_dict() for r in reports]})
    else:
        print_table(
            f"kdist hosts check: {inventory.source}",
            check.COLUMNS + (check.DOCKER_COLUMNS if spec else ()),
            [r.row() for r in reports],
            ok=all(r.ok for r in reports),
        )
    return status


def _check_container(opts: HostsCheckOptions) -> ContainerSpec | None:
    """The build container `hosts check` looks at: --container, or the profile's own."""
    if opts.container is False:
        return None
    source = opts.tree.source
    try:
        profile = choose_profile(source, opts.tree.profile)
    except ConfigError:
        if opts.container:
            raise
        return None  # no project here: check the hosts for native builds only
    return container_spec(profile, source, os.environ, opts.container)


async def clean(opts: CleanOptions, display: Display, factory: TransportFactory) -> ExitStatus:
    """`kdist clean [--remote]`: remove SOURCE/_output, and this tree's workdir on every host."""
    started = time.time()
    source = opts.tree.source
    output = source / "_output"
    hosts = [h for h in load_hosts(opts.farm).hosts if not h.local] if opts.remote else []
    workdirs = {h.name: f"{h.workdir}/{tree_id(source)}" for h in hosts}
    tree, project = tree_id(source), _project(source, opts.tree.profile)
    if opts.dry_run:
        lines = [f"local: {to_shell(remove(str(output)))}"]
        lines += [f"{n}: {to_shell(remove_tree(w))}" for n, w in workdirs.items()]
        print("\n".join(lines))
        return ExitStatus.OK
    _remove_local_tree(output)
    results = await asyncio.gather(
        *(_clean_host(factory(h), workdirs[h.name], tree, project) for h in hosts)
    )
    failed = {name: err for name, err in results if err}
    status = ExitStatus.INFRA_FAILED if failed else ExitStatus.OK
    doc = {**documents.envelope("clean", started, time.time(), status),
           "removed": [str(output)], "hosts": [{"host": n, "workdir": workdirs[n],
           "error": failed.get(n, "")} for n, _ in results]}  # fmt: skip
    if display.json:
        print_json(doc)
    else:
        print(f"removed {output}")
        for name, error in results:
            said = "removed " + workdirs[name] if not error else "FAILED: " + inert(error)
            print(f"{name}: {said}")
    return status


def _project(source: Path, profile_file: Path | None) -> str:
    """The project's name (it names the cache volumes); '' when there is no profile."""
    try:
        return choose_profile(source, profile_file).name
    except ConfigError:
        return ""


def _remove_local_tree(path: Path) -> None:
    # Go's module cache is read-only; make it writable first, as build/make-clean.sh does.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


async def _clean_host(
    transport: Transport, workdir: str, tree: str, project: str
) -> tuple[str, str]:
    name = transport.host.name
    try:
        await transport.connect()
        result = await transport.run(remove_tree(workdir), timeout=Limits.transfer_timeout)
        if not result.ok:
            return name, result.tail(3)
        from kdist.stages import container  # build containers and cache volumes, if any

        await container.clean(transport, tree, project)
        return name, ""
    except KdistError as exc:
        return name, str(exc)
    finally:
        await transport.close()


async def package_only(opts: PackageOptions, display: Display) -> ExitStatus:
    """`kdist package`: pack the binaries already in the output, like `make package-tarballs`."""
    started = time.time()
    source = opts.tree.source
    profile = choose_profile(source, opts.tree.profile)
    output = opts.output.resolve() if opts.output else source / "_output"
    job = Job(source=source, output=output, profile=profile, platforms=(),
              version=compute_version(source, epoch=_source_date_epoch()), tree_id="",
              sign_key=_sign_key(opts.sign_key))  # fmt: skip
    platforms = _packable(job, opts.platforms)
    job = replace(job, platforms=platforms, images=_image_settings(profile, True))
    if opts.dry_run:
        names = expected_tarballs(publish.package_spec(job, platforms))
        print(f"would pack {', '.join(map(str, platforms))} from {job.binaries}:")
        print("\n".join(f"  {output / publish.RELEASE_DIR / n}" for n in names))
        for image in documents.planned_images(job):
            print(f"  image {image['tags'][0]} on {image['base']} ({image['base_from']})")
        return ExitStatus.OK
    image_plan = await pipeline.plan_images(job)
    results = await asyncio.to_thread(journal.recorded_results, job, platforms)
    tree = await asyncio.to_thread(tree_digest, source, output / TREE_CACHE)
    facts = publish.evidence_of(job, results, tree)
    with head_node_faults():
        tarballs, built = await asyncio.to_thread(
            publish.package_now, job, platforms, facts, image_plan
        )
    if display.json:
        images = [describe(b, output / RELEASE_IMAGES) for b in built]
        tars = [{"name": n, "sha256": d} for n, d in tarballs]
        head = documents.envelope("package", started, time.time(), ExitStatus.OK)
        print_json({**head, "ok": True, "tarballs": tars, "images": images})
    else:
        for name, digest in tarballs:
            print(f"{digest[:12]}  {output / publish.RELEASE_DIR / name}")
    return ExitStatus.OK


def _packable(job: Job, wanted: tuple[Platform, ...]) -> tuple[Platform, ...]:
    found: list[Platform] = []
    for folder in sorted(job.binaries.glob("*/*")):
        try:
            found.append(Platform.parse(f"{folder.parent.name}/{folder.name}"))
        except ValueError:
            continue
    if wanted:
        missing = [str(p) for p in wanted if p not in found]
        if missing:
            msg = f"no binaries for {', '.join(missing)} in {job.binaries}"
            raise ConfigError(msg)
        return wanted
    if not found:
        msg = f"no binaries in {job.binaries}/<os>/<arch>; build first"
        raise ConfigError(msg)
    return tuple(found)


async def verify(opts: VerifyOptions, display: Display) -> ExitStatus:
    """`kdist verify DIR`: checksums, signatures and provenance subjects; exit 4 on any failure."""
    folder = opts.folder.resolve()
    if not folder.is_dir():
        msg = f"{opts.folder}: not a folder"
        raise ConfigError(msg)
    signers = opts.allowed_signers.resolve() if opts.allowed_signers else None
    if signers is not None and not signers.is_file():
        msg = f"--allowed-signers {opts.allowed_signers}: no such file"
        raise ConfigError(msg)
    started = time.time()
    report = await asyncio.to_thread(verify_release, folder, signers)
    if display.json:
        print_json(documents.verify_summary(report, started, time.time()))
    elif not display.quiet or not report.ok:
        for finding in report.failures if display.quiet else report.findings:
            said = inert(f"{finding.file}: {finding.message}")  # names in a downloaded release
            print(f"{'ok  ' if finding.ok else 'FAIL'}  {said}")
        verdict = "verified" if report.ok else f"{len(report.failures)} check(s) FAILED"
        print(f"{report.folder}: {verdict}")
    return ExitStatus.OK if report.ok else ExitStatus.INTEGRITY_ERROR
