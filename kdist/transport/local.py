"""The transport contract on this machine: asyncio subprocesses and local rsync."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from kdist.aio import wait_for
from kdist.errors import CommandTimeout, HeadNodeError, OutputTooLarge
from kdist.model import CommandResult, Host, TransferDeadline
from kdist.remote.argv import mkdir, rsync_pull, rsync_push
from kdist.text import HOST_ERRORS
from kdist.transport import (
    READ_CHUNK,
    LineReader,
    LineSink,
    OutputCollector,
    Progress,
    Spawned,
    StderrTail,
    names_file,
)

DRAIN_TIMEOUT = 10.0  # seconds to read a killed command's last output (what its group left)


class LocalTransport:
    """Runs builds on the head node itself, in place; no SSH involved."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.host_key = ""  # no SSH, no host key: this is the head node

    async def connect(self) -> None:
        """Nothing to open for the local machine."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        sink: LineSink | None = None,
        timeout: float | None = None,
        hold_stdin: bool = False,
        max_output: int | None = None,
        stdout_only: bool = False,
    ) -> CommandResult:
        """Run argv as a subprocess in its own process group, streaming merged output.

        A command that cannot start exits 127, as it would under a shell.
        """
        piped = stdin is not None or hold_stdin
        try:
            proc = await _start(argv, cwd, env, piped=piped, stderr_apart=stdout_only)
        except OSError as exc:
            return CommandResult(tuple(argv), 127, f"kdist: cannot run {argv[0]}: {exc}")
        collector = OutputCollector(sink, max_output=max_output)
        return await _finish(self.host.name, proc, argv, stdin, collector, timeout, hold_stdin)

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start argv here with stdin held open (closed by `close()`)."""
        try:
            proc = await _start(argv, None, None, piped=True)
        except OSError as exc:
            raise HeadNodeError.from_os(exc) from exc
        return _LocalSpawned(proc)

    async def push(
        self,
        src: Path,
        dest: str,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
    ) -> CommandResult:
        """Mirror `src` into the local directory `dest` with rsync."""
        total = deadline.total if deadline else None
        await self.run(mkdir(dest), timeout=total)
        return await run_rsync(rsync_push(None, src, dest, deadline=deadline), timeout=total)

    async def pull(
        self,
        src: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
        only: Sequence[str] | None = None,
    ) -> CommandResult:
        """Copy the regular files under `src` (or just `only` of them) into `dest` with rsync."""
        with contextlib.ExitStack() as stack:
            listed = None if only is None else stack.enter_context(names_file(only))
            argv = rsync_pull(None, src, dest, deadline=deadline, files_from=listed)
            timeout = deadline.total if deadline else None
            return await run_rsync(argv, receiving=dest, timeout=timeout)

    async def forward_socket(self, remote_path: str) -> str:
        """The head node's own socket: nothing to forward."""
        return remote_path

    async def close(self) -> None:
        """Nothing to release."""


class _LocalSpawned:
    """A local command whose stdin we hold open."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        assert proc.stdout is not None
        self._lines = LineReader(_decoded(proc.stdout))

    async def readline(self) -> str:
        """The next output line, cut at the line limit ('' at EOF)."""
        return await self._lines.readline()

    async def close(self) -> None:
        """End its stdin and wait for it (killing it if it lingers)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await wait_for(self._proc.wait(), 5)
        except asyncio.TimeoutError:
            await _stop(self._proc)


async def run_rsync(
    argv: Sequence[str],
    receiving: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run rsync on this machine; its exit code is data unless this machine is at fault.

    HeadNodeError when rsync cannot start here, or when it says it could not write into
    `receiving` (the local side of a pull) for a reason of this machine's disk.
    """
    try:
        proc = await _start(argv, None, env, piped=False)
    except OSError as exc:
        raise HeadNodeError.from_os(exc) from exc
    collector = OutputCollector(None)
    result = await _finish("this machine", proc, argv, None, collector, timeout, False)
    if receiving is not None and not result.ok:
        fault = local_write_fault(result.stdout)
        if fault:
            msg = f"this machine (the head node): cannot write {receiving}: {fault}"
            raise HeadNodeError(msg)
    return result


# rsync tags what its local side (receiver, generator) failed to do, with the errno last.
_RSYNC_LOCAL_FAULT = re.compile(
    r"^rsync: \[(?:receiver|generator)\] (.*\((\d+)\))\s*$", re.IGNORECASE | re.MULTILINE
)
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM, errno.ENOTDIR}
)


def local_write_fault(output: str) -> str:
    """The line in which rsync's receiving side reports a disk fault ('' when there is none)."""
    for match in _RSYNC_LOCAL_FAULT.finditer(output):
        if int(match.group(2)) in _DISK_ERRNOS:
            return match.group(1)
    return ""


async def _start(
    argv: Sequence[str],
    cwd: str | None,
    env: Mapping[str, str] | None,
    *,
    piped: bool,
    stderr_apart: bool = False,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr_apart else asyncio.subprocess.STDOUT,
        start_new_session=True,  # so a timeout or Ctrl-C can kill the whole build tree
    )


async def _finish(
    label: str,
    proc: asyncio.subprocess.Process,
    argv: Sequence[str],
    stdin: str | None,
    collector: OutputCollector,
    timeout: float | None,
    hold_stdin: bool,
) -> CommandResult:
    """Feed stdin, collect output, wait; past `timeout` kill the group (CommandTimeout)."""
    start = time.monotonic()
    apart = StderrTail() if proc.stderr is not None else None
    try:
        returncode = await wait_for(
            _communicate(proc, stdin, collector, hold_stdin, apart), timeout
        )
    except asyncio.TimeoutError as exc:
        await _stop(proc)
        msg = f"{label}: {argv[0]} did not finish within {timeout:g}s; stopped"
        raise CommandTimeout(msg) from exc
    except OutputTooLarge as exc:
        await _stop(proc)
        msg = f"{label}: {argv[0]} printed more than {exc.limit} characters; stopped"
        raise OutputTooLarge(exc.limit, msg) from exc
    except asyncio.CancelledError:
        await _stop(proc)
        raise
    kept = apart.text() if apart is not None else ""
    return CommandResult(tuple(argv), returncode, collector.text(), kept, time.monotonic() - start)


async def _communicate(
    proc: asyncio.subprocess.Process,
    stdin: str | None,
    collector: OutputCollector,
    hold_stdin: bool,
    apart: StderrTail | None = None,
) -> int:
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin.encode())
        await proc.stdin.drain()
    if proc.stdin is not None and not hold_stdin:
        proc.stdin.close()
    assert proc.stdout is not None
    errors = None
    if apart is not None and proc.stderr is not None:  # read at once, or a full pipe blocks it
        errors = asyncio.ensure_future(apart.drain(_decoded(proc.stderr)))
    read = _decoded(proc.stdout)
    try:
        while chunk := await read(READ_CHUNK):
            collector.feed_text(chunk)
        if errors is not None:
            await errors
    finally:
        if errors is not None:
            errors.cancel()
    collector.close()
    code = await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()
    return code


def _decoded(stream: asyncio.StreamReader) -> Callable[[int], Awaitable[str]]:
    """`read(n)` of a byte stream as text; a character split between reads stays whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(HOST_ERRORS)  # bytes kept, see kdist.text

    async def read(size: int) -> str:
        while True:
            data = await stream.read(size)
            text = decoder.decode(data, final=not data)
            if text or not data:
                return text

    return read


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group and wait for it, reading its output to the end first.

    asyncio's wait() returns only once the output pipe is closed too, and a pipe whose reader
    stopped with a full buffer is never read to its end: a command that flooded its output
    would be waited for forever.
    """
    _kill_group(proc)
    if proc.stdout is not None:
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            await wait_for(_drain(proc.stdout), DRAIN_TIMEOUT)
    await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(READ_CHUNK):
        pass


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
