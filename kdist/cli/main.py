"""Command line: parse, dispatch, and the one place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from kdist import __version__
from kdist.config.inventory import HOSTS_ENV
from kdist.errors import ExitStatus, KdistError


def build_parser() -> argparse.ArgumentParser:
    """The kdist argument parser."""
    parser = argparse.ArgumentParser(
        prog="kdist", description="Distributed release builder for Go projects built with make."
    )
    parser.add_argument("--version", action="version", version=f"kdist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    release = sub.add_parser("release", help="build every platform on the farm, test and pack")
    _release_options(release, quick=False)
    quick = sub.add_parser(
        "quick-release", help="no tests, linux/<this arch> only (KUBE_FASTBUILD)"
    )
    _release_options(quick, quick=True)
    _build_options(sub.add_parser("build", help="build targets for one platform (make all WHAT=)"))
    _package_options(sub.add_parser("package", help="pack what is in the output (make package)"))
    _clean_options(sub.add_parser("clean", help="remove _output (and --remote workdirs)"))
    hosts = sub.add_parser("hosts", help="inspect the build farm")
    hosts_sub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="SUBCOMMAND")
    check = hosts_sub.add_parser("check", help="verify every host (verify_prereqs)")
    _hosts_option(check)
    _output_options(check)
    return parser


def _hosts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hosts",
        type=Path,
        metavar="FILE",
        help=f"inventory YAML (default: ${HOSTS_ENV}, else this machine alone)",
    )
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="record the key of a host known_hosts has none for (a changed key is always refused)",
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=Path, default=Path(), metavar="DIR", help="default: .")
    p.add_argument("--profile", type=Path, metavar="FILE", help="default: SOURCE/kdist.yaml")
    p.add_argument("-n", "--dry-run", action="store_true", help="print what would run, run nothing")


def _run_options(p: argparse.ArgumentParser) -> None:
    _hosts_option(p)
    _output_options(p)
    _source_options(p)
    p.add_argument(
        "--native-only",
        action="store_true",
        help="fail instead of cross-compiling a platform without a native host",
    )
    p.add_argument(
        "--slice-timeout",
        type=float,
        metavar="SECONDS",
        help="stop a build that takes longer (default: no limit)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="stop a build that prints nothing for this long (default 900)",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for another run's lock on a host's workdir (default 30)",
    )


def _release_options(p: argparse.ArgumentParser, *, quick: bool) -> None:
    _run_options(p)
    p.add_argument("--platforms", metavar="LIST", help="comma separated os/arch list")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: SOURCE/_output")
    p.add_argument("--host", metavar="NAME", help="build every platform on this host")
    p.add_argument(
        "--images",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="server images in the server tarballs (default: on for Kubernetes)",
    )
    p.set_defaults(quick=quick, skip_tests=quick)
    if not quick:
        p.add_argument("--skip-tests", action="store_true", help="do not run the unit tests")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument(
        "--resume",
        action="store_true",
        help="rebuild only what the journal does not show as built (the default)",
    )
    reuse.add_argument("--rebuild", action="store_true", help="ignore the journal; build all")
    p.add_argument(
        "--attempts",
        type=int,
        default=3,
        metavar="N",
        help="hosts to try per slice when hosts fail (default 3)",
    )


def _build_options(p: argparse.ArgumentParser) -> None:
    _run_options(p)
    p.add_argument("--platform", metavar="OS/ARCH", help="default: the building host's own")
    p.add_argument("--host", metavar="NAME", help="inventory host (default: this machine)")
    p.add_argument("what", nargs="*", metavar="WHAT", help="targets, e.g. cmd/kubectl")


def _package_options(p: argparse.ArgumentParser) -> None:
    _output_options(p)
    _source_options(p)
    p.add_argument("--platforms", metavar="LIST", help="default: every platform in the output")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: SOURCE/_output")


def _clean_options(p: argparse.ArgumentParser) -> None:
    _hosts_option(p)
    _output_options(p)
    _source_options(p)
    p.add_argument("--remote", action="store_true", help="also remove this tree's host workdirs")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(asyncio.run(_interruptible(args)))
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


async def _interruptible(args: argparse.Namespace) -> ExitStatus:
    """Run the program; Ctrl-C or SIGTERM stops remote builds, a second one without grace."""
    from kdist.stages.build import STOPPER

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    count = 0
    pending: set[asyncio.Task[None]] = set()  # keep a reference until the kill is sent

    def interrupted() -> None:
        nonlocal count
        count += 1
        if count == 1:
            print("kdist: stopping remote builds (again to kill them at once)", file=sys.stderr)
            main_task.cancel()
        elif count == 2:
            task = loop.create_task(STOPPER.stop_all_now())
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            os._exit(int(ExitStatus.INTERRUPTED))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted)
    try:
        return await program(args)
    except asyncio.CancelledError:
        if count:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def program(args: argparse.Namespace) -> ExitStatus:
    """The main program without error handling."""
    # Imported here, not at the top: `kdist --help` and option errors need no run engine.
    from kdist.cli import commands

    if args.command == "hosts":
        return await commands.hosts_check(args)
    if args.command == "clean":
        return await commands.clean(args)
    if args.command == "package":
        return await commands.package_only(args)
    return await commands.build_or_release(args)
