"""Command line: parse, dispatch, and the one place errors become messages and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from kdist.cli import options
from kdist.errors import ExitStatus, Interrupted, KdistError, PreflightError
from kdist.text import inert

if TYPE_CHECKING:
    from kdist.engine.prepare import TransportFactory

Transports = Callable[[options.Farm], "TransportFactory"]  # the farm's options -> its transports
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def entry() -> NoReturn:
    """The `kdist` program: main(), then exit, and a Ctrl-C once main is done changes nothing."""
    status = main()
    for signum in STOP_SIGNALS:  # the run is over; a late Ctrl-C must not end it with a trace
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(status)


def main(argv: Sequence[str] | None = None, *, transports: Transports | None = None) -> int:
    """Run a command and return its exit status (the caller's signal handlers are kept).

    `transports` replaces the real SSH and local transports (tests pass fakes).
    """
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        return _main(argv, transports)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _main(argv: Sequence[str] | None, transports: Transports | None) -> int:
    started = time.time()
    try:
        invocation = options.parse(argv)
    except SystemExit as exc:  # argparse said it (usage error, --help, --version)
        return exc.code if isinstance(exc.code, int) else int(ExitStatus.CONFIG_ERROR)
    except KdistError as exc:
        return _error(exc)
    try:
        return int(asyncio.run(_interruptible(invocation, transports)))
    except Interrupted as exc:
        for line in exc.stopped:  # one line per host, what was stopped there
            print(f"kdist: {inert(line)}", file=sys.stderr)
        print("kdist: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except KdistError as exc:
        return _error(exc, started if invocation.display.json else None)
    except KeyboardInterrupt:
        print("kdist: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        return _output_closed()
    except Exception as exc:
        if invocation.display.debug:
            traceback.print_exc()
        print(
            f"kdist: internal error: {inert(repr(exc))} (run with --debug for a traceback)",
            file=sys.stderr,
        )
        return int(ExitStatus.INTERNAL_ERROR)


def _output_closed() -> int:
    """Stdout's reader is gone: end quietly, as a command killed by SIGPIPE would."""
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return int(ExitStatus.OUTPUT_CLOSED)


def _error(exc: KdistError, json_since: float | None = None) -> int:
    """The message on stderr (a line per preflight problem); with --json an error document."""
    problems = exc.problems if isinstance(exc, PreflightError) else (str(exc),)
    for problem in problems:  # the final guard: an error may quote a host's words
        print(f"kdist: error: {inert(problem, newlines=True)}", file=sys.stderr)
    if json_since is not None:
        from kdist.cli.documents import dumps, error_document

        doc = error_document(exc, problems, json_since, time.time())
        sys.stdout.write(dumps(doc) + "\n")
    return int(exc.exit_status)


async def _interruptible(
    invocation: options.Invocation, transports: Transports | None
) -> ExitStatus:
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

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, interrupted)
    try:
        return await program(invocation, transports)
    except asyncio.CancelledError:
        if count:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            if count:  # stopping already: a late Ctrl-C must not cut the exit short with a trace
                signal.signal(signum, signal.SIG_IGN)


async def program(
    invocation: options.Invocation, transports: Transports | None = None
) -> ExitStatus:
    """The main program without error handling."""
    # Imported here, not at the top: `kdist --help` and option errors need no run engine.
    from kdist.cli import commands

    reach = transports or commands.farm_transports
    display, command = invocation.display, invocation.command
    if isinstance(command, options.HostsCheckOptions):
        return await commands.hosts_check(command, display, reach(command.farm))
    if isinstance(command, options.HostsListOptions):
        return commands.hosts_list(command, display)
    if isinstance(command, options.CleanOptions):
        return await commands.clean(command, display, reach(command.farm))
    if isinstance(command, options.PackageOptions):
        return await commands.package_only(command, display)
    if isinstance(command, options.VerifyOptions):
        return await commands.verify(command, display)
    return await commands.build_or_release(command, display, reach(command.run.farm))
