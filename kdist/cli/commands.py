"""What each command does: options → Job → pipeline → report. Called by cli.main.program only."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import platform as pyplatform
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdist.cli import documents
from kdist.cli.report import make_reporter, print_table
from kdist.config.inventory import HOSTS_ENV, load_inventory
from kdist.config.profile import choose_profile
from kdist.config.version import compute_version
from kdist.engine import check, pipeline
from kdist.engine.job import Job
from kdist.engine.prepare import Connections, TransportFactory, prepare
from kdist.errors import ConfigError, ExitStatus, KdistError
from kdist.events import RunFinished
from kdist.model import (
    LOCAL_HOST,
    UNAME_TO_GOARCH,
    Host,
    Inventory,
    Layout,
    Plan,
    Platform,
    Profile,
    parse_platform_list,
)
from kdist.packaging.images import RELEASE_IMAGES, ImageSettings, describe
from kdist.packaging.tarballs import expected_tarballs
from kdist.remote.argv import remove, remove_tree, to_shell
from kdist.stages import publish
from kdist.transport import open_transport


def load_hosts(path: Path | None) -> Inventory:
    """The inventory from --hosts or $KDIST_HOSTS; the head node alone when neither is set."""
    path = path or (Path(os.environ[HOSTS_ENV]) if os.environ.get(HOSTS_ENV) else None)
    if path is None:
        return Inventory(hosts=(LOCAL_HOST,))
    return load_inventory(path)


def head_platform() -> Platform:
    """linux/<this machine's arch>: what quick-release builds (upstream's KUBE_FASTBUILD)."""
    arch = UNAME_TO_GOARCH.get(pyplatform.machine().lower(), "amd64")
    return Platform("darwin" if sys.platform == "darwin" else "linux", arch)


def _source(args: argparse.Namespace) -> Path:
    source = Path(args.source).resolve()
    if not source.is_dir():
        msg = f"--source {args.source}: not a directory"
        raise ConfigError(msg)
    return source


def _parse_platforms(text: str, flag: str) -> tuple[Platform, ...]:
    try:
        return parse_platform_list(text)
    except ValueError as exc:
        msg = f"{flag}: {exc}"
        raise ConfigError(msg) from exc


def _platforms(args: argparse.Namespace, default: tuple[Platform, ...]) -> tuple[Platform, ...]:
    if args.command == "build":
        if args.platform is None:
            return ()  # the pinned (or local) host's own platform, found when planning
        chosen = _parse_platforms(args.platform, "--platform")
        if len(chosen) != 1:
            msg = "--platform: give exactly one os/arch"
            raise ConfigError(msg)
        return chosen
    if args.platforms:
        return _parse_platforms(args.platforms, "--platforms")
    return (head_platform(),) if args.quick else default


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


def make_job(args: argparse.Namespace) -> tuple[Job, tuple[Host, ...]]:
    """Turn parsed options into a validated Job and the hosts it may use."""
    source = _source(args)
    profile = choose_profile(source, args.profile)
    inventory = load_hosts(getattr(args, "hosts", None))
    pin = getattr(args, "host", None)
    if pin and not inventory.host(pin):
        names = ", ".join(h.name for h in inventory.hosts)
        msg = f"--host {pin}: not in {inventory.source} (hosts: {names})"
        raise ConfigError(msg)
    release = args.command in ("release", "quick-release")
    output = getattr(args, "output", None)
    job = Job(
        source=source,
        output=Path(output).resolve() if output else source / "_output",
        profile=profile,
        platforms=_platforms(args, profile.platforms),
        version=compute_version(source, epoch=_source_date_epoch()),
        tree_id=tree_id(source),
        pin=pin,
        native_only=getattr(args, "native_only", False),
        what=tuple(getattr(args, "what", ())),
        package=release,
        in_tree=not release,
        run_tests=release and not args.skip_tests,
        reuse=not getattr(args, "rebuild", False),
        images=_image_settings(profile, release and getattr(args, "images", None) is not False),
        attempts=max(1, getattr(args, "attempts", 3)),
        slice_timeout=getattr(args, "slice_timeout", None),
        idle_timeout=getattr(args, "idle_timeout", 900.0),
        lock_wait=getattr(args, "lock_wait", 30.0),
    )
    return job, inventory.hosts


def _image_settings(profile: Profile, wanted: bool) -> ImageSettings | None:
    """Image settings from the environment and the profile, for a Kubernetes release."""
    if not wanted or profile.layout is not Layout.KUBERNETES:
        return None
    return ImageSettings.load(os.environ, profile.images)


def _factory(args: argparse.Namespace) -> TransportFactory:
    accept = getattr(args, "accept_new_host_keys", False)
    return lambda host: open_transport(host, args.connect_timeout, accept_new_host_keys=accept)


def print_json(doc: dict[str, Any]) -> None:
    """Print one JSON document to stdout."""
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


async def build_or_release(args: argparse.Namespace) -> ExitStatus:
    """`release`, `quick-release` and `build`: plan, run, report (or with -n, only plan)."""
    job, hosts = make_job(args)
    reporter = make_reporter(json_mode=args.json, quiet=args.quiet)
    try:
        if args.dry_run:
            conns = Connections(_factory(args))
            try:
                the_plan = (await prepare(job, hosts, conns, reporter)).plan
            finally:
                await conns.close()
            return _show_plan(job, hosts, the_plan, args)
        result = await pipeline.run(job, hosts, _factory(args), reporter)
        doc = documents.run_summary(job, result)
        reporter.emit(RunFinished(result.ok, doc))
    finally:
        reporter.close()
    if args.json:
        print_json(doc)
    return documents.exit_status(result)


def _show_plan(
    job: Job, hosts: Sequence[Host], the_plan: Plan, args: argparse.Namespace
) -> ExitStatus:
    doc = documents.plan_summary(job, hosts, the_plan)
    if args.json:
        print_json(doc)
        return ExitStatus.OK
    rows = [
        [s["platform"], s["host"] + (" (cross)" if s["cross"] else ""), s["command"]]
        for s in doc["slices"]
    ]
    print_table(
        f"kdist plan: {job.profile.name} {job.version.version} (dry run)",
        ["platform", "host", "command on the host"],
        rows,
    )
    for host in doc["hosts"]:
        print(f"\n{host['name']}: workdir {host['workdir']}")
        print(f"{host['name']}: sync    {host['sync']}")
        print(f"{host['name']}: env     {host['env']}")
    for line in doc["after"]:
        print(f"then: {line}")
    for image in doc["images"]:
        print(f"image: {image['tags'][0]} on {image['base']} ({image['base_from']})")
    for note in the_plan.notes:
        print(f"note: {note}")
    return ExitStatus.OK


async def hosts_check(args: argparse.Namespace) -> ExitStatus:
    """Probe every host in parallel and print a table; non-zero when any host is unusable."""
    inventory = load_hosts(args.hosts)
    reports = await check.check_all(inventory.hosts, _factory(args))
    if args.json:
        print_json({"hosts": [r.as_dict() for r in reports]})
    else:
        print_table(
            f"kdist hosts check: {inventory.source}",
            check.COLUMNS,
            [r.row() for r in reports],
            ok=all(r.ok for r in reports),
        )
    return ExitStatus.OK if all(r.ok for r in reports) else ExitStatus.INFRA_FAILED


async def clean(args: argparse.Namespace) -> ExitStatus:
    """`kdist clean [--remote]`: remove SOURCE/_output, and this tree's workdir on every host."""
    source = _source(args)
    output = source / "_output"
    hosts = [h for h in load_hosts(args.hosts).hosts if not h.local] if args.remote else []
    workdirs = {h.name: f"{h.workdir}/{tree_id(source)}" for h in hosts}
    if args.dry_run:
        lines = [f"local: {to_shell(remove(str(output)))}"]
        lines += [f"{n}: {to_shell(remove_tree(w))}" for n, w in workdirs.items()]
        print("\n".join(lines))
        return ExitStatus.OK
    _remove_local_tree(output)
    results = await asyncio.gather(*(_clean_host(h, workdirs[h.name], args) for h in hosts))
    failed = {name: err for name, err in results if err}
    doc = {"removed": [str(output)], "hosts": [{"host": n, "workdir": workdirs[n],
           "error": failed.get(n, "")} for n, _ in results]}  # fmt: skip
    if args.json:
        print_json(doc)
    else:
        print(f"removed {output}")
        for name, error in results:
            print(f"{name}: {'removed ' + workdirs[name] if not error else 'FAILED: ' + error}")
    return ExitStatus.INFRA_FAILED if failed else ExitStatus.OK


def _remove_local_tree(path: Path) -> None:
    # Go's module cache is read-only; make it writable first, as build/make-clean.sh does.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            (Path(root) / name).chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


async def _clean_host(host: Host, workdir: str, args: argparse.Namespace) -> tuple[str, str]:
    transport = _factory(args)(host)
    try:
        await transport.connect()
        result = await transport.run(remove_tree(workdir))
        return host.name, "" if result.ok else result.tail(3)
    except KdistError as exc:
        return host.name, str(exc)
    finally:
        await transport.close()


async def package_only(args: argparse.Namespace) -> ExitStatus:
    """`kdist package`: pack the binaries already in the output, like `make package-tarballs`."""
    source = _source(args)
    profile = choose_profile(source, args.profile)
    output = Path(args.output).resolve() if args.output else source / "_output"
    job = Job(source=source, output=output, profile=profile, platforms=(),
              version=compute_version(source, epoch=_source_date_epoch()), tree_id="")  # fmt: skip
    platforms = _packable(job, args.platforms)
    job = dataclasses.replace(job, platforms=platforms, images=_image_settings(profile, True))
    if args.dry_run:
        names = expected_tarballs(publish.package_spec(job, platforms))
        print(f"would pack {', '.join(map(str, platforms))} from {job.binaries}:")
        print("\n".join(f"  {output / publish.RELEASE_DIR / n}" for n in names))
        for image in documents.planned_images(job):
            print(f"  image {image['tags'][0]} on {image['base']} ({image['base_from']})")
        return ExitStatus.OK
    image_plan = await pipeline.plan_images(job)
    tarballs, built = await asyncio.to_thread(publish.package_now, job, platforms, image_plan)
    if args.json:
        images = [describe(b, output / RELEASE_IMAGES) for b in built]
        tars = [{"name": n, "sha256": d} for n, d in tarballs]
        print_json({"ok": True, "tarballs": tars, "images": images})
    else:
        for name, digest in tarballs:
            print(f"{digest[:12]}  {output / publish.RELEASE_DIR / name}")
    return ExitStatus.OK


def _packable(job: Job, wanted: str | None) -> tuple[Platform, ...]:
    found: list[Platform] = []
    for folder in sorted(job.binaries.glob("*/*")):
        try:
            found.append(Platform.parse(f"{folder.parent.name}/{folder.name}"))
        except ValueError:
            continue
    if wanted:
        chosen = _parse_platforms(wanted, "--platforms")
        missing = [str(p) for p in chosen if p not in found]
        if missing:
            msg = f"no binaries for {', '.join(missing)} in {job.binaries}"
            raise ConfigError(msg)
        return chosen
    if not found:
        msg = f"no binaries in {job.binaries}/<os>/<arch>; build first"
        raise ConfigError(msg)
    return tuple(found)
