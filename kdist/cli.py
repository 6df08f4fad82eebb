"""Command line: parse, build the real edges, run once, and turn errors into exit codes."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdist import __version__, check, pipeline, summary
from kdist.errors import ConfigError, ExitStatus, KdistError
from kdist.events import RunFinished
from kdist.inventory import load_inventory
from kdist.model import LOCAL_HOST, Host, Inventory, Plan, Platform, parse_platform_list
from kdist.pipeline import Job
from kdist.profile import choose_profile
from kdist.report import make_reporter, print_table
from kdist.transport import open_transport

HOSTS_ENV = "KDIST_HOSTS"


def build_parser() -> argparse.ArgumentParser:
    """The kdist argument parser."""
    parser = argparse.ArgumentParser(
        prog="kdist", description="Distributed release builder for Go projects built with make."
    )
    parser.add_argument("--version", action="version", version=f"kdist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _release_parser(sub.add_parser("release", help="build every platform on the farm and pack"))
    _build_parser(sub.add_parser("build", help="build one platform (make all WHAT=...)"))
    hosts = sub.add_parser("hosts", help="inspect the build farm")
    hosts_sub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="SUBCOMMAND")
    check = hosts_sub.add_parser("check", help="verify every host (verify_prereqs)")
    _common(check, source=False)
    return parser


def _common(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    p.add_argument(
        "--hosts",
        type=Path,
        metavar="FILE",
        help=f"inventory YAML (default: ${HOSTS_ENV}, else build on this machine)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    if source:
        p.add_argument("--source", type=Path, default=Path(), metavar="DIR")
        p.add_argument("--profile", type=Path, metavar="FILE")
        p.add_argument("-n", "--dry-run", action="store_true", help="print the plan, run nothing")
        p.add_argument(
            "--native-only",
            action="store_true",
            help="fail instead of cross-compiling a platform without a native host",
        )
        p.add_argument("--slice-timeout", type=float, metavar="SECONDS")


def _release_parser(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--platforms", metavar="LIST", help="comma separated os/arch list")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: SOURCE/_output")
    p.add_argument("--host", metavar="NAME", help="build every platform on this host")


def _build_parser(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--platform", required=True, metavar="OS/ARCH")
    p.add_argument("--host", metavar="NAME", help="inventory host (default: this machine)")
    p.add_argument("what", nargs="*", metavar="WHAT", help="targets, e.g. cmd/kubectl")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(asyncio.run(program(args)))
    except KdistError as exc:
        print(f"kdist: error: {exc}", file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("kdist: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"kdist: internal error: {exc!r} (run with --debug for a traceback)", file=sys.stderr)
        return int(ExitStatus.INTERNAL_ERROR)


async def program(args: argparse.Namespace) -> ExitStatus:
    """The main program without error handling."""
    if args.command == "hosts":
        return await hosts_check(load_hosts(args.hosts), args)
    job, hosts = make_job(args)
    return await run_job(job, hosts, args)


def _factory(args: argparse.Namespace) -> pipeline.TransportFactory:
    return lambda host: open_transport(host, args.connect_timeout)


async def run_job(job: Job, hosts: Sequence[Host], args: argparse.Namespace) -> ExitStatus:
    """Run (or with --dry-run, only plan) a release or build job and report it."""
    reporter = make_reporter(json_mode=args.json, quiet=args.quiet)
    try:
        if args.dry_run:
            conns = pipeline.Connections(_factory(args))
            try:
                the_plan = await pipeline.prepare(job, hosts, conns, reporter, connect=False)
            finally:
                await conns.close()
            return _show_plan(job, hosts, the_plan, args)
        result = await pipeline.run(job, hosts, _factory(args), reporter)
        doc = summary.run_summary(job, result)
        reporter.emit(RunFinished(result.ok, doc))
    finally:
        reporter.close()
    if args.json:
        print_json(doc)
    return summary.exit_status(result)


def _show_plan(
    job: Job, hosts: Sequence[Host], the_plan: Plan, args: argparse.Namespace
) -> ExitStatus:
    doc = summary.plan_summary(job, hosts, the_plan)
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
        print(f"\n{host['name']}: sync  {host['sync']}")
        print(f"{host['name']}: env   {host['env']}")
    for note in the_plan.notes:
        print(f"note: {note}")
    return ExitStatus.OK


async def hosts_check(inventory: Inventory, args: argparse.Namespace) -> ExitStatus:
    """Probe every host in parallel and print a table; non-zero when any host is unusable."""
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


def load_hosts(path: Path | None) -> Inventory:
    """The inventory from --hosts or $KDIST_HOSTS; the head node alone when neither is set."""
    path = path or (Path(os.environ[HOSTS_ENV]) if os.environ.get(HOSTS_ENV) else None)
    if path is None:
        return Inventory(hosts=(LOCAL_HOST,))
    return load_inventory(path)


def make_job(args: argparse.Namespace) -> tuple[Job, tuple[Host, ...]]:
    """Turn parsed options into a validated Job and the hosts it may use."""
    from kdist.version import compute_version

    source = args.source.resolve()
    if not source.is_dir():
        msg = f"--source {args.source}: not a directory"
        raise ConfigError(msg)
    profile = choose_profile(source, args.profile)
    inventory = load_hosts(args.hosts)
    if args.host and not inventory.host(args.host):
        names = ", ".join(h.name for h in inventory.hosts)
        msg = f"--host {args.host}: not in {inventory.source} (hosts: {names})"
        raise ConfigError(msg)
    release = args.command == "release"
    platforms = _platforms(args, profile.platforms)
    output = (args.output or source / "_output").resolve() if release else source / "_output"
    job = Job(
        source=source,
        output=output,
        profile=profile,
        platforms=platforms,
        version=compute_version(source, epoch=_source_date_epoch()),
        tree_id=tree_id(source),
        pin=args.host,
        native_only=args.native_only,
        what=tuple(getattr(args, "what", ())),
        package=release,
        in_tree=not release,
        slice_timeout=args.slice_timeout,
    )
    return job, inventory.hosts


def _platforms(args: argparse.Namespace, default: tuple[Platform, ...]) -> tuple[Platform, ...]:
    text = args.platforms if args.command == "release" else args.platform
    if text is None:
        return default
    try:
        platforms = parse_platform_list(text)
    except ValueError as exc:
        flag = "--platforms" if args.command == "release" else "--platform"
        msg = f"{flag}: {exc}"
        raise ConfigError(msg) from exc
    if args.command == "build" and len(platforms) != 1:
        msg = "--platform: give exactly one os/arch"
        raise ConfigError(msg)
    return platforms


def _source_date_epoch() -> int | None:
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return None
    if not text.isdigit():
        msg = f"SOURCE_DATE_EPOCH={text!r}: must be a whole number of seconds"
        raise ConfigError(msg)
    return int(text)


def tree_id(source: Path) -> str:
    """Names this checkout's workdir on every host: two checkouts never share one."""
    digest = hashlib.sha256(f"{socket.gethostname()}:{source}".encode()).hexdigest()[:12]
    return f"{source.name or 'root'}-{digest}"


def print_json(doc: dict[str, Any]) -> None:
    """Print one JSON document to stdout."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
