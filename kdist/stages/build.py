"""Build stage: run one slice's build on its host, watched, and stoppable at any moment.

On a remote host the build runs inside `hostside.guarded`: its own process group, killed by a
host-side watchdog when our channel closes, and by `kill_attempt` over a fresh channel when a
deadline passes or the user interrupts. The head node enforces two deadlines: no output for
`idle` seconds, and `total` seconds for the whole build.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kdist.aio import wait_for
from kdist.errors import InfraError
from kdist.model import CommandResult, Deadlines, Slice
from kdist.remote import hostside
from kdist.remote.argv import NO_WORKDIR, remove, to_shell
from kdist.transport import LineSink, Transport

# Exit codes that mean the host, not the source, is at fault.
INFRA_EXIT_CODES = {
    NO_WORKDIR: "workdir missing",
    126: "not executable",
    127: "command not found",
    hostside.EXIT_CANCELLED: "stopped (SIGTERM)",
}

# Output that means the host ran out of something, not that the source is wrong.
_HOST_FAULTS = (
    ("no space left on device", "disk full (ENOSPC)"),
    ("disk quota exceeded", "disk quota exceeded"),
    ("signal: killed", "killed, probably out of memory"),
    ("cannot allocate memory", "out of memory"),
    ("go: not found", "toolchain missing"),
    ("make: not found", "toolchain missing"),
    ("command not found", "toolchain missing"),
)
KILL_TIMEOUT = 30.0  # seconds a kill command may take before we give up on it


def host_fault(code: int, tail: str) -> str:
    """Why a failed build is the host's fault rather than the source's ('' when it is not)."""
    if code in (137, -9):  # SIGKILL: the OOM killer, or a host going down
        return "killed (SIGKILL), probably out of memory"
    text = tail.lower()
    return next((cause for needle, cause in _HOST_FAULTS if needle in text), "")


class Runner(Protocol):
    """Runs a slice's build command on its host, and stops it on demand (the build seam)."""

    async def run(self, argv: Sequence[str], workdir: str, env: Mapping[str, str],
                  sink: LineSink, attempt: str, grace: int) -> CommandResult:  # fmt: skip
        """Run argv in `workdir` with `env`; cancelling it stops the command."""

    async def stop(self, attempt: str, grace: int) -> None:
        """Stop a running attempt: SIGTERM, `grace` seconds, SIGKILL. Never raises."""

    def close(self) -> None:
        """Release what the runner holds (the run is over)."""


@dataclass
class NativeRunner:
    """The host's own toolchain: on a remote host, under the host-side guard."""

    transport: Transport
    workdirs: dict[str, str] = field(default_factory=dict)  # running attempt -> its workdir

    async def run(self, argv: Sequence[str], workdir: str, env: Mapping[str, str],
                  sink: LineSink, attempt: str, grace: int) -> CommandResult:  # fmt: skip
        """Run the build over the transport (guarded on remote hosts)."""
        guard = not self.transport.host.local
        if guard:
            argv = hostside.guarded(argv, workdir=workdir, attempt=attempt, grace=grace)
        self.workdirs[attempt] = workdir
        try:
            return await self.transport.run(argv, cwd=workdir, env=env, sink=sink, hold_stdin=guard)
        finally:
            self.workdirs.pop(attempt, None)

    async def stop(self, attempt: str, grace: int) -> None:
        """Kill the attempt's process group over a fresh channel (local builds: cancel does)."""
        workdir = self.workdirs.get(attempt)
        if self.transport.host.local or workdir is None:
            return  # the local transport kills the process group when the run is cancelled
        argv = hostside.kill_attempt(workdir, attempt, grace)
        with contextlib.suppress(Exception):
            await wait_for(self.transport.run(argv, timeout=KILL_TIMEOUT), KILL_TIMEOUT)

    def close(self) -> None:
        """Nothing to release: the transport is the run's."""


@dataclass
class Stopper:
    """Every running attempt, so an interrupt can stop them all (a second one, at once)."""

    grace: int | None = None  # overrides Deadlines.grace once the user insists
    active: dict[str, Runner] = field(default_factory=dict)

    async def stop(self, attempt: str, grace: int) -> None:
        """Stop one attempt; failures are ignored (the host-side watchdogs remain)."""
        runner = self.active.get(attempt)
        if runner is None:
            return
        with contextlib.suppress(Exception):
            await runner.stop(attempt, self.grace if self.grace is not None else grace)

    async def stop_all_now(self) -> None:
        """Second interrupt: SIGKILL every running attempt without a grace period."""
        self.grace = 0
        await asyncio.gather(*(self.stop(a, 0) for a in list(self.active)))


STOPPER = Stopper()


async def build_slice(
    transport: Transport,
    slc: Slice,
    env: Mapping[str, str],
    sink: LineSink,
    attempt: str,
    deadlines: Deadlines,
    runner: Runner | None = None,
) -> CommandResult:
    """Clear the slice's old artifacts, then run its build; the result carries the exit code.

    `runner` runs the command: the host's toolchain (the default) or a build container.
    """
    runner = runner or NativeRunner(transport)
    cleared = await transport.run(remove(slc.artifacts), timeout=deadlines.command)
    if not cleared.ok:
        msg = f"{slc.host}: cannot clear {slc.artifacts}: {cleared.tail(3)}"
        raise InfraError(msg)
    sink(f"$ {to_shell(slc.argv)}")
    where = f"{slc.host}: {slc.platform}"
    return await run_watched(
        runner, slc.argv, slc.workdir, env, sink, attempt, deadlines, (where, "the build was")
    )


async def run_watched(
    runner: Runner,
    argv: Sequence[str],
    workdir: str,
    env: Mapping[str, str],
    sink: LineSink,
    attempt: str,
    deadlines: Deadlines,
    named: tuple[str, str],
) -> CommandResult:
    """Run argv with `runner` (a build, the unit tests) under the idle and total deadlines.

    When one passes, the command is stopped on its host and InfraError says which, worded
    from `named` (where, "what was"); Ctrl-C stops it there too (see STOPPER).
    """
    last = [time.monotonic()]

    def watched(line: str) -> None:
        last[0] = time.monotonic()
        sink(line)

    run = asyncio.create_task(runner.run(argv, workdir, env, watched, attempt, deadlines.grace))
    STOPPER.active[attempt] = runner
    try:
        reason = await _watch(run, last, deadlines)
        if reason is None:
            return run.result()
        await _stop(run, attempt, deadlines.grace)
        where, what = named
        msg = f"{where}: {reason}; {what} stopped"
        raise InfraError(msg)
    except asyncio.CancelledError:
        await asyncio.shield(_stop(run, attempt, deadlines.grace))
        raise
    finally:
        STOPPER.active.pop(attempt, None)


async def _watch(run: asyncio.Task[CommandResult], last: list[float], d: Deadlines) -> str | None:
    """Wait for the build; the deadline that passed first, or None when it finished."""
    start = time.monotonic()
    limits = [t for t in (d.idle, d.total) if t is not None]
    poll = min([1.0, *(t / 4 for t in limits)])  # short deadlines are checked often enough
    while True:
        done, _ = await asyncio.wait({run}, timeout=poll)
        if done:
            return None
        now = time.monotonic()
        if d.idle is not None and now - last[0] > d.idle:
            return f"no output for {d.idle:g}s"
        if d.total is not None and now - start > d.total:
            return f"not finished after {d.total:g}s"


async def _stop(run: asyncio.Task[CommandResult], attempt: str, grace: int) -> None:
    # Kill over a fresh channel first (closing ours alone does not stop a remote process
    # group), then drop our channel; the host-side watchdog is the last line of defence.
    await STOPPER.stop(attempt, grace)
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await run
